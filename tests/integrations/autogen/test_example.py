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
    run.check_output(
        "second run",
        first=[
            "tools executed: ['get_weather']",
            "calltape blocked tool 'send_email' (rule read_only.write)",
            "final answer: 'Oslo is sunny; I was not allowed to send the email.'",
        ],
        second=[
            "tools executed: []",
            "get_weather: replayed",
        ],
    )
    run.check_record_block_replay("read_only.write")
