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
    run.check_output(
        "resume executed:",
        first=[
            "executed:       ['get_balance(acme)']",
            "calltape blocked tool 'send_payment' (rule read_only.write)",
        ],
        second=[" [] (replayed 1, blocked 1)", "same answer:    True"],
    )
    run.check_record_block_replay("read_only.write")
