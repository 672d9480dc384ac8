"""Issue 7, item 3: a secret passed as an argument, returned in an output and raised in an error
message is absent from every byte on disk (trace, blobs, anything else calltape wrote) with
redaction on (the default), and resume still replays the call (the fingerprint uses the real
arguments). Every default key name and value pattern of the API is covered.

Each secret is random per run, so a hit can only come from this test's own call.
"""

from __future__ import annotations

import base64
import secrets
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from calltape import Session, fingerprint

ALNUM = string.ascii_letters + string.digits


def rand(n: int, alphabet: str = ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(n))


def pem(kind: str) -> tuple[str, str]:
    body = base64.b64encode(secrets.token_bytes(144)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    text = f"-----BEGIN {kind}PRIVATE KEY-----\n" + "\n".join(lines)
    return text + f"\n-----END {kind}PRIVATE KEY-----\n", lines[1]


def value_secrets() -> dict[str, tuple[str, list[str]]]:
    """kind -> (text holding the secret, the substrings that must never reach disk)."""
    out: dict[str, tuple[str, list[str]]] = {}
    key = "sk-proj-" + rand(48)
    out["openai_key"] = (f"use {key} for the call", [key[3:]])
    key = "sk-ant-api03-" + rand(80, ALNUM + "-_")
    out["anthropic_key"] = (f"ANTHROPIC_API_KEY={key}", [key[7:]])
    key = "sk-" + rand(48)
    out["openai_legacy_key"] = (f"key: {key}", [key[3:]])
    key = "ghp_" + rand(36)
    out["github_classic_token"] = (f"git push with {key}", [key[4:]])
    key = "github_pat_" + rand(22) + "_" + rand(59)
    out["github_fine_grained_pat"] = (f"token={key}", [key[11:]])
    key = "AKIA" + rand(16, string.ascii_uppercase + string.digits)
    out["aws_access_key_id"] = (f"aws id {key} in us-east-1", [key[4:]])
    key = rand(40, ALNUM + "/+")
    out["aws_secret_access_key"] = (f"aws_secret_access_key = {key}", [key])
    key = rand(40, ALNUM + "-._~")
    out["bearer_token"] = (f"curl -H 'Authorization: Bearer {key}' https://api", [key])
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    claims = base64.urlsafe_b64encode(b'{"sub":"' + rand(12).encode() + b'"}').decode()
    sig = rand(43, ALNUM + "-_")
    jwt = f"{header}.{claims.rstrip('=')}.{sig}"
    out["jwt"] = (f"session jwt {jwt} expires soon", [claims.rstrip("="), sig])
    pw = rand(20)
    out["url_password"] = (f"connect postgres://admin:{pw}@db.internal:5432/app", [pw])
    text, line = pem("RSA ")
    out["pem_rsa_private_key"] = (text, [line])
    text, line = pem("")
    out["pem_pkcs8_private_key"] = (f"key file:\n{text}", [line])
    text, line = pem("OPENSSH ")
    out["pem_openssh_private_key"] = (text, [line])
    text, line = pem("EC ")
    out["pem_ec_private_key"] = (text, [line])
    return out


VALUE_SECRETS = value_secrets()

#: the key names of the API doc ("keys at any depth matching ...")
SECRET_KEYS = [
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "authorization",
    "cookie",
    "private_key",
    "credential",
    "session",
]


class Tools:
    """``echo`` returns its input inside a sentence and a dict; ``fail`` raises with it."""

    def __init__(self) -> None:
        self.runs = 0

    def register(self, s: Session) -> None:
        s.register("echo", self.echo, side_effect="read")
        s.register("fail", self.fail, side_effect="read")
        s.register("put", self.put, side_effect="write")

    def echo(self, text: str) -> Any:
        self.runs += 1
        return {"said": f"you said: {text}", "copy": [text], "raw": text}

    def fail(self, text: str) -> Any:
        self.runs += 1
        raise PermissionError(f"login refused for {text}")

    def put(self, **kwargs: Any) -> Any:
        self.runs += 1
        return {"stored": kwargs}


def assert_absent(root: Path, needles: list[str], disk_hits: Callable[..., list[str]]) -> None:
    for needle in needles:
        hits = disk_hits(root, needle)
        assert not hits, f"secret {needle[:12]}... found on disk in {hits}"


@pytest.mark.parametrize("kind", sorted(VALUE_SECRETS))
def test_value_pattern_never_reaches_disk_and_resume_replays(
    tmp_path: Path, kind: str, disk_hits: Callable[..., list[str]]
) -> None:
    text, needles = VALUE_SECRETS[kind]
    trace = tmp_path / "run.jsonl"
    tools = Tools()
    with Session(trace) as s:
        tools.register(s)
        ok = s.call("echo", text=text)
        assert ok.ok and ok.output["raw"] == text, "the live result is the real value"
        err = s.call("fail", text=text)
        assert err.status == "error" and text in err.error.message  # live: the real message
    assert tools.runs == 2
    assert b"[REDACTED" in trace.read_bytes()
    assert_absent(tmp_path, needles, disk_hits)

    with Session(trace) as s:
        tools.register(s)
        again = s.call("echo", text=text)
        assert again.ok and again.replayed, "redaction broke replay"
    assert tools.runs == 2, "the replayed call ran again"
    assert_absent(tmp_path, needles, disk_hits)


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_key_at_any_depth_never_reaches_disk(
    tmp_path: Path, key: str, disk_hits: Callable[..., list[str]]
) -> None:
    value = "v" + secrets.token_hex(12)  # matches no value pattern: only the key can catch it
    trace = tmp_path / "run.jsonl"
    tools = Tools()
    args = {key: value, "config": {"layers": [{"x": 1, key: value}, {"deeper": {key: value}}]}}
    with Session(trace) as s:
        tools.register(s)
        r = s.call("put", **args)
        assert r.ok and r.output == {"stored": args}
        assert r.fingerprint == fingerprint("put", args), "the fingerprint uses the real args"
    assert_absent(tmp_path, [value], disk_hits)
    with Session(trace) as s:
        tools.register(s)
        assert s.call("put", **args).replayed
    assert tools.runs == 1
    assert_absent(tmp_path, [value], disk_hits)


@pytest.mark.parametrize("key", ["Authorization", "DB_PASSWORD", "github_token", "X-Api-Key"])
def test_secret_key_names_match_whatever_their_case_or_affixes(
    tmp_path: Path, key: str, disk_hits: Callable[..., list[str]]
) -> None:
    value = "v" + secrets.token_hex(12)
    with Session(tmp_path / "run.jsonl") as s:
        tools = Tools()
        tools.register(s)
        assert s.call("put", headers={key: value}).ok
    assert_absent(tmp_path, [value], disk_hits)


def test_a_keyed_secret_echoed_in_free_text_is_scrubbed_everywhere(
    tmp_path: Path, disk_hits: Callable[..., list[str]]
) -> None:
    """The issue's scenario with a secret that matches no value pattern: it is passed under
    ``api_key``, and the tool echoes it in its output text and in its error message."""
    value = "v" + secrets.token_hex(16)
    trace = tmp_path / "run.jsonl"

    def login(user: str, api_key: str) -> str:
        return f"logged in {user} with key {api_key}"

    def login_fails(user: str, api_key: str) -> str:
        raise PermissionError(f"key {api_key} was revoked")

    with Session(trace) as s:
        s.register("login", login, side_effect="read")
        s.register("login_fails", login_fails, side_effect="read")
        assert s.call("login", user="ann", api_key=value).ok
        assert s.call("login_fails", user="ann", api_key=value).status == "error"
    assert_absent(tmp_path, [value], disk_hits)


def test_redaction_off_keeps_the_values(
    tmp_path: Path, disk_hits: Callable[..., list[str]]
) -> None:
    """Control: with ``redact=False`` the same scan finds every secret (the scan works)."""
    with Session(tmp_path / "run.jsonl", redact=False) as s:
        tools = Tools()
        tools.register(s)
        for text, _ in VALUE_SECRETS.values():
            s.call("echo", text=text)
        s.call("put", password="v-plain-password-123")
    for kind, (_, needles) in VALUE_SECRETS.items():
        for needle in needles:
            assert disk_hits(tmp_path, needle), f"{kind}: control scan did not find {needle}"
    assert disk_hits(tmp_path, "v-plain-password-123")


def test_custom_key_names_and_redactor_callables(
    tmp_path: Path, disk_hits: Callable[..., list[str]]
) -> None:
    ssn = f"{secrets.randbelow(900) + 100}-55-{secrets.randbelow(9000) + 1000}"
    card = "4111" + "".join(str(secrets.randbelow(10)) for _ in range(12))

    def mask_cards(path: str, value: Any) -> Any:
        if isinstance(value, str) and "4111" in value:
            return value.replace(card, "[CARD]")
        return value

    def charge(card_number: str, customer_ssn: str, note: str) -> str:
        if note == "fail":
            raise ValueError(f"card {card} declined")
        return f"charged {card}"

    pw = "v" + secrets.token_hex(8)
    with Session(tmp_path / "run.jsonl", redact=["customer_ssn", mask_cards]) as s:
        s.register("charge", charge, side_effect="write")
        s.register("put", lambda **kw: kw, side_effect="write")
        assert s.call("charge", card_number=card, customer_ssn=ssn, note="ok").ok
        assert s.call("charge", card_number=card, customer_ssn=ssn, note="fail").status == "error"
        assert s.call("put", password=pw).ok  # the defaults still apply
    assert_absent(tmp_path, [ssn, card, pw], disk_hits)


def test_a_large_output_goes_to_a_blob_redacted_and_replays(
    tmp_path: Path, disk_hits: Callable[..., list[str]]
) -> None:
    text, needles = VALUE_SECRETS["openai_key"]
    pw = "v" + secrets.token_hex(8)
    big = {"rows": [f"row {i} " + "x" * 100 for i in range(1200)], "note": text, "password": pw}
    plain = {"rows": [f"plain {i} " + "y" * 100 for i in range(1200)]}
    runs = []
    trace = tmp_path / "run.jsonl"

    def dump(which: str) -> Any:
        runs.append(which)
        return big if which == "big" else plain

    with Session(trace) as s:
        s.register("dump", dump, side_effect="read")
        assert s.call("dump", which="big").output is big
        assert s.call("dump", which="plain").output is plain
    blobs = list((tmp_path / "run.jsonl.blobs").iterdir())
    assert len(blobs) == 2, "outputs over 64 KiB go to <trace>.blobs/"
    assert trace.stat().st_size < 16_000, "the large outputs were written into the trace"
    assert_absent(tmp_path, [*needles, pw], disk_hits)

    with Session(trace) as s:
        s.register("dump", dump, side_effect="read")
        r = s.call("dump", which="big")
        assert r.replayed and r.output["rows"] == big["rows"]
        assert r.output["password"] != pw
        r = s.call("dump", which="plain")
        assert r.replayed and r.output == plain, "a blob round-trips exactly"
    assert runs == ["big", "plain"]


def test_blob_threshold_is_configurable(tmp_path: Path) -> None:
    trace = tmp_path / "run.jsonl"
    with Session(trace, blob_threshold=100) as s:
        s.register("f", lambda n: "z" * n, side_effect="read")
        s.call("f", n=10)
        s.call("f", n=1000)
    assert len(list((tmp_path / "run.jsonl.blobs").iterdir())) == 1
    recs = [orjson.loads(line) for line in trace.read_bytes().splitlines()]
    outputs = [r["output"] for r in recs if r["type"] == "call_end"]
    assert outputs[0] == "z" * 10 and outputs[1] != "z" * 1000


def test_different_secrets_are_different_calls(tmp_path: Path) -> None:
    """The fingerprint is taken before redaction: two calls that differ only in a secret are
    two calls, and resume replays each with its own result."""
    trace = tmp_path / "run.jsonl"
    seen: list[str] = []

    def fetch(token: str) -> str:
        seen.append(token)
        return f"data for caller {len(seen)}"

    a, b = "v" + secrets.token_hex(8), "v" + secrets.token_hex(8)
    with Session(trace) as s:
        s.register("fetch", fetch, side_effect="read")
        ra, rb = s.call("fetch", token=a), s.call("fetch", token=b)
        assert ra.fingerprint != rb.fingerprint
    with Session(trace) as s:
        s.register("fetch", fetch, side_effect="read")
        assert s.call("fetch", token=b).output == "data for caller 2"
        assert s.call("fetch", token=a).output == "data for caller 1"
        c = s.call("fetch", token="v" + secrets.token_hex(8))
        assert not c.replayed
    assert len(seen) == 3


# ------------------------------------------------------- tuples, bytes and free-text reasons


@pytest.mark.parametrize("kind", ["openai_key", "url_password", "github_classic_token", "jwt"])
def test_secrets_inside_tuples_never_reach_disk(
    tmp_path: Path, kind: str, disk_hits: Callable[..., list[str]]
) -> None:
    text, needles = VALUE_SECRETS[kind]
    trace = tmp_path / "run.jsonl"
    runs: list[Any] = []

    def pair(items: Any) -> Any:
        runs.append(items)
        return (text, {"nested": (1, text)})

    with Session(trace) as s:
        s.register("pair", pair, side_effect="read")
        live = s.call("pair", items=(text, ("deeper", text)))
        assert live.ok and live.output[0] == text, "the live result is the real value"
    assert b"[REDACTED" in trace.read_bytes()
    assert_absent(tmp_path, needles, disk_hits)
    with Session(trace) as s:
        s.register("pair", pair, side_effect="read")
        assert s.call("pair", items=(text, ("deeper", text))).replayed
    assert len(runs) == 1


def recorded_bytes(trace: Path) -> list[bytes]:
    """Every ``{"$bytes": ...}`` value in the trace, decoded."""
    found: list[bytes] = []

    def visit(value: Any) -> None:
        if isinstance(value, dict):
            if set(value) == {"$bytes"}:
                found.append(base64.b64decode(value["$bytes"]))
            for v in value.values():
                visit(v)
        elif isinstance(value, list):
            for v in value:
                visit(v)

    for line in trace.read_bytes().splitlines():
        visit(orjson.loads(line))
    return found


@pytest.mark.parametrize("kind", ["openai_key", "aws_access_key_id", "pem_rsa_private_key"])
def test_secrets_inside_bytes_are_redacted_before_base64(tmp_path: Path, kind: str) -> None:
    text, needles = VALUE_SECRETS[kind]
    trace = tmp_path / "run.jsonl"
    with Session(trace) as s:
        s.register("blob", lambda data: data + b" (echo)", side_effect="read")
        live = s.call("blob", data=text.encode())
        assert live.ok and live.output == text.encode() + b" (echo)"
    values = recorded_bytes(trace)
    assert len(values) == 2, "args and output"
    for value in values:
        assert b"[REDACTED]" in value
        for needle in needles:
            assert needle.encode() not in value


def test_binary_bytes_are_kept_as_they_are(tmp_path: Path) -> None:
    raw = bytes(range(256))
    with Session(tmp_path / "run.jsonl") as s:
        s.register("blob", lambda data: data, side_effect="read")
        assert s.call("blob", data=raw).output == raw
    assert recorded_bytes(tmp_path / "run.jsonl") == [raw, raw]


def test_an_exception_ending_the_run_is_redacted_in_run_end(
    tmp_path: Path, disk_hits: Callable[..., list[str]]
) -> None:
    text, needles = VALUE_SECRETS["openai_key"]

    def leak() -> None:
        raise RuntimeError(f"upstream said: {text}")

    with pytest.raises(RuntimeError), Session(tmp_path / "run.jsonl", raise_on_error=True) as s:
        s.register("leak", leak, side_effect="read")
        s.call("leak")
    records = [orjson.loads(line) for line in (tmp_path / "run.jsonl").read_bytes().splitlines()]
    (end,) = [r for r in records if r["type"] == "run_end"]
    assert end["status"] == "failed" and "RuntimeError: upstream said:" in end["reason"]
    assert_absent(tmp_path, needles, disk_hits)


def test_a_kill_reason_is_redacted(tmp_path: Path, disk_hits: Callable[..., list[str]]) -> None:
    text, needles = VALUE_SECRETS["github_classic_token"]
    with Session(tmp_path / "run.jsonl") as s:
        s.register("noop", lambda: None, side_effect="read")
        s.kill(f"token leaked: {text}")
        blocked = s.call("noop")
    assert blocked.status == "blocked" and "[REDACTED]" in blocked.decision.reason
    assert_absent(tmp_path, needles, disk_hits)


# ------------------------------------------------- the fast paths never skip a secret

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from calltape.redact import Redactor  # noqa: E402

#: pieces that make the patterns (and the anchors) match, mixed with noise by hypothesis
_PIECES = [
    *(text for text, _ in VALUE_SECRETS.values()),
    "Bearer abcdefgh12345678",
    "TOKEN   zzzzzzzzzz",
    "basic QWxhZGRpbjpvcGVu",
    "https://user:pw@host",
    "://",
    "@",
    "sk-",
    "AKIA",
    "eyJ",
    "-----BEGIN",
    "xoxb-1234567890",
    "password",
    "Api-Key",
    "asia",
]
_texts = st.lists(st.one_of(st.sampled_from(_PIECES), st.text(max_size=40)), max_size=12).map(
    " ".join
)
_keys = st.one_of(st.sampled_from(["q", "Password", "x-API-key", "note", "session_id"]), st.text())
_values = st.recursive(
    st.one_of(_texts, st.integers(), st.none(), st.binary(max_size=64)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(_keys, inner, max_size=4),
    ),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None)
@given(value=_values)
def test_the_probe_never_skips_what_the_walk_would_mask(value: Any) -> None:
    from calltape.fingerprint import to_jsonable

    r = Redactor()
    recorded, _ = to_jsonable(value)  # what the session hands the redactor (bytes as base64)
    # compared as the JSON that reaches disk (the walk rebuilds a tuple as a list)
    assert orjson.dumps(r(recorded, "args")) == orjson.dumps(r._walk(recorded, "args"))


@settings(max_examples=400, deadline=None)
@given(text=_texts)
def test_anchor_gating_masks_exactly_what_the_patterns_mask(text: str) -> None:
    import re

    from calltape.redact import PATTERNS

    expected = text
    for _, pattern, repl in PATTERNS:
        expected = re.sub(pattern, repl, expected)
    assert Redactor().text(text) == expected
