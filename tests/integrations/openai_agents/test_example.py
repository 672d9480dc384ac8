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
    run.check_output(
        "second run",
        first=[
            "really executed: ['get_weather(Oslo)']",
            "calltape blocked tool 'send_email' (rule read_only.network)",
        ],
        second=[
            "really executed: nothing",
            "replayed=1",
        ],
    )
    run.check_record_block_replay("read_only.network")
