"""examples/langchain_agent.py runs offline and shows a recorded call, a block and a replay."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.integrations.conftest import ExampleRun


def test_example_runs_offline_and_shows_record_block_replay(
    run_example: Callable[[str], ExampleRun],
) -> None:
    run = run_example("langchain_agent.py")
    run.check_output(
        "== run 2",
        first=[
            "really executed:  get_weather('Paris')",
            "calltape blocked tool 'send_email' (rule read_only.network)",
            "agent answered:   18°C and sunny in Paris; the email tool was blocked.",
        ],
        second=[
            "really executed:  nothing",
            "1 replayed from the trace",
        ],
    )
    run.check_record_block_replay("read_only.network")
