"""A process killed with SIGKILL mid-run resumes without redoing finished work, and without
blindly repeating the call it died in."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from calltape.trace import CallEnd, CallStart, read_trace

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from calltape import Session

    trace, ledger, crash_at, idempotent = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
    with Session(trace) as session:

        @session.tool(side_effect="write", idempotent=idempotent)
        def append(item: str) -> str:
            if item == f"item-{crash_at}":
                # die *during* the call: after the call_start, before the side effect
                os.kill(os.getpid(), signal.SIGKILL)
            with ledger.open("a") as f:
                f.write(item + "\\n")
            return "appended " + item

        for i in range(1, 6):
            r = session.call("append", item=f"item-{i}")
            print(i, r.status, r.replayed, r.decision.rule, flush=True)
    """
)


def run(script: Path, trace: Path, ledger: Path, crash_at: int, idempotent: bool):
    return subprocess.run(
        [sys.executable, str(script), str(trace), str(ledger), str(crash_at), str(int(idempotent))],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    script = tmp_path / "agent.py"
    script.write_text(SCRIPT)
    return script, tmp_path / "run.jsonl", tmp_path / "ledger.txt"


def test_sigkill_during_fourth_call_then_resume(setup: tuple[Path, Path, Path]) -> None:
    script, trace, ledger = setup
    first = run(script, trace, ledger, 4, True)
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert ledger.read_text().splitlines() == ["item-1", "item-2", "item-3"]

    second = run(script, trace, ledger, 0, True)
    assert second.returncode == 0, second.stderr
    lines = [" ".join(x.split()[:3]) for x in second.stdout.splitlines()]
    assert lines == ["1 ok True", "2 ok True", "3 ok True", "4 ok False", "5 ok False"]
    assert ledger.read_text().splitlines() == [f"item-{i}" for i in range(1, 6)]

    recs = read_trace(trace).records
    starts = [r for r in recs if isinstance(r, CallStart)]
    ends = {r.seq: r for r in recs if isinstance(r, CallEnd)}
    unfinished = [s for s in starts if s.seq not in ends]
    assert [s.args["item"] for s in unfinished] == ["item-4"], "the killed call stays visible"
    assert sum(1 for e in ends.values() if e.replayed) == 3


def test_unknown_outcome_blocks_until_resolved(setup: tuple[Path, Path, Path]) -> None:
    script, trace, ledger = setup
    assert run(script, trace, ledger, 4, False).returncode == -signal.SIGKILL

    second = run(script, trace, ledger, 0, False)
    out = second.stdout.splitlines()
    assert out[3] == "4 blocked False unknown_outcome", second.stdout
    assert out[4].startswith("5 ok False")
    assert ledger.read_text().splitlines() == ["item-1", "item-2", "item-3", "item-5"]

    resolve = subprocess.run(
        [sys.executable, "-m", "calltape", "resolve", str(trace), "4", "--redo"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert resolve.returncode == 0, resolve.stderr
    assert "resolved as redo" in resolve.stdout

    third = run(script, trace, ledger, 0, False)
    assert third.stdout.splitlines()[3].startswith("4 ok False")
    assert sorted(ledger.read_text().splitlines()) == [f"item-{i}" for i in range(1, 6)]
    fourth = run(script, trace, ledger, 0, False)
    assert all(" ok True" in line for line in fourth.stdout.splitlines())
    verify = subprocess.run(
        [sys.executable, "-m", "calltape", "verify", str(trace)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert verify.returncode == 0 and verify.stdout.startswith("ok:"), verify.stdout
