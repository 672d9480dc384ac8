"""calltape + CrewAI, offline: a recorded call, a blocked call, and a resume that replays.

Run: ``python examples/crewai_agent.py`` (needs only calltape, calltape-crewai and crewai).
A scripted model stands in for the LLM, so no API key and no network are needed.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Keep CrewAI offline and quiet (set before crewai is imported). CREWAI_TESTING also stops
# CrewAI's first-run "view your execution traces? [y/N]" prompt.
_HOME = tempfile.mkdtemp(prefix="calltape-crewai-example-")
os.environ.update(
    CREWAI_DISABLE_TELEMETRY="true",
    OTEL_SDK_DISABLED="true",
    CREWAI_TRACING_ENABLED="false",
    CREWAI_TESTING="true",
    CREWAI_STORAGE_DIR=_HOME,
)

from calltape import Session  # noqa: E402
from calltape.policy import presets  # noqa: E402
from calltape.trace import read_trace  # noqa: E402
from calltape_crewai import create_crewai_toolkit  # noqa: E402
from calltape_crewai.testing import run_crew  # noqa: E402

EXECUTED: list[str] = []


def make_session(trace: Path) -> Session:
    session = Session(trace, policy=presets.read_only())

    @session.tool(side_effect="read")
    def get_balance(account: str) -> int:
        """Return the balance of an account, in cents."""
        EXECUTED.append(f"get_balance({account})")
        return 12_500

    @session.tool(side_effect="write")
    def send_payment(to: str, cents: int) -> str:
        """Send a payment."""
        EXECUTED.append(f"send_payment({to}, {cents})")
        return "paid"

    return session


def main() -> None:
    trace = Path(os.environ.get("CALLTAPE_DEMO_DIR", _HOME)) / "crewai-run.jsonl"
    trace.unlink(missing_ok=True)
    script = [
        ("get_balance", {"account": "acme"}),
        ("send_payment", {"to": "bob", "cents": 500}),
    ]

    # 1. Record: a real Crew (one Agent, one Task) whose model calls two tools.
    with make_session(trace) as session:
        run = run_crew(create_crewai_toolkit(session), script, function_calling=True)
    print("executed:      ", EXECUTED)
    print("model saw:     ", run.script.tool_results)
    print("final answer:  ", run.final_answer)

    # 2. Resume (on the ReAct text path this time; both paths share the trace): the recorded
    #    call is replayed without running, the block is decided and recorded again.
    EXECUTED.clear()
    with make_session(trace) as session:
        again = run_crew(create_crewai_toolkit(session), script, function_calling=False)
        summary = session.summary()
    print("resume executed:", EXECUTED, f"(replayed {summary.replayed}, blocked {summary.blocked})")
    print("same answer:   ", again.final_answer == run.final_answer)

    print("trace:", trace)
    for record in read_trace(trace).records:
        if record.type == "call_end":
            rule = f" rule={record.decision.rule}" if record.status == "blocked" else ""
            print(f"  seq {record.seq}: {record.status}{rule} replayed={record.replayed}")


if __name__ == "__main__":
    main()
