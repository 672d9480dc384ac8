"""Policy files: TOML beside the agent, parsed into pydantic models, compiled once.

::

    policy = load_policy("policy.toml")
    with Session("runs/a.jsonl", policy=policy) as session: ...

Evaluation order (see docs/policy.md):

1. ``[[presets]]``, in file order: limits no rule can lift. The first preset that does not
   allow decides.
2. ``[[rules]]``, in file order: the first rule whose tool glob, side effect and ``when``
   conditions all match decides.
3. ``default`` (``deny`` unless the file says otherwise).

A file with a mistake (unknown key, wrong type, bad glob, unknown preset, ...) is rejected at
load with :class:`PolicyFileError`: ``file:line: what is wrong; what was expected``.
"""

from __future__ import annotations

import bisect
import contextlib
import difflib
import os
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from calltape.errors import PolicyError
from calltape.policy import Action, Decision, Policy, ToolCall
from calltape.policy.combinators import (
    OPERATORS,
    Condition,
    FirstMatch,
    Rule,
    check_glob,
)

__all__ = ["Explanation", "FilePolicy", "PolicyFileError", "load_policy", "parse_policy"]

PRESET_NAMES: tuple[str, ...] = ("fs_sandbox", "net_allowlist", "read_only")


class PolicyFileError(PolicyError):
    """A policy file is invalid.

    Attributes:
        path: The file.
        line: 1-based line of the first problem (0 when the file could not be read).
        problems: Every problem found, as ``(line, message)``, first first.
    """

    def __init__(self, path: str, line: int, message: str, problems: list[tuple[int, str]]):
        self.path = path
        self.line = line
        self.problems = problems
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {message}{more}")


# ------------------------------------------------------------------ the models


def _one_or_many(v: Any) -> Any:
    if isinstance(v, str):
        return [v]
    if not isinstance(v, list):
        raise ValueError(f"expected a string or an array of strings, got {_show(v)}")
    return v


def _glob(v: Any) -> str:
    if not isinstance(v, str):
        raise ValueError(f"expected a glob string, got {_toml_type(v)} {v!r}")
    return check_glob(v)


Glob = Annotated[str, BeforeValidator(_glob)]
SideEffect = Literal["read", "write", "network", "exec", "unknown"]
Scalar = str | int | float | bool


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


_TOOL_NAME = re.compile(r"[^\s*?\[\]]+")


class _PresetBase(_Model):
    #: Exact tool names this preset does not apply to (no globs: renaming a tool never
    #: exempts it).
    skip_tools: list[str] = []

    @field_validator("skip_tools")
    @classmethod
    def _exact_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not _TOOL_NAME.fullmatch(name):
                raise ValueError(
                    f"{name!r} is not an exact tool name; expected names without spaces or "
                    "glob characters (a glob could exempt a renamed tool)"
                )
        return v


class ConditionModel(_Model):
    """One ``when`` condition: ``arg`` and exactly one operator."""

    arg: str = Field(min_length=1)
    eq: Scalar | None = None
    ne: Scalar | None = None
    lt: int | float | str | None = None
    le: int | float | str | None = None
    gt: int | float | str | None = None
    ge: int | float | str | None = None
    in_: list[Scalar] | None = Field(None, alias="in")
    not_in: list[Scalar] | None = None
    regex: str | None = None
    glob: str | None = None
    under: str | None = None
    host_in: list[str] | None = None
    exists: bool | None = None

    @field_validator("regex")
    @classmethod
    def _regex_compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"bad regular expression {v!r}: {exc}") from None
        return v

    @field_validator("host_in")
    @classmethod
    def _hosts_parse(cls, v: list[str] | None) -> list[str] | None:
        if v is not None:
            from calltape.policy.net import HostAllowlist

            HostAllowlist(v)  # raises ValueError naming the entry
        return v

    @model_validator(mode="after")
    def _one_operator(self) -> ConditionModel:
        ops = self.operators()
        if len(ops) != 1:
            got = f"got {', '.join(ops)}" if ops else "got none"
            raise ValueError(
                f"a condition needs exactly one operator besides 'arg' ({got}); expected one of: "
                + ", ".join(OPERATORS)
            )
        return self

    def operators(self) -> list[str]:
        return ["in" if name == "in_" else name for name in self.model_fields_set if name != "arg"]


