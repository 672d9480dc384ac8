"""Output contracts: what a tool promises to return, and drift when it does not.

``register(fn, output=...)`` takes a pydantic model (or any type pydantic can validate), a JSON
schema (a dict; the common keywords ``type``, ``properties``, ``required``, ``items``, ``enum``
are checked), ``"json"`` (an object or array, or a string that parses as one) or ``"text"``
(a string that is not JSON). Drift is recorded on the call's ``call_end`` as
``contract_drift`` with details; ``on_drift="warn"`` (default) logs and keeps the result,
``"block"`` withholds it (status ``blocked``, rule ``contract_drift``).
"""

from __future__ import annotations

from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

__all__ = ["check_contract"]

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list, tuple),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
}


def check_contract(contract: Any, value: Any) -> dict[str, Any] | None:
    """None when ``value`` honours ``contract``; else ``{"expected", "got", "detail"}``."""
    if contract == "text":
        if not isinstance(value, str):
            return _drift("text", value, "expected a string")
        if _parses_as_json(value):
            return _drift("text", value, "expected text, received JSON")
        return None
    if contract == "json":
        if isinstance(value, (dict, list)):
            return None
        if isinstance(value, str) and _parses_as_json(value):
            return None
        return _drift("json", value, "expected JSON (an object or array), received text")
    if isinstance(contract, dict):
        if isinstance(value, str) and _parses_as_json(value):
            value = orjson.loads(value)
        problem = _schema_problem(contract, value, "output")
        return None if problem is None else _drift("json schema", value, problem)
    try:
        adapter = TypeAdapter(contract)
        if isinstance(value, (str, bytes)) and contract is not str:
            try:
                adapter.validate_json(value)
                return None
            except ValidationError:
                pass
        adapter.validate_python(value)
        return None
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(x) for x in err["loc"]) or "output"
        name = getattr(contract, "__name__", str(contract))
        return _drift(name, value, f"{loc}: {err['msg']}")


def _parses_as_json(text: str) -> bool:
    stripped = text.strip()
    if not stripped or stripped[0] not in "{[":
        return False
    try:
        orjson.loads(stripped)
    except orjson.JSONDecodeError:
        return False
    return True


def _drift(expected: str, value: Any, detail: str) -> dict[str, Any]:
    return {"expected": expected, "got": type(value).__name__, "detail": detail}


def _schema_problem(schema: dict[str, Any], value: Any, path: str) -> str | None:
    kind = schema.get("type")
    if isinstance(kind, str):
        types = _JSON_TYPES.get(kind)
        ok = types is not None and isinstance(value, types)
        if kind in ("integer", "number") and isinstance(value, bool):
            ok = False
        if not ok:
            return f"{path}: expected {kind}, got {type(value).__name__}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path}: {value!r} is not one of {schema['enum']!r}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                return f"{path}: missing required key {key!r}"
        for key, sub in schema.get("properties", {}).items():
            if key in value and isinstance(sub, dict):
                problem = _schema_problem(sub, value[key], f"{path}.{key}")
                if problem:
                    return problem
    if isinstance(value, (list, tuple)) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            problem = _schema_problem(schema["items"], item, f"{path}[{i}]")
            if problem:
                return problem
    return None
