"""Issue 7, item 5: fuzzing (hypothesis) of the trace reader, the argument canonicalizer and the
CLI. The only acceptable failures are ``CalltapeError`` subclasses (library) and one clean
``calltape: ...`` line with exit 1 or 2 (CLI): never another exception, never a traceback.

Example counts are modest so the suite stays fast; raise them locally with
``--hypothesis-seed`` / ``HYPOTHESIS_PROFILE`` if hunting.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as dt
import decimal
import enum
import functools
import math
import os
import pathlib
import re
import shutil
import sys
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pydantic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from calltape import Session
from calltape.errors import CalltapeError, FingerprintError
from calltape.fingerprint import canonical_json, fingerprint, to_jsonable
from calltape.trace import TraceIndex, read_trace

FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HEX64 = re.compile(r"[0-9a-f]{64}")


@functools.cache
def base_trace() -> bytes:
    """A real closed trace with every record kind, including a resolution and a resume."""
    from calltape.policy import presets

    d = Path(tempfile.mkdtemp(prefix="calltape-fuzz-"))
    atexit.register(shutil.rmtree, d, True)
    path = d / "base.jsonl"
    with Session(path) as s:
        s.register("add", lambda a, b: a + b, side_effect="read")
        s.register("boom", lambda: 1 / 0, side_effect="read")
        s.call("add", a=1, b=2)
        s.call("boom")
        s.call("add", a=[1, 2], b=[3])
    with Session(path, policy=presets.read_only()) as s:
        s.register("add", lambda a, b: a + b, side_effect="read")
        s.register("rm", lambda p: None, side_effect="write")
        s.call("add", a=1, b=2)
        s.call("rm", p="/")
    return path.read_bytes()


def reader_outcomes(path: Path) -> None:
    """Every reader either works or raises a CalltapeError."""
    from calltape.integrity import verify

    for read in (read_trace, TraceIndex.build, verify):
        with contextlib.suppress(CalltapeError):
            read(path)


def open_session(path: Path) -> None:
    """Resuming from the file either works or raises a CalltapeError; never anything else."""
    try:
        s = Session(path)
    except CalltapeError:
        return
    try:
        s.register("add", lambda a, b: a + b, side_effect="read")
        s.call("add", a=1, b=2)
    finally:
        s.close()


# --------------------------------------------------------------------------- the reader


@FUZZ
@given(data=st.binary(max_size=4096))
def test_random_bytes(tmp_path: Path, data: bytes) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(data)
    reader_outcomes(path)


@FUZZ
@given(cut=st.integers(min_value=0))
def test_truncated_anywhere(tmp_path: Path, cut: int) -> None:
    data = base_trace()
    cut %= len(data) + 1
    path = tmp_path / "t.jsonl"
    path.write_bytes(data[:cut])
    first = data.index(b"\n") + 1
    if cut == 0:
        with pytest.raises(CalltapeError):
            read_trace(path)
        return
    if cut < first:
        # killed while writing the header: nothing recorded, the torn header is tolerated
        result = read_trace(path)
        assert result.records == [] and result.torn_line == 1
        open_session(path)
        assert len(read_trace(path).records) >= 2, "the resume did not start the run afresh"
        return
    result = read_trace(path)
    whole = data[:cut].count(b"\n")
    assert len(result.records) == whole
    assert (result.torn_line is None) == (data[:cut].endswith(b"\n"))
    if result.torn_line is not None:
        assert result.torn_line == whole + 1
    open_session(path)
    assert read_trace(path).torn_line is None, "the resume did not set the torn bytes aside"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)  # what orjson can write
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@FUZZ
@given(data=st.data())
def test_wrong_types_in_any_field(tmp_path: Path, data: st.DataObject) -> None:
    lines = base_trace().splitlines(keepends=True)
    i = data.draw(st.integers(0, len(lines) - 1), label="line")
    rec = orjson.loads(lines[i])
    how = data.draw(st.sampled_from(["replace", "delete", "whole"]), label="how")
    if how == "whole":
        new: bytes = orjson.dumps(data.draw(json_values, label="record")) + b"\n"
    else:
        field = data.draw(st.sampled_from(sorted(rec)), label="field")
        if how == "delete":
            del rec[field]
        else:
            rec[field] = data.draw(json_values, label="value")
        new = orjson.dumps(rec) + b"\n"
    lines[i] = new
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"".join(lines))
    reader_outcomes(path)
    open_session(path)


@FUZZ
@given(data=st.data())
def test_spliced_lines(tmp_path: Path, data: st.DataObject) -> None:
    """Lines dropped, duplicated, swapped or glued together."""
    lines = base_trace().splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 3))):
        i = data.draw(st.integers(0, len(lines) - 1))
        op = data.draw(st.sampled_from(["drop", "dup", "swap", "glue"]))
        if op == "drop" and len(lines) > 1:
            del lines[i]
        elif op == "dup":
            lines.insert(i, lines[i])
        elif op == "swap" and i + 1 < len(lines):
            lines[i], lines[i + 1] = lines[i + 1], lines[i]
        elif op == "glue" and i + 1 < len(lines):
            lines[i : i + 2] = [lines[i][:-1] + lines[i + 1]]
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"".join(lines))
    reader_outcomes(path)
    open_session(path)


@pytest.mark.parametrize("where", ["middle", "last", "last-without-newline"])
def test_huge_lines(tmp_path: Path, where: str) -> None:
    lines = base_trace().splitlines(keepends=True)
    huge = b'{"type":"call_end","blob":"' + b"A" * (24 * 1024 * 1024) + b'"}'
    if where == "middle":
        lines.insert(3, huge + b"\n")
    elif where == "last":
        lines.append(huge + b"\n")
    else:
        lines.append(huge)
    path = tmp_path / "t.jsonl"
    path.write_bytes(b"".join(lines))
    reader_outcomes(path)
    open_session(path)


# --------------------------------------------------------------------------- the canonicalizer


class Color(enum.Enum):
    RED = "red"
    ODD = 1.5
    NAN = float("nan")


class Level(enum.IntEnum):
    LOW = 1


@dataclasses.dataclass
class Point:
    x: Any
    y: Any = None


class Model(pydantic.BaseModel):
    name: str
    value: Any = None


class Grumpy:
    """str, eq and hash raise (repr works, so hypothesis can report it)."""

    def __repr__(self) -> str:
        return "Grumpy()"

    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __eq__(self, other: object) -> bool:
        raise RuntimeError("no eq")

    def __hash__(self) -> int:
        raise RuntimeError("no hash")


class Nasty(Grumpy):
    """repr raises too."""

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


class FloatSub(float):
    pass


class StrSub(str):
    pass


odd_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**53 - 3, max_value=2**70) | st.integers(max_value=-(2**53) + 3),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(allow_nan=False).map(FloatSub),
    st.text(max_size=10),
    st.text(st.characters(codec=None, categories=["Cs", "Co", "Cn", "So"]), max_size=4),
    st.text(max_size=5).map(StrSub),
    st.binary(max_size=10),
    st.binary(max_size=10).map(bytearray),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.datetimes(timezones=st.none() | st.timezones()),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.uuids(),
    st.builds(pathlib.PurePosixPath, st.text(max_size=8)),
    st.sampled_from([*Color, Level.LOW]),
    st.builds(Point, st.integers(), st.text(max_size=3)),
    st.builds(Model, name=st.text(max_size=5), value=st.integers()),
    st.just(object()),
    st.just(print),
    st.just(sys.stdout),
    st.builds(Grumpy),
    st.just(math.pi),
    st.just(decimal.Decimal("sNaN")),
)

hashable_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=5),
    st.floats(allow_nan=True),
    st.uuids(),
    st.sampled_from([Color.RED, Level.LOW]),
)

odd_values = st.recursive(
    odd_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.lists(children, max_size=4).map(tuple),
        st.dictionaries(st.text(max_size=6), children, max_size=4),
        st.dictionaries(hashable_leaves, children, max_size=3),
        st.frozensets(hashable_leaves, max_size=4),
        st.sets(hashable_leaves, max_size=4),
        st.builds(Point, children, children),
    ),
    max_leaves=16,
)


@settings(max_examples=300, deadline=None)
@given(value=odd_values, tool=st.text(max_size=10))
def test_fingerprint_of_anything(value: Any, tool: str) -> None:
    args = {"v": value}
    try:
        fp = fingerprint(tool, args)
    except FingerprintError as exc:
        assert exc.path.startswith("args"), exc.path
        return
    assert HEX64.fullmatch(fp)
    assert fingerprint(tool, args) == fp, "not deterministic"
    assert fingerprint(tool, dict(reversed(list({"z": 1, **args}.items())))) == fingerprint(
        tool, {"z": 1, **args}
    ), "depends on key order"


@settings(max_examples=300, deadline=None)
@given(value=odd_values)
def test_canonical_json_and_outputs_of_anything(value: Any) -> None:
    try:
        data = canonical_json(value)
    except FingerprintError:
        pass
    else:
        orjson.loads(data)  # valid JSON
    out, lossless = to_jsonable(value)  # outputs never fail
    orjson.dumps(out)
    assert isinstance(lossless, bool)


@pytest.mark.parametrize("depth", [100, 2_000, 50_000])
def test_deeply_nested_arguments(depth: int) -> None:
    value: Any = "leaf"
    for _ in range(depth):
        value = [value]
    with contextlib.suppress(FingerprintError):
        assert HEX64.fullmatch(fingerprint("t", {"v": value}))
    out, _ = to_jsonable(value)
    assert out is not None


def test_self_referencing_arguments() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    d: dict[str, Any] = {}
    d["self"] = d
    for value in (loop, d):
        with pytest.raises(FingerprintError):
            fingerprint("t", {"v": value})
        out, lossless = to_jsonable(value)
        assert not lossless
        orjson.dumps(out)


def test_an_object_whose_repr_str_eq_and_hash_all_raise() -> None:
    with pytest.raises(FingerprintError):
        fingerprint("t", {"v": [1, {"k": Nasty()}]})
    out, lossless = to_jsonable({"k": Nasty()})
    assert not lossless
    orjson.dumps(out)


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=odd_values)
def test_a_session_call_with_odd_args_runs_or_refuses_cleanly(tmp_path: Path, value: Any) -> None:
    ran = []
    trace = tmp_path / f"{uuid.uuid4().hex}.jsonl"
    with Session(trace) as s:
        s.register("take", lambda v: ran.append(1) or "ok", side_effect="read")
        try:
            r = s.call("take", v=value)
        except FingerprintError:
            assert ran == [], "the tool ran although its arguments were refused"
        else:
            assert r.ok and ran == [1]
    read_trace(trace)


# --------------------------------------------------------------------------- the CLI


@st.composite
def mutated_trace(draw: st.DrawFn) -> bytes:
    b = bytearray(base_trace())
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        i = draw(st.integers(0, max(0, len(b) - 1)))
        if op == "flip" and b:
            b[i] ^= draw(st.integers(1, 255))
        elif op == "cut":
            del b[i:]
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=40))
        elif op == "delete":
            del b[i : i + draw(st.integers(1, 200))]
    return bytes(b)


def files_for_cli() -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=2000), mutated_trace(), st.just(base_trace()))


def assert_clean(r: Any, argv: list[str]) -> None:
    assert r.code in (0, 1, 2), (argv, r.code, r.text)
    assert "Traceback" not in r.text, (argv, r.text)
    assert "internal error" not in r.text, (argv, r.text)
    for line in r.err.splitlines():
        assert line.startswith(("calltape: ", "usage: ")), (argv, r.err)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    content=files_for_cli(),
    command=st.sampled_from(["show", "verify", "repair", "replay", "resolve"]),
)
def test_cli_on_fuzzed_files(
    tmp_path: Path, cli: Callable[..., Any], content: bytes, command: str
) -> None:
    path = tmp_path / "fuzzed.jsonl"
    path.write_bytes(content)
    extras = {
        "show": [[], ["--json"], ["--summary"]],
        "verify": [[], ["--allow-open"]],
        "resolve": [["3", "--done"], ["1", "--redo"]],
    }
    for extra in extras.get(command, [[]]):
        argv = [command, str(path), *extra]
        r = cli(*argv)
        assert_clean(r, argv)
        if command == "repair" and r.code == 0:
            after = cli("show", str(path))
            assert_clean(after, ["show", "after repair"])
            assert "torn last record" not in after.err, "repair left a torn record"
        if command == "repair" and r.code != 0:
            assert path.read_bytes() == content, "a failed repair changed the file"
    for backup in tmp_path.glob("fuzzed.jsonl.bak-*"):
        backup.unlink()


def test_cli_in_real_processes_never_prints_a_traceback(
    tmp_path: Path, cli_proc: Callable[..., Any]
) -> None:
    """The same, end to end through ``python -m calltape`` on a few nasty files."""
    base = base_trace()
    files = {
        "binary": os.urandom(3000),
        "torn": base[:-17],
        "edited": base.replace(b'"status":"ok"', b'"status":"maybe"', 1),
    }
    for name, content in files.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_bytes(content)
        for command in ("show", "verify", "repair"):
            argv = [command, str(path)]
            r = cli_proc(*argv)
            assert_clean(r, [name, *argv])


def test_not_a_trace_at_all(tmp_path: Path, cli: Callable[..., Any]) -> None:
    """Directories, missing files, device files and empty files: one line, exit 2."""
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    for target in (tmp_path, tmp_path / "missing.jsonl", empty, Path("/dev/null")):
        for command in ("show", "verify", "repair", "replay"):
            argv = [command, str(target)]
            r = cli(*argv)
            assert_clean(r, argv)
            assert r.code == 2, (argv, r.text)


def test_datetime_like_values_are_stable() -> None:
    """A sanity anchor for the strategies above: equal values, equal fingerprints."""
    when = dt.datetime(2026, 11, 23, 12, 0, tzinfo=dt.UTC)
    assert fingerprint("t", {"w": when}) == fingerprint("t", {"w": when.isoformat()})