class RuleModel(_Model):
    """One ``[[rules]]`` table."""

    id: str = Field(pattern=r"^[A-Za-z0-9_.:\-]+$")
    tool: Annotated[list[Glob], BeforeValidator(_one_or_many), Field(min_length=1)] = ["*"]
    side_effect: (
        Annotated[list[SideEffect], BeforeValidator(_one_or_many), Field(min_length=1)] | None
    ) = None
    action: Literal["allow", "deny", "ask"]
    reason: str | None = None
    when: list[ConditionModel] = []


class FsSandboxPreset(_PresetBase):
    use: Literal["fs_sandbox"]
    root: str = Field(min_length=1)
    write: bool = False


class NetAllowlistPreset(_PresetBase):
    use: Literal["net_allowlist"]
    hosts: list[str] = Field(min_length=1)
    schemes: list[str] = ["http", "https"]
    resolve_dns: bool = False

    @field_validator("hosts")
    @classmethod
    def _hosts_parse(cls, v: list[str]) -> list[str]:
        from calltape.policy.net import HostAllowlist

        HostAllowlist(v)
        return v


class ReadOnlyPreset(_PresetBase):
    use: Literal["read_only"]


PresetModel = Annotated[
    FsSandboxPreset | NetAllowlistPreset | ReadOnlyPreset, Field(discriminator="use")
]


def _integer(v: Any) -> Any:
    if isinstance(v, float):  # 1.0 == 1 would pass the Literal
        raise ValueError(f"expected 1, got {_show(v)}")
    return v


class PolicyFileModel(_Model):
    """The whole file."""

    version: Annotated[Literal[1], BeforeValidator(_integer)] = 1
    default: Literal["allow", "deny", "ask"] = "deny"
    default_reason: str | None = None
    presets: list[PresetModel] = []
    rules: list[RuleModel] = []


_MODELS: dict[str, type[BaseModel]] = {
    "fs_sandbox": FsSandboxPreset,
    "net_allowlist": NetAllowlistPreset,
    "read_only": ReadOnlyPreset,
}

# ------------------------------------------------------------------ the compiled policy


@dataclass(frozen=True, slots=True)
class Explanation:
    """What decided a call: the decision and where the deciding rule was written."""

    decision: Decision
    source: str


class FilePolicy:
    """A loaded policy file. ``decide`` runs presets, then rules, then the default."""

    __slots__ = ("default", "guards", "path", "rules", "table")

    def __init__(
        self,
        path: str,
        guards: list[tuple[Policy, str, frozenset[str]]],
        rules: list[Rule],
        default: Decision,
    ) -> None:
        self.path = path
        self.guards = tuple(guards)
        self.rules = tuple(rules)
        self.default = default
        self.table = FirstMatch(self.rules, default)

    def __repr__(self) -> str:
        return f"load_policy({self.path!r})"

    def decide(self, call: ToolCall) -> Decision:
        for guard, _, skip in self.guards:
            if call.tool in skip:
                continue
            d = guard.decide(call)
            if d.action != "allow":
                return d
        return self.table.decide(call)

    def explain(self, call: ToolCall) -> Explanation:
        """The decision and the preset or rule (``file:line``) that made it."""
        for guard, source, skip in self.guards:
            if call.tool in skip:
                continue
            d = guard.decide(call)
            if d.action != "allow":
                return Explanation(d, source)
        d, item = self.table.explain(call)
        if isinstance(item, Rule):
            return Explanation(d, item.source or item.id)
        return Explanation(d, f"{self.path}: default = {self.default.action!r}")


# ------------------------------------------------------------------ loading


