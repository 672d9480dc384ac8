"""calltape with the OpenAI Agents SDK, offline.

    pip install calltape-openai-agents
    python examples/openai_agents_agent.py

A scripted model (no API key, no network) asks for two tools: ``get_weather`` (a read) runs
and is recorded; ``send_email`` (a network side effect) is blocked by the read-only policy and
the model is told why. A second run of the same trace replays the weather lookup from the
trace instead of running it again.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")  # no trace export to OpenAI

from agents import Agent, Runner

from calltape import Session
from calltape.policy import presets
from calltape_openai_agents import create_openai_agents_toolkit
from calltape_openai_agents.testing import ScriptedModel

executed: list[str] = []


def get_weather(city: str) -> str:
    """Current weather for a city."""
    executed.append(f"get_weather({city})")
    return f"sunny in {city}"


def send_email(to: str, body: str) -> str:
    """Send an email."""
    executed.append(f"send_email({to})")
    return "sent"


def run_once(trace: Path) -> None:
    with Session(trace, policy=presets.read_only()) as session:
        session.register(get_weather, side_effect="read")
        session.register(send_email, side_effect="network")
        model = ScriptedModel(
            [
                ("get_weather", {"city": "Oslo"}),
                ("send_email", {"to": "boss@example.com", "body": "sunny"}),
            ],
            final="; ".join,
        )
        agent = Agent(name="assistant", model=model, tools=create_openai_agents_toolkit(session))
        result = Runner.run_sync(agent, "What's the weather? Email it to my boss.")
        summary = session.summary()
    print(f"  the model saw: {result.final_output}")
    print(f"  really executed: {executed or 'nothing'}")
    print(
        f"  calls={summary.calls} ok={summary.ok} blocked={summary.blocked} "
        f"replayed={summary.replayed} blocked_by_rule={summary.blocked_by_rule}"
    )
    executed.clear()


def main() -> None:
    trace = Path(tempfile.mkdtemp()) / "openai_agents_demo.jsonl"
    print("first run: get_weather runs and is recorded, send_email is blocked")
    run_once(trace)
    print("second run of the same trace (replay='resume'): get_weather comes from the trace")
    run_once(trace)
    print(f"trace: {trace}")


if __name__ == "__main__":
    main()
