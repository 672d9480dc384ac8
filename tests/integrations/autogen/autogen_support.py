"""The offline AutoGen loop the tests drive: a real ``AssistantAgent`` and AutoGen's own
``ReplayChatCompletionClient`` as the scripted model (no mocks of the framework).

Imported by the test modules (conftest.py puts this folder on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.base import TaskResult
from autogen_agentchat.messages import TextMessage, ToolCallExecutionEvent
from autogen_core import FunctionCall
from autogen_core.models import (
    CreateResult,
    FunctionExecutionResult,
    FunctionExecutionResultMessage,
    ModelInfo,
    RequestUsage,
)
from autogen_core.tools import BaseTool, FunctionTool
from autogen_ext.models.replay import ReplayChatCompletionClient

import calltape_autogen

_AGENT_PARAMS = inspect.signature(AssistantAgent.__init__).parameters
#: AssistantAgent runs several model turns with tools in one ``run`` (0.6.x+).
HAS_TOOL_ITERATIONS = "max_tool_iterations" in _AGENT_PARAMS
#: ``AssistantAgent(workbench=StaticWorkbench(...))`` exists.
HAS_WORKBENCH = "workbench" in _AGENT_PARAMS
#: ``run_json`` receives the model's tool-call id (0.6.x+).
HAS_CALL_ID = "call_id" in inspect.signature(BaseTool.run_json).parameters
#: ``FunctionExecutionResult.is_error`` exists (not in 0.4.2, where errors are "Error: ..." text).
HAS_IS_ERROR = "is_error" in FunctionExecutionResult.model_fields
try:
    from autogen_core.tools import BaseStreamTool, StreamTool
except ImportError:  # < 0.6: no streaming tools
    BaseStreamTool = StreamTool = None  # type: ignore[assignment,misc]
HAS_STREAM_TOOLS = StreamTool is not None

DONE = "<<final answer: done: last tool result>>"
USAGE = RequestUsage(prompt_tokens=0, completion_tokens=0)


@dataclass
class Call:
    """One scripted tool call (the conformance kit's ``ScriptedCall`` has the same shape)."""

    tool: str
    args: dict[str, Any]


def tool_turn(calls: Sequence[Any], first_id: int = 1) -> CreateResult:
    """A model turn asking for ``calls`` (ids ``call_<n>``), as a real model client returns it."""
    content = [
        FunctionCall(id=f"call_{first_id + i}", name=c.tool, arguments=json.dumps(c.args))
        for i, c in enumerate(calls)
    ]
    return CreateResult(content=content, finish_reason="function_calls", usage=USAGE, cached=False)


class ScriptedClient(ReplayChatCompletionClient):
    """AutoGen's replay client, declared able to call functions.

    A ``DONE`` turn answers ``"done: <text of the last tool result the model saw>"``; every
    turn records the tool schemas the model was offered in ``seen_schemas``.
    """

    def __init__(self, turns: Sequence[str | CreateResult]) -> None:
        super().__init__(list(turns))
        self.seen_schemas: list[list[Any]] = []

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(vision=False, function_calling=True, json_output=False, family="unknown")

    def _prepare(self, messages: Sequence[Any], tools: Sequence[Any]) -> None:
        self.seen_schemas.append([t.schema if isinstance(t, BaseTool) else t for t in tools])
        index = self._current_index
        if index < len(self.chat_completions) and self.chat_completions[index] == DONE:
            last = ""
            for message in messages:
                if isinstance(message, FunctionExecutionResultMessage) and message.content:
                    last = message.content[-1].content
            self.chat_completions[index] = f"done: {last}"

    async def create(self, messages: Sequence[Any], **kwargs: Any) -> CreateResult:
        self._prepare(messages, kwargs.get("tools", []))
        return await super().create(messages, **kwargs)

    async def create_stream(self, messages: Sequence[Any], **kwargs: Any) -> Any:
        self._prepare(messages, kwargs.get("tools", []))
        async for chunk in super().create_stream(messages, **kwargs):
            yield chunk


@dataclass
class LoopResult:
    """What one scripted agent loop produced."""

    final_answer: str
    results: list[FunctionExecutionResult]
    messages: list[Any]
    client: ScriptedClient
    tool_results: list[str] = field(default_factory=list)


def make_agent(tools: list[Any], client: ScriptedClient, mode: str, n_calls: int) -> AssistantAgent:
    """``AssistantAgent(tools=...)``, or ``AssistantAgent(workbench=StaticWorkbench(...))``."""
    kwargs: dict[str, Any] = {}
    if mode == "workbench":
        from autogen_core.tools import StaticWorkbench

        kwargs["workbench"] = StaticWorkbench(tools)
    else:
        kwargs["tools"] = tools
    if HAS_TOOL_ITERATIONS:
        kwargs["max_tool_iterations"] = n_calls + 1
    return AssistantAgent("assistant", client, **kwargs)


async def _run_once(agent: AssistantAgent, task: str | None, stream: bool) -> TaskResult:
    if not stream:
        return await agent.run(task=task)
    result = None
    async for item in agent.run_stream(task=task):
        if isinstance(item, TaskResult):
            result = item
    assert result is not None, "run_stream ended without a TaskResult"
    return result


async def arun_loop(tools: list[Any], script: Sequence[Any], mode: str = "async") -> LoopResult:
    """Drive the agent: one tool call per model turn, then ``done: <last result>``.

    From 0.6 one ``agent.run`` (or ``run_stream``) does it all (``max_tool_iterations``); before,
    AssistantAgent makes one tool round per run, so the loop is one run per model turn on the
    same agent (its model context carries over).
    """
    client = ScriptedClient([tool_turn([c], i + 1) for i, c in enumerate(script)] + [DONE])
    agent = make_agent(tools, client, mode, len(script))
    runs = 1 if HAS_TOOL_ITERATIONS else len(script) + 1
    stream = mode == "stream"
    results = [await _run_once(agent, "go" if i == 0 else None, stream) for i in range(runs)]
    return collect([m for r in results for m in r.messages], client)


def collect(messages: list[Any], client: ScriptedClient) -> LoopResult:
    """Pick the tool results and the final answer out of a run's messages."""
    execs = [r for m in messages if isinstance(m, ToolCallExecutionEvent) for r in m.content]
    texts = [m.content for m in messages if isinstance(m, TextMessage) and m.source == "assistant"]
    return LoopResult(
        final_answer=texts[-1] if texts else "",
        results=execs,
        messages=messages,
        client=client,
        tool_results=[r.content for r in execs],
    )


def run_loop(tools: list[Any], script: Sequence[Any], mode: str = "async") -> LoopResult:
    """Sync wrapper of :func:`arun_loop`."""
    return asyncio.run(arun_loop(tools, script, mode))


def native_tool(fn: Callable[..., Any]) -> FunctionTool:
    """The tool ``AssistantAgent(tools=[fn])`` builds from a plain function."""
    return FunctionTool(fn, description=fn.__doc__ or "")


MODES: tuple[str, ...] = ("async", "stream") + (("workbench",) if HAS_WORKBENCH else ())


class AutogenDriver:
    """The conformance kit's driver for AutoGen."""

    name = "autogen"
    modes = MODES
    records_call_id = HAS_CALL_ID

    def toolkit(self, session: Any, tools: list[Any] | None = None) -> list[Any]:
        return calltape_autogen.create_autogen_toolkit(session, tools)

    def native_tool(self, fn: Callable[..., Any]) -> Any:
        return native_tool(fn)

    def schema(self, tool: Any) -> Any:
        return tool.schema

    def copies(self, tool: Any) -> list[Any]:
        return [copy.copy(tool), copy.deepcopy(tool)]

    def run_agent(self, tools: list[Any], script: list[Any], *, mode: str) -> Any:
        from calltape.testing import AgentRun

        loop = run_loop(tools, script, mode)
        return AgentRun(final_answer=loop.final_answer, tool_results=loop.tool_results)
