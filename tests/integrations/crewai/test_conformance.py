"""The shared conformance kit, on both of CrewAI's execution paths."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crewai.tools import tool as crewai_tool
from crewai.utilities.agent_utils import (
    convert_tools_to_openai_schema,
    parse_tools,
    render_text_description_and_args,
)

from calltape import Session
from calltape.testing import AgentRun, ConformanceSuite, ScriptedCall
from calltape_crewai import create_crewai_toolkit
from calltape_crewai.testing import run_crew


class CrewAIDriver:
    """Drives a real ``Crew`` (one Agent, one Task) with a scripted ``BaseLLM``."""

    name = "crewai"
    # sync: Crew.kickoff; async: Crew.kickoff_async; akickoff: CrewAI's native async loop.
    modes = ("sync", "async", "akickoff")
    # CrewAI never hands the model's tool-call id to the tool.
    records_call_id = False

    def __init__(self, *, function_calling: bool) -> None:
        self.function_calling = function_calling

    def toolkit(self, session: Session, tools: list[Any] | None = None) -> list[Any]:
        return create_crewai_toolkit(session, tools)

    def native_tool(self, fn: Callable[..., Any]) -> Any:
        return crewai_tool(fn)

    def schema(self, tool: Any) -> Any:
        # Both things a model can see: the function-calling schema and the ReAct prompt text.
        return {
            "function_calling": convert_tools_to_openai_schema([tool])[0],
            "react": render_text_description_and_args(parse_tools([tool])),
            "args_schema": tool.args_schema.model_json_schema(),
        }

    def copies(self, tool: Any) -> list[Any]:
        # CrewAI itself never copies tools (Agent.copy passes the same objects); users may.
        return [tool.model_copy(), tool.model_copy(update={"description": tool.description})]

    def run_agent(self, tools: list[Any], script: list[ScriptedCall], *, mode: str) -> AgentRun:
        run = run_crew(
            tools,
            [(c.tool, c.args) for c in script],
            function_calling=self.function_calling,
            mode=mode,
        )
        return AgentRun(final_answer=run.final_answer, tool_results=list(run.script.tool_results))


class TestCrewAIFunctionCallingConformance(ConformanceSuite):
    driver = CrewAIDriver(function_calling=True)


class TestCrewAIReActConformance(ConformanceSuite):
    driver = CrewAIDriver(function_calling=False)
