"""Issue 7, item 2: 8 processes x 10,000 calls on one trace (``Session(..., shared=True)``).

Every record is present exactly once, the chain never forks (``calltape verify`` passes), and
on that trace a single-byte edit, a deleted tail and (with a key) a record rewritten by an
attacker who recomputes the chain with plain sha256 are all detected. Also: processes that join
a run without ``shared=True`` (the owner switches to the shared protocol when asked) lose
nothing either, a writer killed mid-record does not break the others, and threads sharing one
session lose nothing.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import shutil
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from calltape import Session

HERE = Path(__file__).parent
PROCS, CALLS = 8, 10_000
KEY = "k-7f3a-reliability"


@dataclass
class SharedRun:
    trace: Path
    codes: list[int]
    outs: list[str]
    errs: list[str]
    seconds: float


@pytest.fixture(scope="module")
def shared_run(tmp_path_factory: pytest.TempPathFactory) -> SharedRun:
    trace = tmp_path_factory.mktemp("shared") / "run.jsonl"
    env = {**os.environ, "CALLTAPE_TRACE_KEY": KEY}
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "_shared_child.py"), str(trace), str(p), str(CALLS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for p in range(PROCS)
    ]
    for p in procs:  # every session is open before anyone calls: maximal contention
        assert p.stdout is not None
        line = p.stdout.readline()
        if line != "ready\n":
            p.kill()
            pytest.fail(f"a writer did not start: {line!r} {p.communicate()[1][-3000:]}")
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [p.communicate(timeout=600) for p in procs]
    seconds = time.perf_counter() - t0
    print(f"\n{PROCS} processes x {CALLS} calls on one shared trace: {seconds:.1f}s")
    return SharedRun(
        trace,
        [p.returncode for p in procs],
        [r[0] for r in results],
        [r[1] for r in results],
        seconds,
    )


def test_every_record_is_present_exactly_once(shared_run: SharedRun) -> None:
    assert shared_run.codes == [0] * PROCS, shared_run.errs
    assert shared_run.outs == [f"done {CALLS}\n"] * PROCS  # "ready" was read before
    recs = [orjson.loads(line) for line in shared_run.trace.read_bytes().splitlines()]
    kinds = Counter(r["type"] for r in recs)
    assert kinds == {
        "run_start": 1,
        "attempt_start": PROCS - 1,
        "call_start": PROCS * CALLS,
        "call_end": PROCS * CALLS,
        "run_end": PROCS,
    }
    starts = [r for r in recs if r["type"] == "call_start"]
    calls = Counter((r["args"]["p"], r["args"]["j"]) for r in starts)
    assert set(calls) == {(p, j) for p in range(PROCS) for j in range(CALLS)}
    assert max(calls.values()) == 1
    seqs = [r["seq"] for r in starts]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), "seq forked or reordered"
    assert set(seqs) == set(range(1, PROCS * CALLS + 1))
    open_seqs: set[int] = set()
    for r in recs:
        if r["type"] == "call_start":
            open_seqs.add(r["seq"])
        elif r["type"] == "call_end":
            open_seqs.remove(r["seq"])  # KeyError: an end without its start before it
    assert not open_seqs
    attempts = sorted(r["attempt"] for r in recs if r["type"] in ("run_start", "attempt_start"))
    assert attempts == list(range(1, PROCS + 1))
    # the writers really interleaved (otherwise this proved nothing about concurrency)
    owners = [r["args"]["p"] for r in starts]
    switches = sum(a != b for a, b in itertools.pairwise(owners))
    print(f"\n{switches} switches between writers in {len(owners)} calls")
    assert switches > 100 * PROCS, f"only {switches} switches between writers"


def test_verify_passes_with_the_key(
    shared_run: SharedRun, cli: Callable[..., Any], chain: Callable[..., Any]
) -> None:
    r = cli("verify", str(shared_run.trace), "--key", KEY)
    assert r.code == 0, r.text
    assert r.out.startswith(f"ok: {PROCS * (2 * CALLS + 2)} records"), r.out
    assert chain(shared_run.trace, KEY.encode()).first_bad_line is None
    # a keyed trace is not silently "verified" without its key, nor with a wrong one
    assert cli("verify", str(shared_run.trace)).code != 0
    wrong = cli("verify", str(shared_run.trace), "--key", "not-the-key")
    assert wrong.code == 1 and f"{shared_run.trace}:1:" in wrong.out


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def test_single_byte_edits_are_detected_at_their_line(
    shared_run: SharedRun, tmp_path: Path, cli: Callable[..., Any]
) -> None:
    data = shared_run.trace.read_bytes()
    rng = random.Random(11)
    first_line_end = data.index(b"\n") + 1
    offsets = [
        rng.randrange(first_line_end, len(data) // 10),
        rng.randrange(len(data) // 3, 2 * len(data) // 3),
        rng.randrange(len(data) - len(data) // 10, len(data) - 1),
    ]
    for offset in offsets:
        copy = tmp_path / "edited.jsonl"
        shutil.copyfile(shared_run.trace, copy)
        old = data[offset]
        new = old ^ (1 << rng.randrange(7)) or 0x41
        if new == 0x0A:  # a new newline splits the line: still detected, at the same line
            new = 0x41
        with open(copy, "r+b") as f:
            f.seek(offset)
            f.write(bytes([new]))
        r = cli("verify", str(copy), "--key", KEY)
        assert r.code == 1, (offset, r.text)
        assert f"{copy}:{_line_of(data, offset)}:" in r.out, (offset, r.text)


def test_a_deleted_tail_is_detected(
    shared_run: SharedRun, tmp_path: Path, cli: Callable[..., Any]
) -> None:
    lines = shared_run.trace.read_bytes().splitlines(keepends=True)
    copy = tmp_path / "cut.jsonl"
    for keep in (len(lines) - 1, len(lines) - 5, len(lines) // 2):
        copy.write_bytes(b"".join(lines[:keep]))
        r = cli("verify", str(copy), "--key", KEY)
        assert r.code == 1, (keep, r.text)
        assert "never closed" in r.out, r.text


def test_a_tail_cut_back_to_another_writers_run_end_is_detected(
    shared_run: SharedRun, tmp_path: Path, cli: Callable[..., Any]
) -> None:
    """Several writers each close their attempt: cutting the file right after an earlier
    writer's genuine run_end removes a later writer's last calls and its run_end. The attempt
    that was cut was started in this file and never closed: that must not verify as ok."""
    lines = shared_run.trace.read_bytes().splitlines(keepends=True)
    types = [orjson.loads(line)["type"] for line in lines]
    ends = [i for i, t in enumerate(types) if t == "run_end"]
    assert len(ends) == PROCS
    cut = next(i for i in reversed(ends) if i < len(lines) - 1)
    copy = tmp_path / "cut.jsonl"
    copy.write_bytes(b"".join(lines[: cut + 1]))
    removed = len(lines) - cut - 1
    r = cli("verify", str(copy), "--key", KEY)
    assert r.code == 1, f"{removed} records cut after a run_end went unnoticed: {r.text}"


def test_a_rewritten_record_with_a_recomputed_chain_is_detected_with_the_key(
    shared_run: SharedRun,
    tmp_path: Path,
    cli: Callable[..., Any],
    attacker: Callable[..., list[bytes]],
) -> None:
    lines = shared_run.trace.read_bytes().splitlines(keepends=True)
    at = len(lines) // 2
    while orjson.loads(lines[at])["type"] != "call_end":
        at += 1
    body = lines[at][: lines[at].rindex(b',"h":"')] + b"}"
    rec = orjson.loads(body)
    rec["output"] = {"p": -1, "j": -1}  # the attacker's version of what happened
    forged = attacker(lines, at, orjson.dumps(rec))
    copy = tmp_path / "forged.jsonl"
    copy.write_bytes(b"".join(forged))
    r = cli("verify", str(copy), "--key", KEY)
    assert r.code == 1, r.text
    assert f"{copy}:{at + 1}:" in r.out, r.text

    # the same attacker also deletes a record and fixes the counts: still caught at that line
    forged = attacker(lines, at, None)
    copy.write_bytes(b"".join(forged))
    r = cli("verify", str(copy), "--key", KEY)
    assert r.code == 1 and f"{copy}:{at + 1}:" in r.out, r.text


def check_all_present(trace: Path, procs: int, calls: int) -> None:
    recs = [orjson.loads(line) for line in trace.read_bytes().splitlines()]
    starts = [r for r in recs if r["type"] == "call_start"]
    got = Counter((r["args"]["p"], r["args"]["j"]) for r in starts)
    assert set(got) == {(p, j) for p in range(procs) for j in range(calls)}
    assert max(got.values()) == 1
    seqs = [r["seq"] for r in starts]
    assert seqs == list(range(1, procs * calls + 1)), "seq forked, skipped or reordered"
    assert sum(r["type"] == "call_end" for r in recs) == procs * calls
    assert sum(r["type"] == "run_end" for r in recs) == procs


def test_processes_join_a_run_without_opting_in(
    tmp_path: Path, cli: Callable[..., Any], chain: Callable[..., Any]
) -> None:
    """No ``shared=True`` anywhere: the first process owns the trace, the others ask to join
    while it is calling; every record lands once and the chain never forks."""
    trace = tmp_path / "run.jsonl"
    procs, calls = 4, 4000
    env = {k: v for k, v in os.environ.items() if k != "CALLTAPE_TRACE_KEY"}
    child = [sys.executable, str(HERE / "_shared_child.py"), str(trace)]

    def start(p: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*child, str(p), str(calls), "join"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )

    owner = start(0)
    assert owner.stdout is not None and owner.stdout.readline() == "ready\n"
    children = [owner] + [start(p) for p in range(1, procs)]  # join while the owner calls
    results = [c.communicate(timeout=300) for c in children]
    assert [c.returncode for c in children] == [0] * procs, [r[1][-2000:] for r in results]
    assert [r[0] for r in results] == [f"done {calls}\n"] + [f"ready\ndone {calls}\n"] * 3
    check_all_present(trace, procs, calls)
    owners = [
        orjson.loads(line)["args"]["p"]
        for line in trace.read_bytes().splitlines()
        if b'"call_start"' in line
    ]
    switches = sum(a != b for a, b in itertools.pairwise(owners))
    assert switches > procs, f"the writers never overlapped ({switches} switches): nothing joined"
    r = cli("verify", str(trace))
    assert r.code == 0, r.text
    assert chain(trace).first_bad_line is None


def test_threads_sharing_one_session_lose_nothing(tmp_path: Path, cli: Callable[..., Any]) -> None:
    trace = tmp_path / "run.jsonl"
    threads_n, calls = 8, 300
    with Session(trace) as session:
        session.register("put", lambda t, j: [t, j], side_effect="write")

        def work(t: int) -> None:
            for j in range(calls):
                assert session.call("put", t=t, j=j).ok

        ths = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
        for th in ths:
            th.start()
        for th in ths:
            th.join()
    recs = [json.loads(line) for line in trace.read_text().splitlines()]
    starts = [(r["args"]["t"], r["args"]["j"]) for r in recs if r["type"] == "call_start"]
    assert sorted(starts) == [(t, j) for t in range(threads_n) for j in range(calls)]
    assert sum(r["type"] == "call_end" for r in recs) == threads_n * calls
    assert cli("verify", str(trace)).code == 0


def test_a_shared_writer_killed_mid_record_does_not_break_the_others(
    tmp_path: Path, cli: Callable[..., Any], chain: Callable[..., Any]
) -> None:
    """Writer B is SIGKILLed halfway through writing a record into the shared trace; writer A
    (this process) keeps appending: the torn bytes are set aside, the chain stays intact."""
    trace = tmp_path / "run.jsonl"
    with Session(trace, shared=True) as a:
        a.register("put", lambda j: j, side_effect="write")
        for j in range(5):
            assert a.call("put", j=j).ok
        cfg = {
            "trace": str(trace),
            "ledger": str(tmp_path / "ledger.txt"),
            "invocations": str(tmp_path / "inv.txt"),
            "out": str(tmp_path / "b.txt"),
            "n": 6,
            "phase": 1,
            "shared": True,
        }
        env = {**os.environ, "CT_KILL_POINT": "trace_write", "CT_KILL_AT": "4"}
        env["CT_KILL_PREFIX"] = "0.5"
        env.pop("CALLTAPE_TRACE_KEY", None)
        p = subprocess.run(
            [sys.executable, str(HERE / "_crash_child.py"), json.dumps(cfg)],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert p.returncode == -9, p.stderr[-2000:]
        assert not trace.read_bytes().endswith(b"\n"), "B should have left a torn record"
        for j in range(5, 10):
            assert a.call("put", j=j).ok
    r = cli("verify", str(trace))
    assert r.code == 0, r.text
    assert chain(trace).first_bad_line is None
    ours = [
        rec["args"]["j"]
        for rec in (json.loads(line) for line in trace.read_text().splitlines())
        if rec["type"] == "call_start" and rec["tool"] == "put"
    ]
    assert ours == list(range(10))


def test_a_writer_closing_while_another_is_alive_keeps_its_lease(tmp_path: Path) -> None:
    """Closing a shared run tries to take the trace exclusively (to close the attempts of dead
    writers); when another writer is alive that fails, and flock(2) then drops the lease held
    before: the writer must take it back, or a third process could own the trace alone while
    the closing writer still appends."""
    import fcntl

    trace = tmp_path / "run.jsonl"
    a = Session(trace, shared=True)
    b = Session(trace, shared=True)
    try:
        writer = a._writer
        assert writer is not None
        assert writer.orphaned_attempts(a.attempt) == []  # b is alive
        probe = os.open(trace, os.O_RDWR)
        try:
            with pytest.raises(OSError):
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
            b.close()
            with pytest.raises(OSError):  # a still holds its shared lease
                fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(probe)
    finally:
        b.close()
        a.close()
