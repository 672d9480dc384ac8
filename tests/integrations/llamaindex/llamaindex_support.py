"""Offline scripted model and real-loop driver for the LlamaIndex integration tests.

``ScriptedLLM`` is a small ``FunctionCallingLLM`` subclass (``MockFunctionCallingLLM`` exists only
from llama-index-core 0.14.12). It is stateless: each turn it counts the tool results already in
the conversation and issues the next scripted call, or the final answer
``"done: <last tool result>"``. In ReAct mode it speaks the text protocol
("Thought/Action/Action Input", then "Answer") and counts "Observation:" messages.
"""

from __future__ import annotations

import asyncio
import copy
import importlib.metadata
import json
import re
from collections.abc import AsyncGenerator, Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

from llama_index.core.agent.workflow import FunctionAgent, ReActAgent, ToolCallResult
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    LLMMetadata,
    MessageRole,
)
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.tools import BaseTool, FunctionTool

from calltape import Session
from calltape.testing import AgentRun, ScriptedCall
from calltape_llamaindex import create_llamaindex_toolkit

MODES = ("sync", "async", "react")

LI_VERSION = tuple(
    int(part) for part in re.findall(r"\d+", importlib.metadata.version("llama-index-core"))[:3]
)
# Before 0.14.25, call_tool (llm.predict_and_call's executor) calls a single-argument tool
# positionally and, when that raises, calls it again with keyword arguments: a failing
# single-argument tool really runs twice on the sync path, and calltape records both runs.
SYNC_RETRIES_FAILED_SINGLE_ARG_TOOL = LI_VERSION < (0, 14, 25)


