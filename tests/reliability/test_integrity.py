"""Issue 7, item 2 on small traces: the hash chain catches every single-byte edit (all of them,
exhaustively), deleted, inserted and reordered records at the right line, a cut tail, and, with
a key, a record rewritten by an attacker who recomputes the chain with plain sha256.

Also ``calltape repair`` (torn tail only, with a backup) and ``verify`` exit codes:
0 ``ok: N records ... run closed``, 1 for any problem or a never-closed run (unless
``--allow-open``), 2 for usage or a file that is not a trace.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from calltape import Session
from calltape.errors import CalltapeError
from calltape.trace import read_trace

KEY = "integrity-key-1"


def make_trace(path: Path, key: str | None = None, calls: int = 4) -> Path:
    """A closed run with an ok call, an error, a replayed call and a block."""
    from calltape.policy import presets

    with Session(path, trace_key=key) as s:
        s.register("add", lambda a, b: a + b, side_effect="read")
        for i in range(calls):
            s.call("add", a=i, b=1)
    with Session(path, trace_key=key, policy=presets.read_only()) as s:
        s.register("add", lambda a, b: a + b, side_effect="read")
        s.register("boom", lambda: 1 / 0, side_effect="read")
        s.register("rm", lambda p: None, side_effect="write")
        s.call("add", a=0, b=1)  # replayed
        s.call("boom")  # error
        s.call("rm", p="/")  # blocked
    return path


OTHER = [[b for b in range(256) if b != a] for a in range(256)]


def keyargs(key: str | None) -> list[str]:
    return ["--key", key] if key else []


@pytest.fixture(params=[None, KEY], ids=["sha256", "hmac"])
def key(request: pytest.FixtureRequest) -> str | None:
    return request.param  # type: ignore[no-any-return]


def test_an_intact_trace_verifies(
    tmp_path: Path, key: str | None, cli: Callable[..., Any], chain: Callable[..., Any]
) -> None:
    trace = make_trace(tmp_path / "run.jsonl", key)
    r = cli("verify", str(trace), *keyargs(key))
    n = len(trace.read_bytes().splitlines())
    assert r.code == 0, r.text
    assert r.out.startswith(f"ok: {n} records"), r.out
    assert "run closed" in r.out
    report = chain(trace, key.encode() if key else None)
    assert report.first_bad_line is None, "the chain is not the documented construction"
    # h is the last key of every record, and run_end carries the count and head before it
    recs = [orjson.loads(line) for line in trace.read_bytes().splitlines()]
    assert all(list(rec)[-1] == "h" for rec in recs)
    ends = [(i, rec) for i, rec in enumerate(recs) if rec["type"] == "run_end"]
    assert len(ends) == 2
    for i, rec in ends:
        assert rec["records"] == i and rec["head"] == recs[i - 1]["h"]


def test_the_key_can_come_from_the_environment(tmp_path: Path, cli: Callable[..., Any]) -> None:
    trace = make_trace(tmp_path / "run.jsonl", KEY)
    assert cli("verify", str(trace), env={"CALLTAPE_TRACE_KEY": KEY}).code == 0
    missing = cli("verify", str(trace))
    assert missing.code != 0 and "key" in missing.text
    assert "Traceback" not in missing.text


def test_every_single_byte_edit_is_detected(
    tmp_path: Path, key: str | None, cli: Callable[..., Any]
) -> None:
    """Every byte of the file, one at a time, replaced by another byte: never verifies."""
    from calltape.integrity import verify  # the function behind `calltape verify`

    trace = make_trace(tmp_path / "run.jsonl", key, calls=2)
    data = trace.read_bytes()
    # thousands of rewrites: on a RAM disk when there is one (opening files on overlayfs is slow)
    scratch = Path(tempfile.mkdtemp(dir="/dev/shm" if os.path.isdir("/dev/shm") else tmp_path))
    edited = scratch / "edited.jsonl"
    rng = random.Random(5)
    missed = []
    for offset in range(len(data)):
        # one bit flipped, and the byte replaced by another random byte
        for new in (data[offset] ^ (1 << rng.randrange(8)), rng.choice(OTHER[data[offset]])):
            edited.write_bytes(data[:offset] + bytes([new]) + data[offset + 1 :])
            try:
                report = verify(edited, key)
            except CalltapeError:
                continue  # refused as not a trace at all: detected
            if report.problem is None and report.closed:
                missed.append((offset, bytes([data[offset]]), bytes([new])))
    assert not missed, f"{len(missed)} of {2 * len(data)} edits verified ok: {missed[:5]}"
    # and the CLI agrees on a sample
    for offset in rng.sample(range(len(data)), 20):
        edited.write_bytes(data[:offset] + bytes([data[offset] ^ 0x01]) + data[offset + 1 :])
        assert cli("verify", str(edited), *keyargs(key)).code in (1, 2)
    shutil.rmtree(scratch)


def test_a_bad_line_is_named(tmp_path: Path, key: str | None, cli: Callable[..., Any]) -> None:
    trace = make_trace(tmp_path / "run.jsonl", key)
    lines = trace.read_bytes().splitlines(keepends=True)
    k = 5  # 0-based index of a call record in the middle
    cases = {
        "deleted": (lines[:k] + lines[k + 1 :], k + 1),
        "inserted": (lines[: k + 1] + [lines[k]] + lines[k + 1 :], k + 2),
        "reordered": (lines[:k] + [lines[k + 1], lines[k]] + lines[k + 2 :], k + 1),
        "edited": (
            lines[:k] + [lines[k].replace(b'"seq":', b'"seq": ', 1)] + lines[k + 1 :],
            k + 1,
        ),
    }
    bad = tmp_path / "bad.jsonl"
    for what, (content, line) in cases.items():
        bad.write_bytes(b"".join(content))
        r = cli("verify", str(bad), *keyargs(key))
        assert r.code == 1, (what, r.text)
        assert f"{bad}:{line}:" in r.out, (what, r.text)


def test_a_cut_tail_is_reported_as_never_closed(
    tmp_path: Path, key: str | None, cli: Callable[..., Any]
) -> None:
    trace = make_trace(tmp_path / "run.jsonl", key)
    lines = trace.read_bytes().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    for drop in (1, 2, 3):
        cut.write_bytes(b"".join(lines[:-drop]))
        r = cli("verify", str(cut), *keyargs(key))
        assert r.code == 1, (drop, r.text)
        assert "never closed" in r.out
        # an intact-but-open run is fine for a live run when asked
        assert cli("verify", str(cut), "--allow-open", *keyargs(key)).code == 0
    # a cut in the middle of a record is torn, not ok
    cut.write_bytes(b"".join(lines)[:-7])
    r = cli("verify", str(cut), "--allow-open", *keyargs(key))
    assert r.code == 1, r.text


def test_the_attackers_forgery_is_faithful_without_a_key(
    tmp_path: Path, cli: Callable[..., Any], attacker: Callable[..., list[bytes]]
) -> None:
    """Sanity check of the attacker model: on an unkeyed trace the plain-sha256 recompute is
    accepted (a plain chain only catches accidents, by design). This is what makes the keyed
    test below meaningful."""
    trace = make_trace(tmp_path / "run.jsonl")
    lines = trace.read_bytes().splitlines(keepends=True)
    at, body = _an_ok_call_end(lines)
    rec = orjson.loads(body)
    rec["output"] = 999
    forged = tmp_path / "forged.jsonl"
    forged.write_bytes(b"".join(attacker(lines, at, orjson.dumps(rec))))
    r = cli("verify", str(forged))
    assert r.code == 0, r.text


def _an_ok_call_end(lines: list[bytes]) -> tuple[int, bytes]:
    for i, line in enumerate(lines):
        rec = orjson.loads(line)
        if rec["type"] == "call_end" and rec["status"] == "ok" and not rec.get("replayed"):
            return i, line[: line.rindex(b',"h":"')] + b"}"
    raise AssertionError("no ok call_end")


def test_a_rewritten_record_with_a_recomputed_chain_is_caught_with_the_key(
    tmp_path: Path, cli: Callable[..., Any], attacker: Callable[..., list[bytes]]
) -> None:
    trace = make_trace(tmp_path / "run.jsonl", KEY)
    lines = trace.read_bytes().splitlines(keepends=True)
    at, body = _an_ok_call_end(lines)
    rec = orjson.loads(body)
    rec["output"] = 999
    forged = tmp_path / "forged.jsonl"
    forged.write_bytes(b"".join(attacker(lines, at, orjson.dumps(rec))))
    r = cli("verify", str(forged), "--key", KEY)
    assert r.code == 1, r.text
    assert f"{forged}:{at + 1}:" in r.out

    # deleting a record and fixing the counts: caught at the deleted record's line
    forged.write_bytes(b"".join(attacker(lines, at, None)))
    r = cli("verify", str(forged), "--key", KEY)
    assert r.code == 1 and f"{forged}:{at + 1}:" in r.out, r.text

    # rewriting the whole file from the header on, claiming it was never keyed
    header = orjson.loads(lines[0][: lines[0].rindex(b',"h":"')] + b"}")
    header["keyed"] = False
    forged.write_bytes(b"".join(attacker(lines, 0, orjson.dumps(header))))
    r = cli("verify", str(forged), "--key", KEY)
    assert r.code == 1 and f"{forged}:1:" in r.out, r.text


def test_a_closed_run_whose_counts_do_not_match_is_reported(
    tmp_path: Path, cli: Callable[..., Any], attacker: Callable[..., list[bytes]]
) -> None:
    """A record removed and the chain recomputed, but run_end's count left as it was."""
    trace = make_trace(tmp_path / "run.jsonl")
    lines = trace.read_bytes().splitlines(keepends=True)
    at, _ = _an_ok_call_end(lines)
    prev = lines[at - 1][lines[at - 1].rindex(b',"h":"') + 6 : -3]
    out = lines[:at]
    for line in lines[at + 1 :]:
        body = line[: line.rindex(b',"h":"')] + b"}"
        h = hashlib.sha256(prev + b"\n" + body).hexdigest().encode()
        out.append(body[:-1] + b',"h":"' + h + b'"}\n')
        prev = h
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"".join(out))
    r = cli("verify", str(bad))
    assert r.code == 1, r.text
    assert "run_end" in r.out