def load_policy(path: str | os.PathLike[str]) -> FilePolicy:
    """Load and compile a TOML policy file.

    Relative paths in the file (``root``, ``under``) are relative to the file's directory.

    Raises:
        PolicyFileError: the file cannot be read, is not TOML, or does not follow the format;
            the message names the file and the line.
    """
    name = os.fspath(path)
    if os.path.exists(name) and not os.path.isdir(name) and not os.path.isfile(name):
        raise PolicyFileError(name, 0, "not a regular file (a pipe or a device)", [])
    try:
        data = Path(name).read_bytes()
    except IsADirectoryError:
        raise PolicyFileError(name, 0, "is a directory, not a policy file", []) from None
    except OSError as exc:
        raise PolicyFileError(name, 0, f"cannot read: {exc.strerror or exc}", []) from None
    try:
        text = data.decode("utf-8-sig")  # an editor's byte order mark is not a mistake
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise PolicyFileError(
            name, line, f"not UTF-8 text (byte 0x{data[exc.start]:02x}); a policy is TOML", []
        ) from None
    return parse_policy(text, name, base=os.path.dirname(os.path.abspath(name)))


def parse_policy(text: str, path: str = "<policy>", *, base: str | None = None) -> FilePolicy:
    """Compile policy TOML held in a string (``path`` is only used in messages).

    Raises:
        PolicyFileError: as :func:`load_policy`.
    """
    base = base if base is not None else os.getcwd()
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column \d+\)", msg)
        line = int(m.group(1)) if m else (text.count("\n") + 1 if "end of document" in msg else 0)
        msg = re.sub(r"\s*\(at (line \d+, column \d+|end of document)\)", "", msg)
        raise PolicyFileError(path, line, f"not valid TOML: {msg}", [(line, msg)]) from None
    locate = _Locator(text).locate
    try:
        model = PolicyFileModel.model_validate(raw)
    except ValidationError as exc:
        errors = _merge_union_errors(_drop_explained_missing(exc.errors(), raw), raw)
        problems = sorted({_describe(err, raw, locate) for err in errors}, key=lambda p: p[0])
        line, msg = problems[0]
        raise PolicyFileError(path, line, msg, problems) from None
    return _compile(model, raw, path, base, locate)


def _compile(
    model: PolicyFileModel,
    raw: dict[str, Any],
    path: str,
    base: str,
    locate: Callable[[tuple[Any, ...]], int],
) -> FilePolicy:
    from calltape.policy.net import NetAllowlist
    from calltape.policy.presets import ReadOnly
    from calltape.policy.sandbox import FsSandbox

    def fail(loc: tuple[Any, ...], msg: str) -> PolicyFileError:
        line = locate(loc)
        return PolicyFileError(path, line, f"{_dotted(loc)}: {msg}", [(line, msg)])

    def local(p: str) -> str:
        return os.path.join(base, os.path.expanduser(p))

    guards: list[tuple[Policy, str, frozenset[str]]] = []
    for i, preset in enumerate(model.presets):
        source = f"{path}:{locate(('presets', i))} [[presets]] use = {preset.use!r}"
        guard: Policy
        if isinstance(preset, FsSandboxPreset):
            try:
                guard = FsSandbox(local(preset.root), write=preset.write)
            except PolicyError as exc:
                raise fail(("presets", i, "root"), str(exc)) from None
        elif isinstance(preset, NetAllowlistPreset):
            guard = NetAllowlist(
                preset.hosts, schemes=preset.schemes, resolve_dns=preset.resolve_dns
            )
        else:
            guard = ReadOnly()
        guards.append((guard, source, frozenset(preset.skip_tools)))

    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for i, r in enumerate(model.rules):
        if r.id in seen:
            raise fail(
                ("rules", i, "id"),
                f"duplicate rule id {r.id!r} (first used by rules[{seen[r.id]}]); "
                "expected a unique id",
            )
        seen[r.id] = i
        conditions = []
        for j, c in enumerate(r.when):
            op = c.operators()[0]
            value = getattr(c, "in_" if op == "in" else op)
            if op == "under":
                value = local(value)
                if not os.path.isdir(os.path.realpath(value)):
                    raise fail(
                        ("rules", i, "when", j, "under"),
                        f"{c.under!r} is not a directory ({value}); expected an "
                        "existing directory (relative to the policy file)",
                    )
            conditions.append(Condition(c.arg, op, value))
        rules.append(
            Rule(
                r.id,
                r.action,
                r.reason,
                tools=r.tool,
                side_effects=r.side_effect,
                when=conditions,
                source=f"{path}:{locate(('rules', i))} rule {r.id!r}",
            )
        )
    action: Action = model.default
    reason = model.default_reason or f"no rule matched (default: {action})"
    return FilePolicy(path, guards, rules, Decision(action, "default", reason))