class ScriptedLLM(FunctionCallingLLM):
    """A scripted model: the calls in ``script`` (one per turn), then ``done: <last result>``."""

    script: list[dict[str, Any]]
    react: bool = False
    _seen_tools: list[list[dict[str, Any]]] = PrivateAttr(default_factory=list)
    _seen_messages: list[list[ChatMessage]] = PrivateAttr(default_factory=list)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(
            is_function_calling_model=not self.react, is_chat_model=True, model_name="scripted"
        )

    @property
    def seen_tools(self) -> list[list[dict[str, Any]]]:
        """The tool schemas (``to_openai_tool()``) the model was given, per turn."""
        return self._seen_tools

    @property
    def seen_messages(self) -> list[list[ChatMessage]]:
        """The messages the model was given, per turn."""
        return self._seen_messages

    def _prepare_chat_with_tools(
        self,
        tools: Sequence[Any],
        user_msg: str | ChatMessage | None = None,
        chat_history: list[ChatMessage] | None = None,
        verbose: bool = False,
        allow_parallel_tool_calls: bool = False,
        tool_required: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any]:
        messages = list(chat_history or [])
        if isinstance(user_msg, str):
            messages.append(ChatMessage(role=MessageRole.USER, content=user_msg))
        elif user_msg is not None:
            messages.append(user_msg)
        self._seen_tools.append([tool.metadata.to_openai_tool() for tool in tools])
        return {"messages": messages}

    def get_tool_calls_from_response(
        self, response: ChatResponse, error_on_no_tool_call: bool = True, **kwargs: Any
    ) -> list[ToolSelection]:
        calls = list(response.message.additional_kwargs.get("tool_calls", []))
        if not calls and error_on_no_tool_call:
            raise ValueError("the scripted model made no tool call")
        return calls

    def _next(self, messages: Sequence[ChatMessage]) -> ChatMessage:
        self._seen_messages.append(list(messages))
        if self.react:
            results = [
                (m.content or "").removeprefix("Observation: ")
                for m in messages
                if m.role == MessageRole.USER and (m.content or "").startswith("Observation:")
            ]
        else:
            results = [m.content or "" for m in messages if m.role == MessageRole.TOOL]
        turn = len(results)
        if turn < len(self.script):
            call = self.script[turn]
            if self.react:
                text = (
                    "Thought: I need a tool.\n"
                    f"Action: {call['tool']}\n"
                    f"Action Input: {json.dumps(call['args'])}"
                )
                return ChatMessage(role=MessageRole.ASSISTANT, content=text)
            selection = ToolSelection(
                tool_id=f"call_{turn + 1}", tool_name=call["tool"], tool_kwargs=call["args"]
            )
            return ChatMessage(
                role=MessageRole.ASSISTANT,
                content="",
                additional_kwargs={"tool_calls": [selection]},
            )
        answer = f"done: {results[-1] if results else ''}"
        if self.react:
            answer = f"Thought: I can answer without using any more tools.\nAnswer: {answer}"
        return ChatMessage(role=MessageRole.ASSISTANT, content=answer)

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return ChatResponse(message=self._next(messages))

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self.chat(messages)

    def stream_chat(
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> Generator[ChatResponse, None, None]:
        message = self._next(messages)
        yield ChatResponse(message=message, delta=message.content or "")

    async def astream_chat(  # type: ignore[override]
        self, messages: Sequence[ChatMessage], **kwargs: Any
    ) -> AsyncGenerator[ChatResponse, None]:
        message = self._next(messages)

        async def gen() -> AsyncGenerator[ChatResponse, None]:
            yield ChatResponse(message=message, delta=message.content or "")

        return gen()

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self._next([ChatMessage(content=prompt)]).content or "")

    async def acomplete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> CompletionResponse:
        return self.complete(prompt)

    def stream_complete(
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> Generator[CompletionResponse, None, None]:
        yield self.complete(prompt)

    async def astream_complete(  # type: ignore[override]
        self, prompt: str, formatted: bool = False, **kwargs: Any
    ) -> AsyncGenerator[CompletionResponse, None]:
        response = self.complete(prompt)

        async def gen() -> AsyncGenerator[CompletionResponse, None]:
            yield response

        return gen()


@dataclass
class Run:
    """What one agent run produced (the fields of the conformance kit's ``AgentRun``)."""

    final_answer: str
    tool_results: list[str]
    tool_errors: list[bool] = field(default_factory=list)
    llm: ScriptedLLM | None = None


def run_loop(tools: list[Any], script: list[dict[str, Any]], mode: str) -> Run:
    """Run a real LlamaIndex loop offline with the scripted model.

    ``sync``: ``llm.predict_and_call`` turn by turn (``call_tool`` -> ``tool(...)`` -> ``call``).
    ``async``: ``FunctionAgent`` (workflow, ``await tool.acall(**kwargs)``).
    ``react``: ``ReActAgent`` (workflow, text protocol, ``acall``).
    """
    if mode == "sync":
        return _run_predict_and_call(tools, script)
    if mode == "async":
        llm = ScriptedLLM(script=script)
        agent: Any = FunctionAgent(name="agent", description="Test agent.", tools=tools, llm=llm)
    elif mode == "react":
        llm = ScriptedLLM(script=script, react=True)
        agent = ReActAgent(name="agent", description="Test agent.", tools=tools, llm=llm)
    else:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    return asyncio.run(_run_workflow(agent, llm))


async def _run_workflow(agent: Any, llm: ScriptedLLM) -> Run:
    handler = agent.run(user_msg="go")
    results: list[str] = []
    errors: list[bool] = []
    async for event in handler.stream_events():
        if isinstance(event, ToolCallResult):
            results.append(event.tool_output.content)
            errors.append(event.tool_output.is_error)
    output = await handler
    return Run(str(output.response.content), results, errors, llm)


def _run_predict_and_call(tools: list[Any], script: list[dict[str, Any]]) -> Run:
    llm = ScriptedLLM(script=script)
    history: list[ChatMessage] = [ChatMessage(role=MessageRole.USER, content="go")]
    results: list[str] = []
    errors: list[bool] = []
    for _ in range(len(script) + 1):
        response = llm.predict_and_call(tools, chat_history=history, error_on_no_tool_call=False)
        if not response.sources:
            return Run(response.response, results, errors, llm)
        for n, output in enumerate(response.sources, start=len(results) + 1):
            results.append(output.content)
            errors.append(output.is_error)
            history.append(
                ChatMessage(
                    role=MessageRole.TOOL,
                    content=output.content,
                    additional_kwargs={"tool_call_id": f"call_{n}"},
                )
            )
    raise AssertionError("the scripted model did not finish")


class LlamaIndexDriver:
    """The conformance kit's driver for LlamaIndex."""

    name = "llamaindex"
    modes: tuple[str, ...] = MODES
    records_call_id = False  # workflow agents pass only the arguments to the tool, never the id

    def error_attempts(self, mode: str) -> int:
        """How often the loop runs a single-argument tool that raises (see above)."""
        return 2 if mode == "sync" and SYNC_RETRIES_FAILED_SINGLE_ARG_TOOL else 1

    def toolkit(self, session: Session, tools: list[Any] | None = None) -> list[Any]:
        return create_llamaindex_toolkit(session, tools)

    def native_tool(self, fn: Callable[..., Any]) -> BaseTool:
        return FunctionTool.from_defaults(fn)

    def schema(self, tool: BaseTool) -> Any:
        return tool.metadata.to_openai_tool()

    def copies(self, tool: BaseTool) -> list[Any]:
        return [copy.copy(tool), copy.deepcopy(tool)]

    def run_agent(self, tools: list[Any], script: list[ScriptedCall], *, mode: str) -> AgentRun:
        steps = [{"tool": s.tool, "args": dict(s.args)} for s in script]
        run = run_loop(tools, steps, mode)
        return AgentRun(final_answer=run.final_answer, tool_results=run.tool_results)
