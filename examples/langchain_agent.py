"""calltape with a LangChain agent, offline.

    pip install calltape-langchain langchain     # langchain >= 1.0 for create_agent
    python examples/langchain_agent.py

A scripted chat model (no API key, no network) plays an assistant that looks up the weather
and then tries to email it. The tools go through calltape:

1. ``get_weather`` (declared a read) runs and is recorded in the trace;
2. ``send_email`` (a network side effect) is blocked by the read-only policy: it never runs,
   the block is recorded, and the model is told which rule said no and why;
3. a second run of the same trace (``replay="resume"``) reaches the same answer, with the
   weather lookup answered from the trace instead of running again.

The agent is ``langchain.agents.create_agent`` (langchain >= 1.0), or LangGraph's
``create_react_agent`` where only langchain-core and langgraph are installed. The trace is
written to ``$CALLTAPE_DEMO_DIR`` if set, else to a fresh temporary directory.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("LANGSMITH_TRACING", "false")  # nothing leaves the machine

from langchain_core.messages import BaseMessage, HumanMessage, ToolMessage

from calltape import Session
from calltape.policy import presets
from calltape_langchain import create_langchain_toolkit
from calltape_langchain.testing import ScriptedChatModel, call_tool

executed: list[str] = []  # what really ran, to show what replay saves


def get_weather(city: str) -> str:
    """Current weather for a city."""
    executed.append(f"get_weather({city!r})")
    return f"18°C and sunny in {city}"


def send_email(to: str, body: str) -> str:
    """Send an email."""
    executed.append(f"send_email({to!r})")
    return "sent"


def final_answer(messages: list[BaseMessage]) -> str:
    """The scripted model's last turn: report what the two tool calls returned."""
    weather, email = (m for m in messages if isinstance(m, ToolMessage))
    outcome = "I emailed it" if email.status == "success" else "the email tool was blocked"
    return f"{weather.content}; {outcome}."


def build_agent(model: ScriptedChatModel, tools: list[Any]) -> Any:
    try:
        from langchain.agents import create_agent
    except ImportError:  # langchain-core + langgraph only
        from langgraph.prebuilt import create_react_agent

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return create_react_agent(model, tools)
    return create_agent(model, tools, system_prompt="You are a helpful assistant.")


def run(trace: Path, title: str) -> None:
    print(f"\n== {title}")
    with Session(trace, policy=presets.read_only()) as session:
        session.register(get_weather, side_effect="read")
        session.register(send_email, side_effect="network")
        model = ScriptedChatModel(
            responses=[
                call_tool("get_weather", {"city": "Paris"}),
                call_tool("send_email", {"to": "boss@example.com", "body": "sunny"}),
                final_answer,
            ]
        )
        agent = build_agent(model, create_langchain_toolkit(session))
        state = agent.invoke({"messages": [HumanMessage("Weather in Paris? Email it to my boss.")]})
        summary = session.summary()

    for message in state["messages"]:
        if isinstance(message, ToolMessage):
            print(f"  tool {message.name:<12} [{message.status}] {message.content}")
    print(f"  agent answered:   {state['messages'][-1].content}")
    print(f"  really executed:  {', '.join(executed) or 'nothing'}")
    print(
        f"  recorded:         {summary.calls} calls, {summary.ok} ok, {summary.blocked} blocked "
        f"{dict(summary.blocked_by_rule)}, {summary.replayed} replayed from the trace"
    )
    executed.clear()


def main() -> None:
    folder = Path(os.environ.get("CALLTAPE_DEMO_DIR") or tempfile.mkdtemp(prefix="calltape-"))
    folder.mkdir(parents=True, exist_ok=True)
    trace = folder / "langchain_agent.jsonl"
    trace.unlink(missing_ok=True)  # start a fresh run on every invocation of the demo

    run(trace, "run 1: get_weather runs and is recorded; send_email is blocked (read_only)")
    run(trace, "run 2, same trace (replay='resume'): get_weather is answered from the trace")
    print(f"\ntrace: {trace}\nsee it: calltape show {trace}")


if __name__ == "__main__":
    main()