# ------------------------------------------------------------------ error messages

_TYPE_WORDS = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "list_type": "an array",
    "model_type": "a table",
    "dict_type": "a table",
    "model_attributes_type": "a table",
}


def _toml_type(v: Any) -> str:
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, int):
        return "integer"
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "table"
    if isinstance(v, datetime | date | time):
        return "date-time"
    return type(v).__name__


def _data_loc(loc: tuple[Any, ...], raw: Any, kind: str = "") -> tuple[Any, ...]:
    """``loc`` without pydantic's own steps (union members, validator names); the key of a
    ``missing`` error is kept to name it."""
    out: list[Any] = []
    node = raw
    for i, step in enumerate(loc):
        if (isinstance(node, dict) and step in node) or (
            isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)
        ):
            out.append(step)
            node = node[step]
        elif (
            kind == "missing"
            and i == len(loc) - 1
            and isinstance(node, dict)
            and isinstance(step, str)
        ):
            if step == "in_":
                step = "in"
            out.append(step)  # a missing key: keep it to name it
            node = None
    return tuple(out)


def _merge_union_errors(errors: list[Any], raw: dict[str, Any]) -> list[Any]:
    """One "expected a string or an integer" instead of one error per member of a union."""
    by_loc: dict[tuple[Any, ...], list[Any]] = {}
    for err in errors:
        by_loc.setdefault(_data_loc(tuple(err["loc"]), raw), []).append(err)
    out = []
    for loc, group in by_loc.items():
        if len(group) > 1 and all(e["type"] in _TYPE_WORDS for e in group):
            words = list(dict.fromkeys(_TYPE_WORDS[e["type"]] for e in group))
            expected = ", ".join(words[:-1]) + " or " + words[-1]
            out.append({"type": "_merged", "loc": loc, "msg": expected, "input": group[0]["input"]})
        else:
            out.extend(group)
    return out


def _drop_explained_missing(errors: list[Any], raw: dict[str, Any]) -> list[Any]:
    """Drop "missing key 'action'" when the same table has an unknown key 'acton': the typo
    is the message worth reading."""
    typos = set()
    for err in errors:
        if err["type"] == "extra_forbidden":
            loc = _data_loc(tuple(err["loc"]), raw)
            for near in difflib.get_close_matches(str(loc[-1]), _fields_at(loc[:-1], raw)):
                typos.add((*loc[:-1], near))
    kept = [
        e
        for e in errors
        if not (e["type"] == "missing" and _data_loc(tuple(e["loc"]), raw, "missing") in typos)
    ]
    return kept or errors


def _dotted(loc: tuple[Any, ...]) -> str:
    text = ""
    for step in loc:
        text += f"[{step}]" if isinstance(step, int) else (f".{step}" if text else str(step))
    return text or "(top level)"


