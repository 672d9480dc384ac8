"""``calltape demo``: the whole lifecycle in one offline run, no framework needed.

1. A read-only agent reads a file; its attempt to write is blocked by ``presets.read_only()``.
2. A payout agent makes 5 payments (each appends a line to a ledger file); its process is
   killed with SIGKILL in the middle of the 4th payment.
3. The same agent is run again on the same trace: payments 1-3 are replayed from the trace
   without touching the ledger, 4 and 5 run once each.
4. The trace is shown with ``calltape show``.

The "agent" is a scripted plan (a list of tool calls): the point is what happens after the plan.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import TextIO

from calltape.context import current_call
from calltape.policy import presets
from calltape.session import Session

__all__ = ["payout_agent", "run_demo"]

PAYMENTS = [("alice", 120), ("bob", 75), ("carol", 310), ("dave", 42), ("erin", 99)]


def payout_agent(trace: Path, ledger: Path, crash_at: int | None, out: TextIO) -> Session:
    """Run the payout plan on ``trace``; kill this very process during payment ``crash_at``."""
    session = Session(trace)

    # idempotent=True: safe to run again after a crash, because the payment API (here, the
    # ledger) deduplicates on calltape's idempotency key. A write tool without it would be
    # blocked as "unknown_outcome" on resume until a human runs `calltape resolve`.
    @session.tool(side_effect="write", idempotent=True)
    def pay(to: str, amount: int) -> str:
        """Pay ``amount`` euros to ``to`` (appends to the ledger, once per idempotency key)."""
        call = current_call()
        assert call is not None
        key = call.idempotency_key
        lines = ledger.read_text().splitlines() if ledger.exists() else []
        if any(line.endswith(key) for line in lines):
            return f"paid {amount} EUR to {to} (already in the ledger)"
        n = len(lines) + 1
        if crash_at is not None and n == crash_at:
            out.write(f"    paying {to} {amount} EUR ... process killed (SIGKILL)\n")
            out.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        with ledger.open("a") as f:
            f.write(f"{to},{amount},{key}\n")
        return f"paid {amount} EUR to {to} (ledger line {n})"

    with session:
        for to, amount in PAYMENTS:
            r = session.call("pay", to=to, amount=amount)
            tag = "replayed from trace, not executed" if r.replayed else "executed"
            out.write(f"    seq {r.seq}: pay({to}, {amount}) -> {r.output!r}  [{tag}]\n")
        s = session.summary()
        out.write(
            f"    summary: {s.calls} calls, {s.ok} ok, {s.replayed} replayed "
            f"({s.time_saved_s * 1e3:.2f} ms of tool time saved)\n"
        )
    return session


def run_demo(directory: Path, out: TextIO) -> int:
    """Run the demo in ``directory`` (recreated). Returns the exit code."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("readonly.jsonl", "payout.jsonl", "ledger.csv", "notes.txt"):
        (directory / name).unlink(missing_ok=True)
    (directory / "notes.txt").write_text("Q3 payouts: alice, bob, carol, dave, erin\n")

    out.write("== 1. record and block: a read-only agent ==\n")
    trace1 = directory / "readonly.jsonl"
    with Session(trace1, policy=presets.read_only()) as session:

        @session.tool(side_effect="read")
        def read_file(path: str) -> str:
            """Read a text file."""
            return Path(path).read_text()

        @session.tool(side_effect="write")
        def write_file(path: str, text: str) -> str:
            """Write a text file."""
            Path(path).write_text(text)
            return "written"

        r = session.call("read_file", path=str(directory / "notes.txt"))
        out.write(f"    read_file -> {r.status}: {r.output.strip()!r}\n")
        r = session.call("write_file", path=str(directory / "notes.txt"), text="overwritten!")
        out.write(f"    write_file -> {r.status}: {r.block_message}\n")
        out.write(f"    notes.txt still reads: {(directory / 'notes.txt').read_text().strip()!r}\n")

    out.write("\n== 2. a crash: the payout agent is killed during payment 4 ==\n")
    trace2, ledger = directory / "payout.jsonl", directory / "ledger.csv"
    out.flush()
    child = subprocess.run(
        [sys.executable, "-m", "calltape.demo", str(trace2), str(ledger), "4"],
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    out.write(child.stdout)
    killed = child.returncode == -signal.SIGKILL
    out.write(
        f"    process exit: {'SIGKILL' if killed else child.returncode}; "
        f"ledger has {_lines(ledger)} lines\n"
    )

    out.write("\n== 3. resume: rerun the same agent on the same trace ==\n")
    payout_agent(trace2, ledger, None, out)
    out.write(f"    ledger has {_lines(ledger)} lines (5 payments, none twice)\n")

    out.write(f"\n== 4. the trace: calltape show {trace2} ==\n")
    out.flush()
    from calltape.cli import main as cli_main

    rc = cli_main(["show", str(trace2), "--summary"])
    out.write(
        f"\nTry: calltape show {trace1}   calltape replay {trace2}   calltape list {directory}\n"
    )
    ok = killed and _lines(ledger) == len(PAYMENTS) and rc == 0
    return 0 if ok else 1


def _lines(path: Path) -> int:
    return sum(1 for _ in path.open()) if path.exists() else 0


if __name__ == "__main__":  # the child process of step 2
    payout_agent(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), sys.stdout)
