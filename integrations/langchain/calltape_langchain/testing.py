"""A scripted chat model for offline demos and tests of LangChain / LangGraph agents.

LangChain's own fake chat models raise on ``bind_tools``, so agent loops cannot use them.
:class:`ScriptedChatModel` answers each model turn with the next scripted response and
accepts ``bind_tools`` (recording the schemas the model would have been shown)::

    from calltape_langchain.testing import ScriptedChatModel, call_tool

    model = ScriptedChatModel(responses=[
        call_tool("add", {"a": 2, "b": 3}),             # turn 1: ask for a tool call (id "call_1")
        lambda messages: f"The sum is {messages[-1].content}.",   # turn 2: final answer
    ])
    agent = create_agent(model, tools)

A response is an ``AIMessage``, a string (a final answer), or a callable that receives the
conversation so far and returns either. Tool calls without an id get ``call_1``, ``call_2``,
... in the order the model emits them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

__all__ = ["Response", "ScriptExhausted", "ScriptedChatModel", "call_tool", "last_tool_text"]

Response = AIMessage | str | Callable[[list[BaseMessage]], AIMessage | str]
"""One scripted model turn."""


class ScriptExhausted(AssertionError):
    """The agent asked the model for more turns than the script has."""


def call_tool(name: str, args: dict[str, Any] | None = None, *, id: str | None = None) -> AIMessage:
    """A model turn that asks for one tool call.

    Args:
        name: The tool's name.
        args: The arguments, as the model would send them.
        id: The tool-call id; by default the model numbers its calls ``call_1``, ``call_2``...

    Returns:
        An ``AIMessage`` with one tool call.
    """
    call = {"name": name, "args": dict(args or {}), "id": id, "type": "tool_call"}
    return AIMessage(content="", tool_calls=[call])


def last_tool_text(messages: Sequence[BaseMessage]) -> str:
    """The text of the last ``ToolMessage`` in a conversation ("" when there is none)."""
    for message in reversed(messages):
        if isinstance(message, ToolMessage):
            content = message.content
            return content if isinstance(content, str) else str(content)
    return ""


class ScriptedChatModel(BaseChatModel):
    """A chat model that plays back a script, one response per model turn.

    Attributes:
        responses: The script (see the module docstring).
        tool_schemas: The tools bound with ``bind_tools``, as OpenAI tool schemas: exactly
            what a real provider would have been sent.
        seen: The conversation the model received on each turn.
    """

    responses: list[Any]
    _turn: int = PrivateAttr(default=0)
    _calls: int = PrivateAttr(default=0)
    _lock: Any = PrivateAttr(default_factory=threading.Lock)
    _tool_schemas: list[dict[str, Any]] = PrivateAttr(default_factory=list)
    _seen: list[list[BaseMessage]] = PrivateAttr(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "calltape-scripted"

    @property
    def tool_schemas(self) -> list[dict[str, Any]]:
        return list(self._tool_schemas)

    @property
    def seen(self) -> list[list[BaseMessage]]:
        return list(self._seen)

    @property
    def turns_left(self) -> int:
        """Responses not played yet."""
        return len(self.responses) - self._turn

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        """Record the schemas of ``tools`` and return the model itself."""
        self._tool_schemas = [convert_to_openai_tool(t) for t in tools]
        return self

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        with self._lock:
            if self._turn >= len(self.responses):
                raise ScriptExhausted(
                    f"ScriptedChatModel: the agent asked for turn {self._turn + 1} but the script "
                    f"has {len(self.responses)} responses; last message: {messages[-1]!r}"
                )
            response = self.responses[self._turn]
            self._turn += 1
            self._seen.append(list(messages))
            if callable(response):
                response = response(list(messages))
            message = AIMessage(content=response) if isinstance(response, str) else response
            if not isinstance(message, AIMessage):
                raise TypeError(
                    f"a scripted response must be an AIMessage, a str or a callable returning "
                    f"one, got {type(message).__name__}"
                )
            if message.tool_calls and any(c.get("id") is None for c in message.tool_calls):
                calls = []
                for call in message.tool_calls:
                    if call.get("id") is None:
                        self._calls += 1
                        call = {**call, "id": f"call_{self._calls}"}
                    calls.append(call)
                message = message.model_copy(update={"tool_calls": calls})
            elif message.tool_calls:
                self._calls += len(message.tool_calls)
        return ChatResult(generations=[ChatGeneration(message=message)])
