"""The shared contract in ``langchain.agents.create_agent`` (langchain >= 1.0).

Collected only where langchain >= 1.0 is installed (see conftest.py): the floor variant
(langchain-core 0.3 + langgraph 0.6) has no ``create_agent``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain.tools import ToolRuntime
from langchain_support import LangChainDriver, build_agent, run_graph, scripted_model

from calltape import Session
from calltape.policy import presets
from calltape.testing import ConformanceSuite
from calltape.trace import CallEnd, CallStart, read_trace
from calltape_langchain import create_langchain_toolkit


class TestCreateAgentConformance(ConformanceSuite):
    """``langchain.agents.create_agent``: the loop LangChain 1.x recommends."""

    driver = LangChainDriver("create_agent")


def test_tool_runtime_is_injected_but_not_fingerprinted(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def tag(label: str, runtime: ToolRuntime) -> str:
        """Tag the conversation."""
        seen["call_id"] = runtime.tool_call_id
        seen["messages"] = len(runtime.state["messages"])
        return f"tagged {label}"

    session = Session(tmp_path / "t.jsonl")
    session.register(tag, side_effect="write")
    model = scripted_model([("tag", {"label": "urgent"})])
    messages = run_graph(
        build_agent("create_agent", model, create_langchain_toolkit(session)), "sync"
    )
    session.close()
    assert seen == {"call_id": "call_1", "messages": 2}
    assert messages[-1].content == "done: tagged urgent"
    assert "runtime" not in json.dumps(model.tool_schemas)
    ((start, end),) = [
        (s, e)
        for s in read_trace(tmp_path / "t.jsonl").records
        if isinstance(s, CallStart)
        for e in read_trace(tmp_path / "t.jsonl").records
        if isinstance(e, CallEnd) and e.seq == s.seq
    ]
    assert start.args == {"label": "urgent"} and start.call_id == "call_1"
    assert end.output == "tagged urgent"


def test_middleware_wrapping_tool_calls_still_reaches_the_gate(tmp_path: Path) -> None:
    from langchain.agents.middleware import wrap_tool_call

    seen: list[str] = []

    @wrap_tool_call
    def audit(request: Any, handler: Any) -> Any:
        seen.append(request.tool_call["name"])
        return handler(request)

    session = Session(tmp_path / "t.jsonl", policy=presets.read_only())
    ran: list[str] = []

    def send_email(to: str) -> str:
        """Send an email."""
        ran.append(to)
        return "sent"

    session.register(send_email, side_effect="network")
    model = scripted_model([("send_email", {"to": "bob@example.org"})])
    agent = create_agent(model, create_langchain_toolkit(session), middleware=[audit])
    messages = run_graph(agent, "sync")
    session.close()
    assert seen == ["send_email"] and ran == []
    assert "rule read_only.network" in messages[-1].content
