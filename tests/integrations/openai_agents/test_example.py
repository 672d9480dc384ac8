"""examples/openai_agents_agent.py runs offline and shows a recorded call, a block and a replay."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.integrations.conftest import ExampleRun


def test_example_runs_offline_and_shows_record_block_replay(
    run_example: Callable[[str], ExampleRun],
) -> None:
    run = run_example("openai_agents_agent.py")
    out = run.stdout
    first, second = out.split("second run", 1)
    assert "really executed: ['get_weather(Oslo)']" in first
    assert "calltape blocked tool 'send_email' (rule read_only.network)" in first
    assert "really executed: nothing" in second, "the resumed run must not execute the tool"
    assert "replayed=1" in second
    assert run.call_ends == [
        ("ok", "read_only.read", False),
        ("blocked", "read_only.network", False),
        ("ok", "read_only.read", True),
        ("blocked", "read_only.network", False),
    ]
