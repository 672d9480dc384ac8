"""calltape + LlamaIndex: record, block and replay the tool calls of a FunctionAgent, offline.

Run: python examples/llamaindex_agent.py   (needs calltape, calltape-llamaindex, llama-index-core)

A scripted model stands in for the LLM: it calls add(2, 3), then write_note("buy milk"), then
answers. The read_only policy lets add run and blocks write_note; the second run resumes from
the trace and replays add without executing it.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    LLMMetadata,
)
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection

from calltape import Session
from calltape.policy import presets
from calltape.trace import CallEnd, CallStart, read_trace
from calltape_llamaindex import create_llamaindex_toolkit

SCRIPT = [("add", {"a": 2, "b": 3}), ("write_note", {"text": "buy milk"})]
executed: list[str] = []


class ScriptedModel(FunctionCallingLLM):
    """Makes the calls in SCRIPT, one per turn, then answers with the last tool result."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(is_function_calling_model=True, is_chat_model=True)

    def _prepare_chat_with_tools(self, tools: Any, chat_history: Any = None, **kw: Any) -> Any:
        return {"messages": list(chat_history or [])}

    def get_tool_calls_from_response(self, response: Any, **kw: Any) -> list[ToolSelection]:
        return list(response.message.additional_kwargs.get("tool_calls", []))

    def chat(self, messages: Any, **kw: Any) -> ChatResponse:
        results = [m.content for m in messages if m.role == "tool"]
        if len(results) < len(SCRIPT):
            name, args = SCRIPT[len(results)]
            call = ToolSelection(
                tool_id=f"call_{len(results) + 1}", tool_name=name, tool_kwargs=args
            )
            message = ChatMessage(
                role="assistant", content="", additional_kwargs={"tool_calls": [call]}
            )
        else:
            message = ChatMessage(role="assistant", content=f"done: {results[-1]}")
        return ChatResponse(message=message, delta=message.content)

    async def achat(self, messages: Any, **kw: Any) -> ChatResponse:
        return self.chat(messages)

    def stream_chat(self, messages: Any, **kw: Any) -> Any:
        yield self.chat(messages)

    async def astream_chat(self, messages: Any, **kw: Any) -> Any:  # type: ignore[override]
        response = self.chat(messages)

        async def gen() -> Any:
            yield response

        return gen()

    def complete(self, prompt: str, formatted: bool = False, **kw: Any) -> CompletionResponse:
        raise NotImplementedError

    acomplete = stream_complete = astream_complete = complete  # type: ignore[assignment]


def add(a: int, b: int) -> int:
    """Add two integers."""
    executed.append("add")
    return a + b


def write_note(text: str) -> str:
    """Save a note."""
    executed.append("write_note")
    return f"saved: {text}"


async def run_once(trace: Path) -> None:
    with Session(trace, policy=presets.read_only()) as session:
        session.register(add, side_effect="read")
        session.register(write_note, side_effect="write")
        agent = FunctionAgent(tools=create_llamaindex_toolkit(session), llm=ScriptedModel())
        executed.clear()
        answer = await agent.run(user_msg="Add 2 and 3, then note it down.")
        summary = session.summary()
    print(f"  final answer : {answer}")
    print(f"  executed     : {executed or 'nothing'}")
    print(
        f"  summary      : {summary.ok} ok, {summary.blocked} blocked, {summary.replayed} replayed"
    )


def main() -> None:
    trace = Path(tempfile.mkdtemp()) / "llamaindex-demo.jsonl"
    print("first run (records add, blocks write_note):")
    asyncio.run(run_once(trace))
    print("second run (resume: add is replayed from the trace, not executed):")
    asyncio.run(run_once(trace))
    print(f"trace {trace}:")
    records = read_trace(trace).records
    starts = {r.seq: r for r in records if isinstance(r, CallStart)}
    for end in (r for r in records if isinstance(r, CallEnd)):
        start = starts[end.seq]
        how = "replayed" if end.replayed else end.status
        rule = f" by rule {end.decision.rule}" if end.status == "blocked" else ""
        output = f": {end.output!r}" if how == "ok" else ""
        print(f"  #{end.seq} {start.tool}({start.args}) -> {how}{rule}{output}")


if __name__ == "__main__":
    main()
