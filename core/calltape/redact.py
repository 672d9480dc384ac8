"""Redaction before disk: secrets in arguments, outputs and errors never reach the trace.

On by default. What is redacted:

* values under keys, at any depth, whose name contains one of :data:`DEFAULT_KEYS`
  (``password``, ``token``, ``api_key``, ``secret``, ``authorization``, ``cookie``...);
* values matching :data:`PATTERNS` anywhere in a string: OpenAI/Anthropic ``sk-`` keys,
  GitHub tokens, AWS access key ids and secret keys, bearer tokens and JWTs, passwords in URLs
  (``scheme://user:password@host``), PEM private keys, Slack tokens.

``Session(redact=[...])`` adds key names (strings) or callables
``fn(path: str, value: Any) -> Any`` (return the value to record); ``redact=False`` turns it off.

The fingerprint is computed on the real arguments, before redaction, so replay still matches.
A fingerprint is a sha256 of the canonical arguments: it does not contain the secret, but a
party who can guess the full arguments can confirm a guess by hashing them. Treat traces as
sensitive anyway.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable
from typing import Any

import orjson

__all__ = ["DEFAULT_KEYS", "MASK", "PATTERNS", "Redactor", "make_redactor"]

MASK = "[REDACTED]"
BYTES_KEY = "$bytes"

DEFAULT_KEYS: tuple[str, ...] = (
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "api-key",
    "access_key",
    "private_key",
    "authorization",
    "auth_header",
    "cookie",
    "session",
    "credential",
    "client_secret",
    "x-api-key",
)

#: (kind, pattern, replacement) applied to every string. Replacements keep non-secret parts.
PATTERNS: tuple[tuple[str, str, str], ...] = (
    (
        "pem_private_key",
        r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)",
        MASK,
    ),
    ("jwt", r"\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*", MASK),
    ("bearer", r"(?i)\b(bearer|token|basic)\s+[A-Za-z0-9\-._~+/]{8,}=*", r"\1 " + MASK),
    ("openai_anthropic_key", r"\bsk-(?:ant-|proj-|live-|test-)?[A-Za-z0-9_\-]{16,}", MASK),
    ("github_token", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{20,})", MASK),
    ("aws_access_key_id", r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b", MASK),
    (
        "aws_secret_access_key",
        r"(?i)(aws_?secret_?access_?key[\"']?\s*[=:]\s*[\"']?)[A-Za-z0-9/+=]{40}",
        r"\1" + MASK,
    ),
    ("url_password", r"(?i)\b([a-z][a-z0-9+.\-]*://[^:/@\s]+:)[^@\s/]+(@)", r"\1" + MASK + r"\2"),
    ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}", MASK),
)

#: For each of PATTERNS (same kind): literals, lowercased, that a match must contain: any one of
#: the groups, every literal of that group. Checked with ``in`` on the lowercased text before the
#: pattern's regex runs, so text without them costs a few substring searches, not a regex scan
#: (Python's regex engine tries an alternation at every position: hundreds of microseconds
#: for a few KB of text).
ANCHORS: dict[str, tuple[tuple[str, ...], ...]] = {
    "pem_private_key": (("-----begin",),),
    "jwt": (("eyj",),),
    "bearer": (("bearer",), ("token",), ("basic",)),
    "openai_anthropic_key": (("sk-",),),
    "github_token": (("ghp_",), ("gho_",), ("ghu_",), ("ghs_",), ("ghr_",), ("github_pat_",)),
    "aws_access_key_id": (("akia",), ("asia",), ("agpa",), ("aida",), ("aroa",), ("anpa",)),
    "aws_secret_access_key": (("secret",),),
    "url_password": (("://", "@"),),
    "slack_token": (("xox",),),
}

Custom = Callable[[str, Any], Any]


def _minimal(words: Iterable[str]) -> tuple[str, ...]:
    """``words`` without those that contain another one (finding the shorter one suffices)."""
    unique = sorted(set(words), key=len)
    kept: list[str] = []
    for w in unique:
        if not any(k in w for k in kept):
            kept.append(w)
    return tuple(kept)


_SHORT = 128  # below this many bytes one regex pass is cheaper than the substring searches


class _Anchors:
    """Do any of some literals (or all of a pair) occur in a lowercased text?"""

    __slots__ = ("pairs", "regex", "singles")

    def __init__(self, groups: Iterable[tuple[str, ...]], as_bytes: bool) -> None:
        def enc(lit: str) -> Any:
            return lit.encode() if as_bytes else lit

        groups = list(groups)
        self.singles = tuple(enc(g[0]) for g in groups if len(g) == 1)
        self.pairs = tuple((enc(g[0]), enc(g[1])) for g in groups if len(g) == 2)
        alternation = "|".join(re.escape(lit) for g in groups if len(g) == 1 for lit in g)
        self.regex = re.compile(enc(alternation)) if alternation else None

    def __call__(self, low: Any) -> bool:
        if len(low) < _SHORT:
            if self.regex is not None and self.regex.search(low) is not None:
                return True
        else:
            for lit in self.singles:
                if lit in low:
                    return True
        for a, b in self.pairs:
            if a in low and b in low:
                return True
        return False


def _no_strings(d: dict[Any, Any]) -> bool:
    """True for a flat dict of numbers, booleans and nulls (the common tool arguments)."""
    for v in d.values():
        t = type(v)
        if not (t is int or t is float or t is bool or v is None):
            return False
    return True


class Redactor:
    """Redacts secrets from values about to be recorded."""

    def __init__(self, keys: Iterable[str] = DEFAULT_KEYS, custom: Iterable[Custom] = ()) -> None:
        self.keys = tuple(k.lower() for k in keys)
        self.custom = tuple(custom)
        key_alt = "|".join(re.escape(k) for k in self.keys)
        self._key_re = re.compile(f"(?i)(?:{key_alt})") if self.keys else None
        self._patterns = [
            (re.compile(p), r, _Anchors(ANCHORS[kind], as_bytes=False)) for kind, p, r in PATTERNS
        ]
        # The probe tells, from the encoded bytes, whether anything may need redacting at all.
        # It must hold whenever _walk would mask something: a key word (keys are matched
        # case-insensitively), the anchors of a value pattern, or bytes (recorded as base64,
        # decoded and checked by _walk). Plain substring searches on the lowercased bytes.
        groups = [g for anchors in ANCHORS.values() for g in anchors]
        words = _minimal([*self.keys, *(g[0] for g in groups if len(g) == 1), "$bytes"])
        self._probe = _Anchors(
            [*((w,) for w in words), *(g for g in groups if len(g) > 1)], as_bytes=True
        )

    def __call__(
        self,
        value: Any,
        path: str = "",
        encoded: bytes | None = None,
        found: list[str] | None = None,
    ) -> Any:
        """Return ``value`` with secrets masked (the original is not modified).

        ``encoded`` may pass JSON bytes of ``value`` already at hand, to skip encoding again.
        ``found`` collects the strings masked because of their key, so the same secret can be
        scrubbed from the call's output and error message (see :meth:`scrub`).
        """
        if not self.custom:
            t = type(value)
            if t is int or t is float or t is bool or value is None:
                return value
            if t is dict and _no_strings(value):
                return value  # numbers stay, whatever their key (max_tokens): nothing to mask
            if t is str:
                return self._mask_patterns(value)  # no keys in a string: only the patterns
            try:
                if encoded is None:
                    encoded = orjson.dumps(value)
                if not self._probe(encoded.lower()):
                    return value
            except TypeError:
                pass
        return self._walk(value, path, found)

    def scrub(self, value: Any, secrets: list[str]) -> Any:
        """Replace every occurrence of ``secrets`` inside the strings of ``value``."""
        if isinstance(value, str):
            for secret in secrets:
                value = value.replace(secret, MASK)
            return value
        if isinstance(value, dict):
            if _is_bytes(value):
                return _map_bytes(value, lambda text: self.scrub(text, secrets))
            return {k: self.scrub(v, secrets) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.scrub(v, secrets) for v in value]
        return value

    def text(self, text: str) -> str:
        """Mask secret-looking substrings of a string (used for error messages)."""
        text = self._mask_patterns(text)
        for fn in self.custom:
            out = fn("error", text)
            text = out if isinstance(out, str) else text
        return text

    def _mask_patterns(self, text: str) -> str:
        low = text.lower()
        for rx, repl, anchors in self._patterns:
            if anchors(low):
                text = rx.sub(repl, text)
        return text

    def _walk(self, value: Any, path: str, found: list[str] | None = None) -> Any:
        if isinstance(value, dict) and _is_bytes(value):
            value = _map_bytes(value, lambda text: self._walk(text, path, found))
        elif isinstance(value, dict):
            out = {}
            for k, v in value.items():
                sub = f"{path}.{k}" if path else str(k)
                if self._key_re is not None and isinstance(k, str) and self._key_re.search(k):
                    out[k] = _mask_strings(v, found)
                else:
                    out[k] = self._walk(v, sub, found)
            value = out
        elif isinstance(value, list | tuple):
            value = [self._walk(v, f"{path}[{i}]", found) for i, v in enumerate(value)]
        elif isinstance(value, str):
            value = self._mask_patterns(value)
        for fn in self.custom:
            value = fn(path, value)
        return value


def _scoped(pattern: str) -> str:
    # a leading (?i) is global; inside one alternation it must be scoped: (?i:...)
    return f"(?i:{pattern[4:]})" if pattern.startswith("(?i)") else pattern


def _mask_strings(value: Any, found: list[str] | None = None) -> Any:
    """Under a secret-named key: mask every string (numbers such as max_tokens stay)."""
    if isinstance(value, str):
        if found is not None and len(value) >= 4:
            found.append(value)
        return MASK if value else value
    if isinstance(value, dict):
        if _is_bytes(value):
            return {BYTES_KEY: MASK}
        return {k: _mask_strings(v, found) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_strings(v, found) for v in value]
    if isinstance(value, bytes | bytearray):
        return MASK
    return value


def _is_bytes(value: dict[Any, Any]) -> bool:
    """The recorded form of bytes (``{"$bytes": "<base64>"}``, see calltape.fingerprint)."""
    return len(value) == 1 and isinstance(value.get(BYTES_KEY), str)


def _map_bytes(value: dict[str, str], fn: Callable[[str], Any]) -> dict[str, str]:
    """Apply ``fn`` to the text that recorded bytes hold (UTF-8), re-encoding the result.

    Bytes that are not UTF-8 text are kept as they are: the patterns are textual.
    """
    try:
        text = base64.b64decode(value[BYTES_KEY], validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return value
    out = fn(text)
    if out == text or not isinstance(out, str):
        return value
    return {BYTES_KEY: base64.b64encode(out.encode("utf-8")).decode("ascii")}


def make_redactor(redact: bool | Iterable[str | Custom] | None) -> Redactor | None:
    """Build the session's redactor from its ``redact=`` argument.

    Raises:
        TypeError: an entry is neither a key name nor a callable.
    """
    if redact is None or redact is True:
        return Redactor()
    if redact is False:
        return None
    keys = list(DEFAULT_KEYS)
    custom: list[Custom] = []
    for item in redact:
        if isinstance(item, str):
            keys.append(item)
        elif callable(item):
            custom.append(item)
        else:
            raise TypeError(
                f"redact= takes key names (str) or callables fn(path, value); got {item!r}"
            )
    return Redactor(keys, custom)
