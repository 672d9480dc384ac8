"""Shared by every integration's tests (imports no framework)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@dataclass
class ExampleRun:
    """What an example printed, and the calls in the trace it names on its ``trace:`` line."""

    stdout: str
    call_ends: list[tuple[str, str, bool]]  # (status, rule, replayed) per call, in trace order

    def check_output(self, second_run: str, first: list[str], second: list[str]) -> None:
        """Each line of ``first`` is printed before the line that starts the second run (which
        contains ``second_run``), each of ``second`` after it."""
        before, marker, after = self.stdout.partition(second_run)
        assert marker, f"no {second_run!r} in the output:\n{self.stdout}"
        for text in first:
            assert text in before, f"first run: {text!r} not in\n{before}"
        for text in second:
            assert text in after, f"second run: {text!r} not in\n{after}"

    def check_record_block_replay(self, blocked_rule: str) -> None:
        """The trace of every example: run 1 records a read and blocks a side effect; run 2
        (resume) replays the read and blocks again. Within a run the order is free (AutoGen
        runs the two calls of one model turn concurrently)."""
        ends = self.call_ends
        assert len(ends) == 4, ends
        blocked = ("blocked", blocked_rule, False)
        assert sorted(ends[:2]) == [blocked, ("ok", "read_only.read", False)]
        assert sorted(ends[2:]) == [blocked, ("ok", "read_only.read", True)]


@pytest.fixture
def run_example(tmp_path: Path) -> Callable[[str], ExampleRun]:
    """Run ``examples/<name>`` as a user would: its own process, home and temp dir, offline.

    Its own process keeps what the example sets in the environment out of the other tests.
    """

    def run(name: str) -> ExampleRun:
        from calltape.trace import read_trace

        env = {**os.environ, "HOME": str(tmp_path), "TMPDIR": str(tmp_path)}
        proc = subprocess.run(
            [sys.executable, str(EXAMPLES / name)],
            check=False,
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr, proc.stderr
        line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("trace:"))
        result = read_trace(line.split(":", 1)[1].strip())
        assert result.torn_line is None
        ends = [
            (rec.status, rec.decision.rule, rec.replayed)
            for rec in result.records
            if rec.type == "call_end"
        ]
        return ExampleRun(proc.stdout, ends)

    return run
