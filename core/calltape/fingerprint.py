"""Resolve: canonical JSON and the call fingerprint.

The fingerprint of a call is ``sha256(JCS({"args": args, "tool": name}))`` in hex, where JCS is the
RFC 8785 JSON Canonicalization Scheme. Two paths produce the same bytes:

* a fast path (``orjson`` with sorted keys) for the common case: strings, booleans, ``None``,
  integers within ±(2**53 - 1), lists/tuples and dicts whose keys are strings in the Basic
  Multilingual Plane. For exactly this class orjson's output is byte-identical to RFC 8785
  (proven by the hypothesis tests in ``tests/core/test_fingerprint.py``);
* the reference path (the ``rfc8785`` package) for everything else, after normalization
  (see :func:`normalize` and docs/concepts.md for the table).

A value without a faithful JSON form raises :class:`~calltape.errors.FingerprintError` naming
where it sits and its type; the tool does not run.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as _dt
import decimal
import enum
import hashlib
import math
import pathlib
import uuid
from collections.abc import Mapping
from typing import Any

import orjson
import rfc8785

__all__ = [
    "canonical_json",
    "fingerprint",
    "fingerprint_args",
    "fingerprint_canonical",
    "normalize",
    "to_jsonable",
]

_MAX_SAFE = 2**53 - 1
#: Deepest nesting of arguments accepted (deeper, or a value that contains itself, has no
#: faithful JSON form: FingerprintError instead of a RecursionError deep in an encoder).
MAX_DEPTH = 128
_SORT = orjson.OPT_SORT_KEYS
_SIMPLE = (str, bool, type(None))


def _fast_ok(obj: Any, depth: int = 0) -> bool:
    """True when ``obj`` is in the class where orjson's sorted output equals RFC 8785."""
    t = type(obj)
    if t is dict and depth == 0:
        # the common case, a flat dict of short scalars, without a call per value
        for k, v in obj.items():
            if type(k) is not str or not (k.isascii() or _bmp_only(k)):
                return False
            tv = type(v)
            if tv is str or tv is bool or v is None:
                continue
            if tv is int:
                if not -_MAX_SAFE <= v <= _MAX_SAFE:
                    return False
                continue
            if not _fast_ok(v, 1):
                return False
        return True
    if t is str or t is bool or obj is None:
        return True
    if t is int:
        return bool(-_MAX_SAFE <= obj <= _MAX_SAFE)
    if depth > 64:
        return False
    if t is dict:
        for k, v in obj.items():
            if type(k) is not str:
                return False
            if not k.isascii() and not _bmp_only(k):
                return False
            if not _fast_ok(v, depth + 1):
                return False
        return True
    if t is list or t is tuple:
        for v in obj:
            if not _fast_ok(v, depth + 1):
                return False
        return True
    return False


def _bmp_only(s: str) -> bool:
    # Outside the BMP, UTF-16 code-unit order (RFC 8785) differs from code-point order (orjson).
    return max(s) < "\U00010000"


def normalize(obj: Any, path: str = "args", *, strict: bool = True) -> Any:
    """Turn ``obj`` into plain JSON values (dict/list/str/int/float/bool/None).

    Normalization table (also in docs/concepts.md):

    ======================== =============================================
    Python value              JSON form
    ======================== =============================================
    pydantic model            ``model.model_dump(mode="json")``
    dataclass instance        its fields as an object
    tuple                     array
    set / frozenset           array, sorted by each element's canonical JSON
    Enum member               its ``value`` (normalized)
    datetime / date / time    ISO 8601 string (``isoformat()``)
    timedelta                 total seconds (number)
    Decimal                   its exact decimal string, e.g. ``"1.10"``
    UUID, pathlib.Path        ``str(value)``
    bytes / bytearray         ``{"$bytes": "<base64>"}``
    int beyond ±(2**53-1)     ``{"$bigint": "<decimal digits>"}``
    float NaN / ±inf          no faithful form: FingerprintError
    mapping with non-str key  no faithful form: FingerprintError
    deeper than 128, a cycle  no faithful form: FingerprintError
    anything else             no faithful form: FingerprintError
    ======================== =============================================

    Args:
        obj: The value to normalize.
        path: Where the value sits, used in error messages (``args.items[3].when``).
        strict: When False, values without a JSON form become ``{"$repr": repr(value)}``
            instead of raising (used for outputs, which are recorded but not fingerprinted).

    Raises:
        FingerprintError: ``strict`` and a value has no faithful JSON form.
    """
    return _normalize(obj, path, strict, 0, set())


