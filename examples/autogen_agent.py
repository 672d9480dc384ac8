"""calltape + AutoGen, offline: a recorded call, a blocked call, and a resume that replays.

Needs only calltape, calltape-autogen and AutoGen (``autogen-agentchat`` plus ``autogen-ext`` for
its offline ``ReplayChatCompletionClient``). No API key, no network::

    python examples/autogen_agent.py
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
from pathlib import Path

from autogen_agentchat.agents import AssistantAgent
from autogen_agentchat.messages import ToolCallExecutionEvent
from autogen_core import FunctionCall
from autogen_core.models import CreateResult, ModelInfo, RequestUsage
from autogen_ext.models.replay import ReplayChatCompletionClient

from calltape import Session
from calltape.policy import presets
from calltape.trace import read_trace
from calltape_autogen import create_autogen_toolkit

executed: list[str] = []
# The replay client logs token-count notes as warnings; keep the output to what calltape did.
logging.getLogger("autogen_core.events").setLevel(logging.ERROR)


class OfflineModel(ReplayChatCompletionClient):
    """AutoGen's own scripted model client, declared able to call functions."""

    @property
    def model_info(self) -> ModelInfo:
        return ModelInfo(vision=False, function_calling=True, json_output=False, family="unknown")


def scripted_model() -> OfflineModel:
    """One turn asking for two tool calls, then a final answer."""
    calls = [
        FunctionCall(id="call_1", name="get_weather", arguments=json.dumps({"city": "Oslo"})),
        FunctionCall(id="call_2", name="send_email", arguments=json.dumps({"to": "boss"})),
    ]
    usage = RequestUsage(prompt_tokens=0, completion_tokens=0)
    turn = CreateResult(content=calls, finish_reason="function_calls", usage=usage, cached=False)
    return OfflineModel([turn, "Oslo is sunny; I was not allowed to send the email."])


def make_session(trace: Path) -> Session:
    session = Session(trace, policy=presets.read_only(), replay="resume")

    @session.tool(side_effect="read")
    def get_weather(city: str) -> str:
        """Today's weather in a city."""
        executed.append("get_weather")
        return f"sunny in {city}"

    @session.tool(side_effect="write")
    def send_email(to: str) -> str:
        """Send an email."""
        executed.append("send_email")
        return f"sent to {to}"

    return session


async def run_once(trace: Path) -> None:
    with make_session(trace) as session:
        agent = AssistantAgent(
            "assistant",
            scripted_model(),
            tools=create_autogen_toolkit(session),  # the only calltape line
            reflect_on_tool_use=True,
        )
        result = await agent.run(task="Weather in Oslo, then email my boss.")
        for message in result.messages:
            if isinstance(message, ToolCallExecutionEvent):
                for call in message.content:
                    print(f"  model saw for {call.call_id}: {call.content!r}")
        print(f"  final answer: {result.messages[-1].content!r}")
    records = read_trace(trace).records
    attempt = max(r.attempt for r in records if r.type == "call_start")
    this_run = {r.seq: r.tool for r in records if r.type == "call_start" and r.attempt == attempt}
    for end in sorted((r for r in records if r.type == "call_end"), key=lambda r: r.seq):
        if end.seq in this_run:
            how = "replayed" if end.replayed else end.status
            print(f"  trace #{end.seq} {this_run[end.seq]}: {how} (rule {end.decision.rule})")


async def main() -> None:
    trace = Path(tempfile.mkdtemp()) / "autogen-run.jsonl"
    print("first run: get_weather is recorded, send_email is blocked by read_only")
    await run_once(trace)
    print(f"  tools executed: {executed}")
    executed.clear()
    print("second run on the same trace: get_weather replays from the trace")
    await run_once(trace)
    print(f"  tools executed: {executed}  (nothing ran again)")
    print(f"trace: {trace}")
    print(f"see it: calltape show {trace}")


if __name__ == "__main__":
    asyncio.run(main())
