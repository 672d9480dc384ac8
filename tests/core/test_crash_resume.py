"""Acceptance: a process killed with SIGKILL mid-run resumes without redoing finished work."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from calltape.trace import CallEnd, CallStart, read_trace

SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from calltape import Session

    trace, ledger, crash_at = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
    with Session(trace) as session:

        @session.tool(side_effect="write")
        def append(item: str) -> str:
            if item == f"item-{crash_at}":
                # die *during* the call: after the call_start, before the side effect
                os.kill(os.getpid(), signal.SIGKILL)
            with ledger.open("a") as f:
                f.write(item + "\\n")
            return "appended " + item

        for i in range(1, 6):
            r = session.call("append", item=f"item-{i}")
            print(i, r.status, r.replayed, flush=True)
    """
)


def test_sigkill_during_fourth_call_then_resume(tmp_path: Path) -> None:
    script = tmp_path / "agent.py"
    script.write_text(SCRIPT)
    trace, ledger = tmp_path / "run.jsonl", tmp_path / "ledger.txt"

    first = subprocess.run(
        [sys.executable, str(script), str(trace), str(ledger), "4"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert first.returncode == -signal.SIGKILL, first.stderr
    assert ledger.read_text().splitlines() == ["item-1", "item-2", "item-3"]

    second = subprocess.run(
        [sys.executable, str(script), str(trace), str(ledger), "0"],
        capture_output=True,
        text=True,
        check=True,
    )
    lines = second.stdout.split("\n")
    assert lines[:5] == ["1 ok True", "2 ok True", "3 ok True", "4 ok False", "5 ok False"]
    assert ledger.read_text().splitlines() == [f"item-{i}" for i in range(1, 6)]

    recs = read_trace(trace).records
    starts = [r for r in recs if isinstance(r, CallStart)]
    ends = {r.seq: r for r in recs if isinstance(r, CallEnd)}
    unfinished = [s for s in starts if s.seq not in ends]
    assert [s.args["item"] for s in unfinished] == ["item-4"], "the killed call stays visible"
    assert sum(1 for e in ends.values() if e.replayed) == 3
