"""examples/autogen_agent.py runs offline and shows a recorded call, a block and a replay."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.integrations.conftest import ExampleRun


def test_example_runs_offline_and_shows_record_block_replay(
    run_example: Callable[[str], ExampleRun],
) -> None:
    run = run_example("autogen_agent.py")
    out = run.stdout
    first, second = out.split("second run", 1)
    assert "tools executed: ['get_weather']" in first
    assert "calltape blocked tool 'send_email' (rule read_only.write)" in first
    assert "final answer: 'Oslo is sunny; I was not allowed to send the email.'" in first
    assert "tools executed: []" in second, "the resumed run must not execute the tool"
    assert "get_weather: replayed" in second
    ends = run.call_ends
    # AssistantAgent runs the two tool calls of one model turn concurrently: order within a run
    # is not fixed, the runs are.
    assert len(ends) == 4
    assert sorted(ends[:2]) == [
        ("blocked", "read_only.write", False),
        ("ok", "read_only.read", False),
    ]
    assert sorted(ends[2:]) == [
        ("blocked", "read_only.write", False),
        ("ok", "read_only.read", True),
    ]