def _fields_at(loc: tuple[Any, ...], raw: Any) -> list[str]:
    """The keys allowed in the table at ``loc``."""
    model: type[BaseModel] = PolicyFileModel
    if len(loc) >= 2 and loc[0] == "presets":
        node = raw["presets"][loc[1]]
        use = node.get("use") if isinstance(node, dict) else None
        model = _MODELS.get(use, ReadOnlyPreset) if isinstance(use, str) else ReadOnlyPreset
    elif len(loc) >= 4 and loc[0] == "rules" and loc[2] == "when":
        model = ConditionModel
    elif len(loc) >= 2 and loc[0] == "rules":
        model = RuleModel
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _describe(
    err: Any, raw: dict[str, Any], locate: Callable[[tuple[Any, ...]], int]
) -> tuple[int, str]:
    kind: str = err["type"]
    loc = _data_loc(tuple(err["loc"]), raw, kind)
    value = err.get("input")
    ctx = err.get("ctx") or {}
    where = _dotted(loc)
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = _fields_at(loc[:-1], raw)
        near = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        parent = _dotted(loc[:-1])
        msg = f"{parent}: unknown key {key!r}{hint}; expected one of: {', '.join(allowed)}"
    elif kind == "missing":
        msg = f"{_dotted(loc[:-1])}: missing key {loc[-1]!r}"
    elif kind == "union_tag_invalid":
        tag = str(ctx.get("tag"))
        near = difflib.get_close_matches(tag, PRESET_NAMES, n=1)
        hint = f" (did you mean {near[0]!r}?)" if near else ""
        loc = (*loc, "use")
        msg = f"{_dotted(loc)}: unknown preset {tag!r}{hint}; expected one of: " + ", ".join(
            PRESET_NAMES
        )
    elif kind == "union_tag_not_found":
        msg = f"{where}: missing key 'use' (the preset: one of {', '.join(PRESET_NAMES)})"
    elif kind in ("literal_error", "enum"):
        msg = f"{where}: expected {ctx.get('expected')}, got {_show(value)}"
    elif kind == "_merged":
        msg = f"{where}: expected {err['msg']}, got {_show(value)}"
    elif kind in _TYPE_WORDS:
        msg = f"{where}: expected {_TYPE_WORDS[kind]}, got {_show(value)}"
    elif kind == "string_pattern_mismatch":
        msg = (
            f"{where}: {value!r} is not a valid id; expected letters, digits, '_', '.', ':' or '-'"
        )
    elif kind == "too_short":
        msg = f"{where}: must not be empty"
    elif kind == "string_too_short":
        msg = f"{where}: must not be an empty string"
    elif kind == "value_error":
        text = str(ctx.get("error", err["msg"]))
        msg = f"{where}: {text}"
    else:
        msg = f"{where}: {err['msg']}, got {_show(value)}"
    return locate(loc), msg


def _show(v: Any) -> str:
    if isinstance(v, dict):
        return "a table"
    if isinstance(v, list):
        return "an array"
    return f"{_toml_type(v)} {v!r}"


# ------------------------------------------------------------------ finding lines


_BARE_KEY = re.compile(r"[A-Za-z0-9_\-]+")
_SCALAR = re.compile(r"[^,\]}\n#]*")


