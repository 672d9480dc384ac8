"""The scripted real-loop driver shared by the OpenAI Agents SDK tests."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from agents import Agent, FunctionTool, Runner, function_tool
from agents.models.chatcmpl_converter import Converter

from calltape import Session
from calltape.testing import AgentRun, ScriptedCall
from calltape_openai_agents import create_openai_agents_toolkit
from calltape_openai_agents.testing import ScriptedModel

MODES = ("sync", "async", "stream")
Script = Sequence[tuple[str, Mapping[str, Any] | str]]


def run(
    tools: list[Any], script: Script, mode: str = "sync", **agent_kw: Any
) -> tuple[Any, ScriptedModel]:
    """Run a real ``Agent`` over ``tools`` with a scripted model.

    Returns:
        The run's ``final_output`` and the model (which saw the tools and the tool outputs).
    """
    model = ScriptedModel(script)
    agent = Agent(
        name="assistant", instructions="Use the tools.", model=model, tools=tools, **agent_kw
    )
    if mode == "sync":
        # Older SDKs' run_sync use asyncio.get_event_loop(), which fails once an earlier
        # asyncio.run() in the same thread has closed the loop: give it a fresh one.
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return Runner.run_sync(agent, "go").final_output, model
        finally:
            asyncio.set_event_loop(None)
            loop.close()

    async def main() -> Any:
        if mode == "async":
            return (await Runner.run(agent, "go")).final_output
        streamed = Runner.run_streamed(agent, "go")
        async for _ in streamed.stream_events():
            pass
        return streamed.final_output

    return asyncio.run(main()), model


class OpenAIAgentsDriver:
    """Drives ``Runner.run_sync`` / ``Runner.run`` / ``Runner.run_streamed`` for the kit."""

    name = "openai_agents"
    modes = MODES
    records_call_id = True

    def toolkit(self, session: Session, tools: list[Any] | None = None) -> list[Any]:
        return list(create_openai_agents_toolkit(session, tools))

    def native_tool(self, fn: Callable[..., Any]) -> FunctionTool:
        return function_tool(fn)

    def schema(self, tool: FunctionTool) -> Any:
        return Converter.tool_to_openai(tool)

    def copies(self, tool: FunctionTool) -> list[Any]:
        return [copy.copy(tool), copy.deepcopy(tool), dataclasses.replace(tool)]

    def run_agent(self, tools: list[Any], script: list[ScriptedCall], *, mode: str) -> AgentRun:
        final, model = run(tools, [(c.tool, c.args) for c in script], mode)
        return AgentRun(final_answer=str(final), tool_results=model.tool_outputs)