def _normalize(obj: Any, path: str, strict: bool, depth: int, active: set[int]) -> Any:
    from calltape.errors import FingerprintError

    t = type(obj)
    if t is str or t is bool or obj is None:
        return obj
    if t is int:
        return obj if -_MAX_SAFE <= obj <= _MAX_SAFE else {"$bigint": str(obj)}
    if t is float:
        if math.isnan(obj) or math.isinf(obj):
            if strict:
                raise FingerprintError(path, "float", f"{obj!r} is not representable in JSON")
            return {"$repr": repr(obj)}
        return obj
    if depth >= MAX_DEPTH:
        if strict:
            raise FingerprintError(
                path, t.__name__, f"nested deeper than {MAX_DEPTH} levels; pass a flatter value"
            )
        return {"$repr": f"<{t.__name__} nested deeper than {MAX_DEPTH} levels>"}
    key = id(obj)
    if key in active:
        if strict:
            raise FingerprintError(
                path, t.__name__, "the value contains itself (a reference cycle)"
            )
        return {"$repr": f"<cycle: {t.__name__}>"}
    active.add(key)
    try:
        return _normalize_container(obj, t, path, strict, depth + 1, active)
    finally:
        active.discard(key)


def _normalize_container(
    obj: Any, t: type, path: str, strict: bool, depth: int, active: set[int]
) -> Any:
    from calltape.errors import FingerprintError

    if isinstance(obj, Mapping):
        out: dict[str, Any] = {}
        for k, v in obj.items():
            if isinstance(k, enum.Enum):
                k = k.value
            if not isinstance(k, str):
                if strict:
                    raise FingerprintError(
                        f"{path}[{k!r}]", type(k).__name__, "object keys must be strings"
                    )
                k = str(k)
            out[k] = _normalize(v, f"{path}.{k}", strict, depth, active)
        return out
    if t is list or t is tuple or isinstance(obj, (list, tuple)):
        return [_normalize(v, f"{path}[{i}]", strict, depth, active) for i, v in enumerate(obj)]
    if isinstance(obj, (set, frozenset)):
        items = [_normalize(v, f"{path}{{}}", strict, depth, active) for v in obj]
        return sorted(items, key=rfc8785.dumps)
    if isinstance(obj, enum.Enum):
        return _normalize(obj.value, path, strict, depth, active)
    if isinstance(obj, bool):  # bool subclasses
        return bool(obj)
    if isinstance(obj, int):  # IntEnum handled above; other int subclasses
        return _normalize(int(obj), path, strict, depth, active)
    if isinstance(obj, float):
        return _normalize(float(obj), path, strict, depth, active)
    if isinstance(obj, str):
        return str(obj)
    if isinstance(obj, (_dt.datetime, _dt.date, _dt.time)):
        return obj.isoformat()
    if isinstance(obj, _dt.timedelta):
        return obj.total_seconds()
    if isinstance(obj, decimal.Decimal):
        if not obj.is_finite():
            if strict:
                raise FingerprintError(path, "Decimal", f"{obj} is not representable in JSON")
            return {"$repr": str(obj)}
        return str(obj)
    if isinstance(obj, (uuid.UUID, pathlib.PurePath)):
        return str(obj)
    if isinstance(obj, (bytes, bytearray, memoryview)):
        return {"$bytes": base64.b64encode(bytes(obj)).decode("ascii")}
    dump = getattr(obj, "model_dump", None)
    if callable(dump) and hasattr(type(obj), "model_fields"):
        try:
            return _normalize(dump(mode="json"), path, strict, depth, active)
        except FingerprintError:
            raise
        except Exception as exc:
            if strict:
                raise FingerprintError(path, t.__name__, f"model_dump failed: {exc}") from exc
            return {"$repr": _safe_repr(obj)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        fields = {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
        return _normalize(fields, path, strict, depth, active)
    if strict:
        raise FingerprintError(path, f"{t.__module__}.{t.__qualname__}".removeprefix("builtins."))
    return {"$repr": _safe_repr(obj)}


def _safe_repr(obj: Any, limit: int = 2000) -> str:
    try:
        text = repr(obj)
    except Exception:  # a broken __repr__ must not break recording
        text = f"<{type(obj).__qualname__} object>"
    return text if len(text) <= limit else text[:limit] + "…"


def canonical_json(obj: Any, path: str = "args") -> bytes:
    """RFC 8785 canonical JSON of ``obj`` after normalization.

    Raises:
        FingerprintError: a value has no faithful JSON form.
    """
    from calltape.errors import FingerprintError

    try:
        if _fast_ok(obj):
            return orjson.dumps(obj, option=_SORT)
        return rfc8785.dumps(normalize(obj, path))
    except (orjson.JSONEncodeError, rfc8785.CanonicalizationError, UnicodeError) as exc:
        # e.g. a lone surrogate in a string: not valid UTF-8, so no JSON form
        raise FingerprintError(path, type(obj).__name__, str(exc)) from exc


def fingerprint(tool: str, args: Mapping[str, Any]) -> str:
    """The deterministic fingerprint of calling ``tool`` with ``args`` (sha256 hex).

    Raises:
        FingerprintError: an argument has no faithful JSON form; names the argument path.
    """
    if type(args) is dict and tool.isascii() and _fast_ok(args):
        try:
            data = orjson.dumps({"args": args, "tool": tool}, option=_SORT)
        except orjson.JSONEncodeError:
            data = _reference(tool, args)
    else:
        data = _reference(tool, args)
    return hashlib.sha256(data).hexdigest()


def _reference(tool: str, args: Mapping[str, Any]) -> bytes:
    from calltape.errors import FingerprintError

    norm = normalize(dict(args), "args")
    try:
        return rfc8785.dumps({"args": norm, "tool": tool})
    except (rfc8785.CanonicalizationError, UnicodeError) as exc:
        raise FingerprintError("args", type(args).__name__, str(exc)) from exc


def fingerprint_args(tool: str, args: Mapping[str, Any]) -> tuple[str, Any]:
    """The fingerprint and the JSON form of ``args`` to record, in one pass.

    Raises:
        FingerprintError: an argument has no faithful JSON form; names the argument path.
    """
    fp, rec, _ = fingerprint_canonical(tool, args)
    return fp, rec


def fingerprint_canonical(tool: str, args: Mapping[str, Any]) -> tuple[str, Any, bytes]:
    """The fingerprint, the JSON form of ``args`` to record, and the canonical bytes hashed.

    Raises:
        FingerprintError: an argument has no faithful JSON form; names the argument path.
    """
    if type(args) is dict and tool.isascii() and _fast_ok(args):
        try:
            data = orjson.dumps({"args": args, "tool": tool}, option=_SORT)
            return hashlib.sha256(data).hexdigest(), args, data
        except orjson.JSONEncodeError:
            pass
    norm = normalize(dict(args), "args")
    data = _reference(tool, norm)
    return hashlib.sha256(data).hexdigest(), norm, data


def to_jsonable(obj: Any) -> tuple[Any, bool]:
    """Normalize a value for recording (outputs). Returns ``(value, lossless)``.

    Never raises: a value without a faithful JSON form is recorded as its ``str()`` and
    ``lossless`` is False (that string is also what a replay returns).
    """
    if _fast_ok(obj):
        return obj, True
    try:
        return normalize(obj, "output", strict=True), True
    except Exception:
        try:
            return str(obj), False
        except Exception:
            return _safe_repr(obj), False
