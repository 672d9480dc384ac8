"""Resolve: the fingerprint is RFC 8785 canonical, deterministic and collision-free in practice."""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import io
import subprocess
import sys
import uuid
from pathlib import Path

import orjson
import pydantic
import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from calltape.errors import FingerprintError
from calltape.fingerprint import _fast_ok, canonical_json, fingerprint, normalize, to_jsonable

MAX_SAFE = 2**53 - 1
safe_ints = st.integers(min_value=-MAX_SAFE, max_value=MAX_SAFE)
any_text = (
    st.text()
)  # includes control characters, non-BMP, etc. (no lone surrogates in hypothesis)
json_leaf = st.none() | st.booleans() | safe_ints | any_text
json_values = st.recursive(
    json_leaf,
    lambda kids: st.lists(kids, max_size=5) | st.dictionaries(any_text, kids, max_size=5),
    max_leaves=25,
)
floats = st.floats(allow_nan=False, allow_infinity=False)
json_with_floats = st.recursive(
    json_leaf | floats,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(any_text, kids, max_size=4),
    max_leaves=20,
)


@settings(max_examples=600)
@given(json_values)
def test_fast_path_is_byte_identical_to_rfc8785_where_it_applies(value: object) -> None:
    if _fast_ok(value):
        assert orjson.dumps(value, option=orjson.OPT_SORT_KEYS) == rfc8785.dumps(value)


@settings(max_examples=400)
@given(json_with_floats)
def test_canonical_json_equals_the_reference_for_every_json_value(value: object) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


@given(st.dictionaries(st.text(min_size=1), json_values, min_size=1, max_size=8), st.randoms())
def test_key_order_does_not_change_the_fingerprint(args: dict[str, object], rnd) -> None:
    items = list(args.items())
    rnd.shuffle(items)
    assert fingerprint("t", dict(items)) == fingerprint("t", args)


@given(
    st.dictionaries(st.text(max_size=5), json_values, max_size=4),
    st.dictionaries(st.text(max_size=5), json_values, max_size=4),
)
def test_different_arguments_give_different_fingerprints(a: dict, b: dict) -> None:
    if canonical_json(a) != canonical_json(b):
        assert fingerprint("t", a) != fingerprint("t", b)
    else:
        assert fingerprint("t", a) == fingerprint("t", b)


def test_tool_name_is_part_of_the_fingerprint() -> None:
    assert fingerprint("read", {"p": 1}) != fingerprint("write", {"p": 1})


def test_non_bmp_keys_sort_by_utf16_like_the_reference() -> None:
    args = {"\ue000": 1, "\U0001f600": 2}
    assert not _fast_ok(args)
    assert canonical_json(args) == rfc8785.dumps(args)


def test_fingerprint_is_stable_across_processes() -> None:
    args = {"path": "/tmp/ä", "n": [1, 2, {"z": None, "a": True}], "x": 0.1}
    code = f"from calltape.fingerprint import fingerprint;print(fingerprint('read_file', {args!r}))"
    other = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONHASHSEED": "12345"},
    ).stdout.strip()
    assert other == fingerprint("read_file", args)


class Color(enum.Enum):
    RED = "red"


@dataclasses.dataclass
class Point:
    x: int
    y: int


class Model(pydantic.BaseModel):
    name: str
    when: dt.date


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ((1, 2), [1, 2]),
        ({3, 1, 2}, [1, 2, 3]),
        (Color.RED, "red"),
        (Point(1, 2), {"x": 1, "y": 2}),
        (Model(name="n", when=dt.date(2026, 1, 2)), {"name": "n", "when": "2026-01-02"}),
        (dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), "2026-01-02T03:04:05+00:00"),
        (decimal.Decimal("1.10"), "1.10"),
        (b"\x00\xff", {"$bytes": "AP8="}),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (Path("/a/b"), "/a/b"),
        (2**60, {"$bigint": str(2**60)}),
        (dt.timedelta(seconds=90), 90.0),
    ],
)
def test_normalization_table(value: object, expected: object) -> None:
    assert normalize(value) == expected


def test_value_without_json_form_names_the_argument_path() -> None:
    with pytest.raises(FingerprintError) as info:
        fingerprint("read", {"files": ["ok", io.StringIO("x")]})
    assert info.value.path == "args.files[1]"
    assert "StringIO" in str(info.value)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), decimal.Decimal("NaN")])
def test_nan_and_infinity_are_rejected(bad: object) -> None:
    with pytest.raises(FingerprintError) as info:
        fingerprint("t", {"x": bad})
    assert "args.x" in str(info.value)


def test_lone_surrogate_is_a_fingerprint_error_not_a_crash() -> None:
    with pytest.raises(FingerprintError):
        fingerprint("t", {"x": "\ud800"})


def test_non_string_keys_are_rejected() -> None:
    with pytest.raises(FingerprintError) as info:
        fingerprint("t", {"m": {1: "a"}})
    assert "args.m[1]" in str(info.value)


def test_outputs_without_json_form_are_recorded_as_text() -> None:
    value, lossless = to_jsonable(io.StringIO)
    assert not lossless and isinstance(value, str)
    assert to_jsonable({"a": [1, "b"]}) == ({"a": [1, "b"]}, True)