class _Locator:
    """Line numbers of the keys and tables of a (syntactically valid) TOML text.

    ``tomllib`` gives no positions, so this walks the text: table headers (arrays of tables
    counted), keys, dotted keys, inline tables and array elements.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.n = len(text)
        self.i = 0
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]
        self.lines: dict[tuple[Any, ...], int] = {}
        self.aot: dict[tuple[Any, ...], int] = {}
        with contextlib.suppress(Exception):  # a position is a courtesy: never fail the load
            self._document()

    def locate(self, loc: tuple[Any, ...]) -> int:
        """The line of ``loc``, else of its nearest enclosing key or table (else 1)."""
        for k in range(len(loc), 0, -1):
            line = self.lines.get(tuple(loc[:k]))
            if line is not None:
                return line
        return 1

    def _line(self) -> int:
        return bisect.bisect_left(self.newlines, self.i) + 1

    def _record(self, path: tuple[Any, ...]) -> None:
        self.lines.setdefault(path, self._line())

    def _ws(self, newlines: bool = False) -> None:
        t = self.text
        while self.i < self.n:
            c = t[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.i += 1
            elif c == "#":
                while self.i < self.n and t[self.i] != "\n":
                    self.i += 1
            else:
                break

    def _document(self) -> None:
        cur: tuple[Any, ...] = ()
        t = self.text
        while self.i < self.n:
            start = self.i
            self._ws(newlines=True)
            if self.i >= self.n:
                break
            if t.startswith("[[", self.i):
                self.i += 2
                keys = self._key()
                self._ws()
                self.i += 2
                base = self._resolve(keys)
                idx = self.aot.get(base, -1) + 1
                self.aot[base] = idx
                self._record(base)
                cur = (*base, idx)
                self._record(cur)
            elif t[self.i] == "[":
                self.i += 1
                cur = self._resolve(self._key())
                self._ws()
                self.i += 1
                self._record(cur)
            else:
                keys = self._key()
                path = (*cur, *keys)
                for k in range(1, len(keys) + 1):  # a.b = 1 defines table a, then a.b
                    self._record((*cur, *keys[:k]))
                self._ws()
                self.i += 1  # '='
                self._ws()
                self._value(path)
            if self.i == start:
                break

    def _resolve(self, keys: tuple[str, ...]) -> tuple[Any, ...]:
        path: tuple[Any, ...] = ()
        for k in keys[:-1]:
            path = (*path, k)
            if path in self.aot:
                path = (*path, self.aot[path])
        return (*path, keys[-1])

    def _key(self) -> tuple[str, ...]:
        keys: list[str] = []
        t = self.text
        while True:
            self._ws()
            c = t[self.i]
            if c == '"':
                end = self._basic_end(self.i + 1)
                keys.append(t[self.i + 1 : end])
                self.i = end + 1
            elif c == "'":
                end = t.index("'", self.i + 1)
                keys.append(t[self.i + 1 : end])
                self.i = end + 1
            else:
                m = _BARE_KEY.match(t, self.i)
                if not m:
                    raise ValueError("no key")
                keys.append(m.group())
                self.i = m.end()
            self._ws()
            if self.i < self.n and t[self.i] == ".":
                self.i += 1
                continue
            return tuple(keys)

    def _basic_end(self, j: int) -> int:
        t = self.text
        while t[j] != '"':
            j += 2 if t[j] == "\\" else 1
        return j

    def _value(self, path: tuple[Any, ...]) -> None:
        t = self.text
        if t.startswith('"""', self.i):
            j = self.i + 3
            while not t.startswith('"""', j):
                j += 2 if t[j] == "\\" else 1
            while t.startswith('"', j + 3):
                j += 1
            self.i = j + 3
        elif t.startswith("'''", self.i):
            j = t.index("'''", self.i + 3)
            while t.startswith("'", j + 3):
                j += 1
            self.i = j + 3
        elif t[self.i] == '"':
            self.i = self._basic_end(self.i + 1) + 1
        elif t[self.i] == "'":
            self.i = t.index("'", self.i + 1) + 1
        elif t[self.i] == "[":
            self.i += 1
            idx = 0
            while True:
                self._ws(newlines=True)
                if t[self.i] == "]":
                    self.i += 1
                    return
                self._record((*path, idx))
                self._value((*path, idx))
                self._ws(newlines=True)
                if t[self.i] == ",":
                    self.i += 1
                    idx += 1
                elif t[self.i] != "]":
                    raise ValueError("unexpected character in an array")
        elif t[self.i] == "{":
            self.i += 1
            while True:
                self._ws(newlines=True)
                if t[self.i] == "}":
                    self.i += 1
                    return
                keys = self._key()
                for k in range(1, len(keys) + 1):
                    self._record((*path, *keys[:k]))
                self._ws()
                self.i += 1
                self._ws()
                self._value((*path, *keys))
                self._ws(newlines=True)
                if t[self.i] == ",":
                    self.i += 1
                elif t[self.i] != "}":
                    raise ValueError("unexpected character in an inline table")
        else:
            m = _SCALAR.match(t, self.i)
            assert m is not None
            self.i = max(m.end(), self.i + 1)
