"""The trace reader: streaming, torn-tail tolerant, precise about anything else malformed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from calltape import Session, TraceCorrupt, TraceError
from calltape.trace import FORMAT_VERSION, Torn, TraceIndex, iter_raw, read_trace


def make_trace(path: Path, n: int = 3) -> Path:
    with Session(path) as s:
        s.register("echo", lambda i: i)
        for i in range(n):
            s.call("echo", i=i)
    return path


def test_round_trip_validates_every_record(tmp_path: Path) -> None:
    result = read_trace(make_trace(tmp_path / "t.jsonl"))
    assert result.torn_line is None
    assert [r.type for r in result.records][:3] == ["run_start", "call_start", "call_end"]
    assert result.records[0].format == FORMAT_VERSION


@pytest.mark.parametrize("cut", [1, 10, 40])
def test_torn_last_line_is_reported_not_fatal(tmp_path: Path, cut: int) -> None:
    path = make_trace(tmp_path / "t.jsonl")
    data = path.read_bytes()
    last_start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: last_start + cut])
    result = read_trace(path)
    intact = data[:last_start].count(b"\n")
    assert len(result.records) == intact
    assert result.torn_line == intact + 1
    assert "torn last record" in (result.warning or "")


def test_malformed_middle_line_names_file_and_line(tmp_path: Path) -> None:
    path = make_trace(tmp_path / "t.jsonl")
    lines = path.read_bytes().splitlines(keepends=True)
    lines[2] = b"{not json\n"
    path.write_bytes(b"".join(lines))
    with pytest.raises(TraceCorrupt) as info:
        read_trace(path)
    assert info.value.line == 3 and str(path) in str(info.value)


def test_wrong_field_type_is_a_validation_error_with_line(tmp_path: Path) -> None:
    path = make_trace(tmp_path / "t.jsonl")
    lines = path.read_text().splitlines(keepends=True)
    rec = json.loads(lines[1])
    rec["seq"] = "one"
    lines[1] = json.dumps(rec) + "\n"
    path.write_text("".join(lines))
    with pytest.raises(TraceCorrupt, match=r":2: invalid 'call_start' record: seq"):
        read_trace(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (b"\x7fELF\x02\x01\x01\x00\x00\n\x00\x00", "not a calltape trace"),
        (b'{"type": "call_end"}\n', "not a calltape trace"),
        (b'{"type": "run_start", "format": 99}\n', "format 99 is not supported"),
        (b"[1, 2]\n", "not a calltape trace"),
    ],
)
def test_things_that_are_not_traces(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    with pytest.raises(TraceCorrupt, match=message):
        read_trace(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no such trace file"):
        read_trace(tmp_path / "nope.jsonl")
    with pytest.raises(TraceError, match="is a directory"):
        read_trace(tmp_path)


def test_reader_streams(tmp_path: Path) -> None:
    path = make_trace(tmp_path / "t.jsonl", n=50)
    it = iter_raw(path)
    first = next(it)
    assert not isinstance(first, Torn) and first[0] == 1
    it.close()  # a lazy reader: nothing else was read into memory


def test_index_keeps_first_ok_result_per_fingerprint_occurrence(tmp_path: Path) -> None:
    path = make_trace(tmp_path / "t.jsonl", n=4)
    idx = TraceIndex.build(path)
    assert idx.last_seq == 4 and len(idx.ok) == 4 and idx.ended == "completed"
    assert sorted(rc.output for rc in idx.ok.values()) == [0, 1, 2, 3]


def test_json_schema_of_the_format_is_documented() -> None:
    from pydantic import TypeAdapter

    from calltape.trace import Record

    schema = TypeAdapter(Record).json_schema()
    doc = (Path(__file__).parents[2] / "docs" / "trace-format.md").read_text()
    for name in ("RunStart", "CallStart", "CallEnd", "RunEnd", "AttemptStart"):
        assert name in schema["$defs"]
        assert f'"title": "{name}"' in doc, f"docs/trace-format.md is stale: regenerate ({name})"
