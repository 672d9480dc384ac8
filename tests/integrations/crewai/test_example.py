"""examples/crewai_agent.py runs offline and shows a recorded call, a block and a replay."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.integrations.conftest import ExampleRun


def test_example_runs_offline_and_shows_record_block_replay(
    run_example: Callable[[str], ExampleRun],
) -> None:
    run = run_example("crewai_agent.py")
    out = run.stdout
    assert "executed:       ['get_balance(acme)']" in out
    assert "calltape blocked tool 'send_payment' (rule read_only.write)" in out
    assert "resume executed: [] (replayed 1, blocked 1)" in out
    assert "same answer:    True" in out
    assert run.call_ends == [
        ("ok", "read_only.read", False),
        ("blocked", "read_only.write", False),
        ("ok", "read_only.read", True),
        ("blocked", "read_only.write", False),
    ]