def test_verify_usage_and_unreadable_files_exit_2(
    tmp_path: Path, cli_proc: Callable[..., Any], cli: Callable[..., Any]
) -> None:
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b"\x00\xff not a trace\n")
    for i, argv in enumerate(
        (
            ["verify", str(junk)],
            ["verify", str(tmp_path / "missing.jsonl")],
            ["verify", str(tmp_path)],
            ["verify"],
        )
    ):
        r = (cli_proc if i == 0 else cli)(*argv)  # one real process, the rest in-process
        assert r.code == 2, (argv, r.text)
        assert "Traceback" not in r.text
        assert r.err.strip().splitlines()[-1].startswith("calltape: error:"), r.err


def test_repair_cuts_only_a_torn_tail_and_keeps_a_backup(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    trace = make_trace(tmp_path / "run.jsonl")
    whole = trace.read_bytes()
    lines = whole.splitlines(keepends=True)
    torn = b"".join(lines[:-1]) + lines[-1][:20]
    trace.write_bytes(torn)
    assert read_trace(trace).torn_line == len(lines)

    r = cli("repair", str(trace))
    assert r.code == 0, r.text
    assert trace.read_bytes() == b"".join(lines[:-1])
    backups = list(tmp_path.glob("run.jsonl.bak-*"))
    assert len(backups) == 1 and backups[0].read_bytes() == torn
    assert cli("verify", str(trace), "--allow-open").code == 0

    again = cli("repair", str(trace))
    assert again.code == 0 and "nothing to repair" in again.out
    assert trace.read_bytes() == b"".join(lines[:-1])

    # a second repair (in the same second) keeps the first backup and makes its own
    trace.write_bytes(b"".join(lines[:-1]) + b'{"type": "call_e')
    assert cli("repair", str(trace)).code == 0
    backups = sorted(tmp_path.glob("run.jsonl.bak-*"))
    assert len(backups) == 2
    assert {b.read_bytes() for b in backups} == {torn, b"".join(lines[:-1]) + b'{"type": "call_e'}


def test_repair_refuses_damage_in_the_middle(tmp_path: Path, cli: Callable[..., Any]) -> None:
    trace = make_trace(tmp_path / "run.jsonl")
    lines = trace.read_bytes().splitlines(keepends=True)
    lines[3] = b'{"type": "call_start", oops\n'
    damaged = b"".join(lines)
    trace.write_bytes(damaged)
    r = cli("repair", str(trace))
    assert r.code != 0, r.text
    assert f"{trace}:4:" in r.err
    assert trace.read_bytes() == damaged, "repair must not cut intact records"


def test_a_keyed_trace_resumed_after_a_torn_write_still_verifies(
    tmp_path: Path, cli: Callable[..., Any]
) -> None:
    trace = make_trace(tmp_path / "run.jsonl", KEY)
    data = trace.read_bytes()
    trace.write_bytes(data + data.splitlines(keepends=True)[3][:40])  # a torn record
    with Session(trace, trace_key=KEY) as s:
        s.register("add", lambda a, b: a + b, side_effect="read")
        assert s.call("add", a=0, b=1).replayed
    r = cli("verify", str(trace), "--key", KEY)
    assert r.code == 0, r.text


@pytest.mark.parametrize(("recorded", "resumed"), [(KEY, None), (None, KEY), (KEY, "other-key")])
def test_resuming_with_a_different_key_does_not_break_the_chain(
    tmp_path: Path, cli: Callable[..., Any], recorded: str | None, resumed: str | None
) -> None:
    """Appending with another key (or none) would leave a chain no key verifies: the session
    must refuse to open, or the trace must still verify with the key it was recorded with."""
    trace = make_trace(tmp_path / "run.jsonl", recorded)
    try:
        with Session(trace, trace_key=resumed) as s:
            s.register("add", lambda a, b: a + b, side_effect="read")
            s.call("add", a=7, b=1)
    except CalltapeError as exc:
        assert "key" in str(exc).lower(), exc
        assert cli("verify", str(trace), *keyargs(recorded)).code == 0
        return
    r = cli("verify", str(trace), *keyargs(recorded))
    assert r.code == 0, f"resumed with {resumed!r}: {r.text}"
