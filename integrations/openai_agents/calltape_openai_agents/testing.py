"""An offline scripted ``agents.Model`` for tests and examples.

``ScriptedModel`` drives the SDK's real ``Runner`` loop (``run``, ``run_sync``,
``run_streamed``) without a network: it asks for the scripted function calls one per turn, in
order, with ids ``call_1``, ``call_2`` ..., then answers with text. It works on every
openai-agents release calltape supports (``agents.testing.ScriptedModel`` exists only from
0.22). Set ``OPENAI_AGENTS_DISABLE_TRACING=1`` so the runner does not try to export traces.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from calltape.errors import MissingFrameworkError

try:
    from agents import Model, ModelResponse, Usage
    from openai.types.responses import (
        Response,
        ResponseCompletedEvent,
        ResponseFunctionToolCall,
        ResponseOutputMessage,
        ResponseOutputText,
    )
except ImportError as exc:  # pragma: no cover - exercised only without the framework
    raise MissingFrameworkError("openai-agents", "calltape-openai-agents") from exc

__all__ = ["ModelTurn", "ScriptedModel"]


@dataclass
class ModelTurn:
    """What the model was given on one turn.

    Attributes:
        tools: The tools the runner offered (the objects the agent holds).
        tool_outputs: The function outputs the model had received so far, as text, in order.
    """

    tools: list[Any]
    tool_outputs: list[str] = field(default_factory=list)


def _default_final(outputs: list[str]) -> str:
    return f"done: {outputs[-1] if outputs else ''}"


class ScriptedModel(Model):
    """A model that calls the scripted tools one per turn, then answers ``final(outputs)``.

    The turn is derived from the conversation itself (the number of function outputs in the
    input), so one instance can serve several runs, each starting from the first call.

    Args:
        calls: ``(tool_name, arguments)`` pairs, one function call per model turn; arguments
            are a mapping (sent as JSON) or a string sent verbatim.
        final: The final answer, or a function of the tool outputs seen (text) returning it.
            The default answers ``"done: <last tool output>"``.
    """

    def __init__(
        self,
        calls: Sequence[tuple[str, Mapping[str, Any] | str]],
        final: str | Callable[[list[str]], str] = _default_final,
    ) -> None:
        self.calls = [
            (name, args if isinstance(args, str) else json.dumps(dict(args)))
            for name, args in calls
        ]
        self.final = final
        self.turns: list[ModelTurn] = []

    @property
    def tool_outputs(self) -> list[str]:
        """The function outputs the model saw on its latest turn, as text."""
        return list(self.turns[-1].tool_outputs) if self.turns else []

    def _next(self, input: Any, tools: list[Any]) -> list[Any]:
        items = input if isinstance(input, list) else []
        outputs = [
            _as_text(item.get("output"))
            for item in items
            if isinstance(item, Mapping) and item.get("type") == "function_call_output"
        ]
        self.turns.append(ModelTurn(tools=list(tools), tool_outputs=outputs))
        done = len(outputs)
        if done < len(self.calls):
            name, args = self.calls[done]
            return [
                ResponseFunctionToolCall(
                    type="function_call",
                    id=f"fc_{done + 1}",
                    call_id=f"call_{done + 1}",
                    name=name,
                    arguments=args,
                    status="completed",
                )
            ]
        text = self.final if isinstance(self.final, str) else self.final(outputs)
        return [
            ResponseOutputMessage(
                id=f"msg_{done + 1}",
                type="message",
                role="assistant",
                status="completed",
                content=[ResponseOutputText(type="output_text", text=text, annotations=[])],
            )
        ]

    async def get_response(
        self,
        system_instructions: str | None,
        input: Any,
        model_settings: Any,
        tools: list[Any],
        *args: Any,
        **kwargs: Any,
    ) -> ModelResponse:
        """One scripted turn (the signature differs between SDK releases, hence ``*args``)."""
        return ModelResponse(output=self._next(input, tools), usage=Usage(), response_id=None)

    async def stream_response(
        self,
        system_instructions: str | None,
        input: Any,
        model_settings: Any,
        tools: list[Any],
        *args: Any,
        **kwargs: Any,
    ) -> AsyncIterator[Any]:
        """One scripted turn as a single ``response.completed`` event."""
        response = Response(
            id="resp_scripted",
            created_at=0,
            model="scripted",
            object="response",
            output=self._next(input, tools),
            parallel_tool_calls=False,
            tool_choice="auto",
            tools=[],
        )
        yield ResponseCompletedEvent(
            type="response.completed", response=response, sequence_number=0
        )


def _as_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    # Structured outputs (lists of content parts in newer SDKs): keep their text parts.
    if isinstance(output, list):
        texts = [p.get("text", "") for p in output if isinstance(p, Mapping)]
        if any(texts):
            return "".join(texts)
    return json.dumps(output, default=str)
