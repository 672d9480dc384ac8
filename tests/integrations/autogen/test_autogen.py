"""AutoGen-specific behaviour of calltape_autogen, inside the real AssistantAgent loop."""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from autogen_core import CancellationToken
from autogen_core.tools import BaseTool, FunctionTool
from autogen_support import (
    HAS_CALL_ID,
    HAS_IS_ERROR,
    HAS_STREAM_TOOLS,
    MODES,
    Call,
    native_tool,
    run_loop,
)
from pydantic import BaseModel

from calltape import Session
from calltape.errors import ReplayMiss, ToolBlocked
from calltape.policy import presets
from calltape.trace import read_trace
from calltape_autogen import CalltapeTool, create_autogen_toolkit, wrap_tool

ran: list[str] = []


class Weather(BaseModel):
    city: str
    degrees: int


def add(a: int, b: int = 10) -> int:
    """Add two integers."""
    ran.append("add")
    return a + b


def write_note(text: str) -> str:
    """Write a note to disk."""
    ran.append("write_note")
    return f"wrote {text}"


async def weather(city: str) -> Weather:
    """Today's weather (async, returns a pydantic model)."""
    ran.append("weather")
    return Weather(city=city, degrees=21)


def explode(reason: str) -> str:
    """Always fails."""
    ran.append("explode")
    raise ValueError(f"boom: {reason}")


@pytest.fixture(autouse=True)
def _reset_ran() -> None:
    ran.clear()


def new_session(trace: Path, *, replay: str = "resume") -> Session:
    session = Session(trace, policy=presets.read_only(), replay=replay)
    session.register(add, side_effect="read")
    session.register(weather, side_effect="read")
    session.register(explode, side_effect="read")
    session.register(write_note, side_effect="write")
    return session


def calls(trace: Path) -> list[tuple[Any, Any]]:
    """(call_start, call_end) pairs of the trace, by seq."""
    records = read_trace(trace).records
    ends = {r.seq: r for r in records if r.type == "call_end"}
    return [(r, ends.get(r.seq)) for r in records if r.type == "call_start"]


# ----------------------------------------------------------------------------- the proxy


def test_proxy_is_the_framework_tool(trace: Path) -> None:
    with new_session(trace) as session:
        tools = create_autogen_toolkit(session)
        assert [t.name for t in tools] == ["add", "weather", "explode", "write_note"]
        for tool, fn in zip(tools, [add, weather, explode, write_note], strict=True):
            native = native_tool(fn)
            assert isinstance(tool, BaseTool)
            assert isinstance(tool, FunctionTool)
            assert type(tool) is not FunctionTool  # but it is the proxy
            assert tool.schema == native.schema
            assert tool.description == native.description
            assert tool.return_value_as_string(3) == "3"


@pytest.mark.parametrize("mode", MODES)
def test_model_sees_the_native_schemas(trace: Path, mode: str) -> None:
    with new_session(trace) as session:
        loop = run_loop(create_autogen_toolkit(session), [Call("add", {"a": 1, "b": 2})], mode)
    native = [native_tool(fn).schema for fn in (add, weather, explode, write_note)]
    assert loop.client.seen_schemas[0] == native
    assert loop.final_answer == "done: 3"


@pytest.mark.parametrize("mode", MODES)
def test_allowed_call_recorded_with_call_id(trace: Path, mode: str) -> None:
    with new_session(trace) as session:
        loop = run_loop(create_autogen_toolkit(session), [Call("add", {"a": 2})], mode)
    assert ran == ["add"]
    assert loop.tool_results == ["12"]
    [(start, end)] = calls(trace)
    assert start.tool == "add"
    assert start.args == {"a": 2, "b": 10}  # after AutoGen's validation: the default is filled in
    assert start.framework == "autogen"
    assert start.call_id == ("call_1" if HAS_CALL_ID else None)
    assert end.status == "ok" and end.output == 12


@pytest.mark.parametrize("mode", MODES)
def test_blocked_call_reaches_the_model_as_an_error(trace: Path, mode: str) -> None:
    script = [Call("write_note", {"text": "hi"}), Call("add", {"a": 1, "b": 1})]
    with new_session(trace) as session:
        loop = run_loop(create_autogen_toolkit(session), script, mode)
    assert ran == ["add"]  # the blocked tool never ran; the run went on
    blocked = loop.results[0]
    assert "rule read_only" in blocked.content and "write_note" in blocked.content
    assert "side effect 'write'" in blocked.content
    if HAS_IS_ERROR:
        assert blocked.is_error is True
        assert loop.results[1].is_error is False
    else:
        assert blocked.content.startswith("Error: calltape blocked tool")
    assert loop.final_answer == "done: 2"
    assert [end.status for _, end in calls(trace)] == ["blocked", "ok"]


def test_block_is_an_exception_not_a_base_exception(trace: Path) -> None:
    with new_session(trace) as session:
        [tool] = create_autogen_toolkit(session, [native_tool(write_note)])
        with pytest.raises(ToolBlocked) as info:
            asyncio.run(tool.run_json({"text": "x"}, CancellationToken()))
    assert isinstance(info.value, Exception)
    assert info.value.rule.startswith("read_only")
    assert "side effect 'write'" in str(info.value)
    assert ran == []


@pytest.mark.parametrize("mode", MODES)
def test_tool_error_is_recorded_and_shown(trace: Path, mode: str) -> None:
    with new_session(trace) as session:
        loop = run_loop(create_autogen_toolkit(session), [Call("explode", {"reason": "x"})], mode)
    assert ran == ["explode"]
    assert "boom: x" in loop.results[0].content
    if HAS_IS_ERROR:
        assert loop.results[0].is_error is True
    [(_, end)] = calls(trace)
    assert end.status == "error" and end.error.type == "ValueError"
    assert loop.final_answer.startswith("done: ")


@pytest.mark.parametrize("mode", MODES)
def test_resume_replays_inside_the_agent(trace: Path, mode: str) -> None:
    script = [Call("weather", {"city": "Oslo"}), Call("add", {"a": 1, "b": 1})]
    with new_session(trace) as session:
        first = run_loop(create_autogen_toolkit(session), script, mode)
    assert ran == ["weather", "add"]
    ran.clear()
    with new_session(trace) as session:
        second = run_loop(create_autogen_toolkit(session), script, mode)
    assert ran == []  # nothing executed again
    # The pydantic return value is rebuilt, so the model sees exactly the same text.
    assert second.tool_results == first.tool_results == ['{"city": "Oslo", "degrees": 21}', "2"]
    assert second.final_answer == first.final_answer == "done: 2"
    assert [end.replayed for _, end in calls(trace)] == [False, False, True, True]


def test_strict_replay_in_the_agent(trace: Path) -> None:
    with new_session(trace) as session:
        run_loop(create_autogen_toolkit(session), [Call("add", {"a": 5, "b": 5})])
    ran.clear()
    script = [Call("add", {"a": 5, "b": 5}), Call("add", {"a": 6, "b": 6})]
    with new_session(trace, replay="strict") as session:
        loop = run_loop(create_autogen_toolkit(session), script)
    assert ran == []  # the recorded call replays; the unrecorded one does not run either
    assert loop.tool_results[0] == "10"
    assert "no recorded result for add" in loop.tool_results[1]
    if HAS_IS_ERROR:
        assert loop.results[1].is_error is True
    assert loop.final_answer.startswith("done: ")


def test_strict_replay_miss_raises_replay_miss(trace: Path) -> None:
    with new_session(trace) as session:
        run_loop(create_autogen_toolkit(session), [Call("add", {"a": 5})])
    ran.clear()
    with new_session(trace, replay="strict") as session:
        [tool] = create_autogen_toolkit(session, [native_tool(add)])
        with pytest.raises(ReplayMiss):
            asyncio.run(tool.run_json({"a": 1}, CancellationToken()))
    assert ran == []


def test_arguments_autogen_rejects_are_recorded_as_the_tools_error(trace: Path) -> None:
    with new_session(trace) as session:
        loop = run_loop(create_autogen_toolkit(session), [Call("add", {"a": "not a number"})])
    assert ran == []
    assert "validation error" in loop.tool_results[0].lower()
    [(start, end)] = calls(trace)
    assert start.args == {"a": "not a number"}
    assert end.status == "error" and end.error.type == "ValidationError"


def test_parallel_calls_in_one_turn_are_each_gated(trace: Path) -> None:
    from autogen_support import ScriptedClient, collect, make_agent, tool_turn

    async def main() -> Any:
        client = ScriptedClient(
            [tool_turn([Call("add", {"a": 1, "b": 2}), Call("write_note", {"text": "t"})]), "ok"]
        )
        with new_session(trace) as session:
            agent = make_agent(create_autogen_toolkit(session), client, "async", 1)
            messages = list((await agent.run(task="go")).messages)
            if len(client.chat_completions) > client._current_index:
                messages += (await agent.run()).messages  # 0.4/0.5: the answer is a second run
        return collect(messages, client)

    loop = asyncio.run(main())
    assert ran == ["add"]
    assert loop.tool_results[0] == "3"
    assert "rule read_only" in loop.tool_results[1]
    assert sorted(end.status for _, end in calls(trace)) == ["blocked", "ok"]


# ----------------------------------------------------------------------------- copies, wrapping


def test_copies_stay_gated(trace: Path) -> None:
    with new_session(trace) as session:
        [tool] = create_autogen_toolkit(session, [native_tool(write_note)])
        copies = [copy.copy(tool), copy.deepcopy(tool)]
        for c in copies:
            assert isinstance(c, CalltapeTool) and isinstance(c, FunctionTool)
            assert c.calltape_session is session
        loop = run_loop(copies[:1], [Call("write_note", {"text": "a"})])
        loop2 = run_loop(copies[1:], [Call("write_note", {"text": "b"})])
    assert ran == []
    assert "rule read_only" in loop.tool_results[0] and "rule read_only" in loop2.tool_results[0]


def test_wrapping_twice_gates_once(trace: Path) -> None:
    original = native_tool(add)
    with new_session(trace) as session:
        once = wrap_tool(session, original)
        twice = wrap_tool(session, once)
        assert twice.__wrapped__ is original
        assert twice._calltape_original is original
        run_loop([twice], [Call("add", {"a": 1})])
    assert ran == ["add"]
    assert len(calls(trace)) == 1


def test_is_wrapped_and_unwrap_tool(trace: Path) -> None:
    from calltape_autogen import is_wrapped, unwrap_tool

    original = native_tool(add)
    with new_session(trace) as session:
        gated = wrap_tool(session, original)
        assert is_wrapped(gated) and not is_wrapped(original) and not is_wrapped(add)
        assert unwrap_tool(gated) is original
        assert unwrap_tool(original) is original
        copied = unwrap_tool(copy.copy(gated))  # a copy of the gated tool wraps a copy
        assert not is_wrapped(copied) and type(copied) is type(original)
        assert copied.name == original.name


def test_rewrapping_moves_the_tool_to_the_new_session(tmp_path: Path) -> None:
    with new_session(tmp_path / "a.jsonl") as a, new_session(tmp_path / "b.jsonl") as b:
        moved = wrap_tool(b, wrap_tool(a, native_tool(add)))
        assert moved.calltape_session is b
        run_loop([moved], [Call("add", {"a": 1})])
    assert len(calls(tmp_path / "a.jsonl")) == 0
    assert len(calls(tmp_path / "b.jsonl")) == 1


def test_plain_function_becomes_function_tool(trace: Path) -> None:
    with new_session(trace) as session:
        [tool] = create_autogen_toolkit(session, [add])
    assert isinstance(tool, FunctionTool)
    assert tool.schema == native_tool(add).schema
    assert tool.description == "Add two integers."


def test_pickle_says_what_to_do(trace: Path) -> None:
    with new_session(trace) as session:
        [tool] = create_autogen_toolkit(session, [native_tool(add)])
        with pytest.raises(TypeError, match=r"tool\.__wrapped__"):
            pickle.dumps(tool)


# ----------------------------------------------------------------------------- bad input


def test_non_tool_is_a_type_error_naming_accepted_types(trace: Path) -> None:
    with new_session(trace) as session:
        with pytest.raises(TypeError, match=r"autogen_core\.tools\.BaseTool") as info:
            wrap_tool(session, 42)  # type: ignore[arg-type]
        assert "int" in str(info.value)
        with pytest.raises(TypeError, match="list of"):
            create_autogen_toolkit(session, native_tool(add))  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="BaseTool"):
            create_autogen_toolkit(session, [FunctionTool])  # a class, not a tool
    with pytest.raises(TypeError, match=r"calltape\.Session"):
        create_autogen_toolkit(object())  # type: ignore[arg-type]


def test_public_surface() -> None:
    import calltape_autogen

    assert calltape_autogen.__all__ == [
        "CalltapeStreamTool",
        "CalltapeTool",
        "create_autogen_toolkit",
        "is_wrapped",
        "unwrap_tool",
        "wrap_tool",
    ]


def test_missing_framework_says_which_pip_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['autogen_core'] = None\n"
        "sys.modules['autogen_core.tools'] = None\n"
        "from calltape.errors import MissingFrameworkError\n"
        "try:\n"
        "    import calltape_autogen\n"
        "except MissingFrameworkError as e:\n"
        "    assert isinstance(e, ImportError)\n"
        "    print(e)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "pip install calltape-autogen" in out


# ----------------------------------------------------------------------------- streaming tools

if HAS_STREAM_TOOLS:  # autogen-core >= 0.6; 0.4/0.5 have no StreamTool to gate
    from autogen_agentchat.messages import TextMessage, ToolCallExecutionEvent
    from autogen_support import BaseStreamTool, StreamTool

    class CountArgs(BaseModel):
        n: int

    class Counted(BaseModel):
        total: int

    class Counter(BaseStreamTool[CountArgs, TextMessage, Counted]):  # type: ignore[misc,valid-type]
        """A streaming tool: progress messages, then its return value."""

        def __init__(self) -> None:
            super().__init__(CountArgs, Counted, "count", "Count to n, streaming progress.")

        async def run(self, args: CountArgs, cancellation_token: CancellationToken) -> Counted:
            ran.append("count.run")
            return Counted(total=args.n)

        async def run_stream(self, args: CountArgs, cancellation_token: CancellationToken) -> Any:
            ran.append("count.run_stream")
            for i in range(args.n):
                yield TextMessage(content=f"step {i}", source="count")
            yield Counted(total=args.n)

    def count_session(trace: Path, policy: Any = None) -> Session:
        session = Session(trace, policy=policy or presets.allow_all())
        session.declare("count", side_effect="read")
        return session

    def test_stream_tool_stays_a_stream_tool_and_plain_tools_do_not_become_one(
        trace: Path,
    ) -> None:
        with count_session(trace) as session:
            stream, plain = create_autogen_toolkit(session, [Counter(), native_tool(add)])
        assert isinstance(stream, StreamTool) and isinstance(stream, BaseStreamTool)
        assert not isinstance(plain, StreamTool)
        assert not hasattr(plain, "run_json_stream")
        assert stream.schema == Counter().schema

    def test_stream_tool_streams_through_the_gate(trace: Path) -> None:
        with count_session(trace) as session:
            loop = run_loop(
                create_autogen_toolkit(session, [Counter()]), [Call("count", {"n": 2})], "stream"
            )
        assert ran == ["count.run_stream"]  # the agent used run_json_stream, not run_json
        kinds = [
            m.content if isinstance(m, TextMessage) else type(m).__name__ for m in loop.messages
        ]
        # progress arrives in the agent's stream before the tool's result
        assert kinds.index("step 0") < kinds.index("step 1") < kinds.index("ToolCallExecutionEvent")
        assert loop.tool_results == ['{"total": 2}']
        [(start, end)] = calls(trace)
        assert end.output == {"total": 2} and start.call_id == "call_1"

    def test_blocked_stream_tool_never_streams(trace: Path) -> None:
        with count_session(trace, presets.read_only()) as session:
            session.declare("count", side_effect="write")
            loop = run_loop(
                create_autogen_toolkit(session, [Counter()]), [Call("count", {"n": 2})], "stream"
            )
        assert ran == []
        assert not any(isinstance(m, TextMessage) and m.source == "count" for m in loop.messages)
        assert loop.results[0].is_error is True
        assert "rule read_only" in loop.results[0].content
        assert loop.final_answer.startswith("done: calltape blocked tool 'count'")

    def test_stream_tool_replays_its_return_value(trace: Path) -> None:
        with count_session(trace) as session:
            first = run_loop(
                create_autogen_toolkit(session, [Counter()]), [Call("count", {"n": 3})]
            )
        ran.clear()
        with count_session(trace) as session:
            second = run_loop(
                create_autogen_toolkit(session, [Counter()]), [Call("count", {"n": 3})]
            )
        assert ran == []
        assert second.tool_results == first.tool_results == ['{"total": 3}']
        assert isinstance(second.messages[-2], ToolCallExecutionEvent)

    def test_stream_tool_in_a_static_workbench_is_gated_on_run_json(trace: Path) -> None:
        with count_session(trace, presets.read_only()) as session:
            session.declare("count", side_effect="write")
            loop = run_loop(
                create_autogen_toolkit(session, [Counter()]), [Call("count", {"n": 1})], "workbench"
            )
        assert ran == []
        assert "rule read_only" in loop.tool_results[0]

    from autogen_agentchat.agents import AssistantAgent
    from autogen_agentchat.tools import AgentTool
    from autogen_support import ScriptedClient

    def test_agent_tool_streams_and_replays_its_task_result(trace: Path) -> None:
        def helper_tool() -> Any:
            helper = AssistantAgent("helper", ScriptedClient(["42 notes"]), description="Helps.")
            return AgentTool(helper)

        script = [Call("helper", {"task": "count my notes"})]
        with count_session(trace) as session:
            session.declare("helper", side_effect="read")
            first = run_loop(create_autogen_toolkit(session, [helper_tool()]), script, "stream")
        helper_said = [m for m in first.messages if getattr(m, "source", "") == "helper"]
        assert [m.content for m in helper_said] == ["42 notes"]  # streamed out of the tool
        with count_session(trace) as session:
            session.declare("helper", side_effect="read")
            second = run_loop(create_autogen_toolkit(session, [helper_tool()]), script, "stream")
        assert not any(getattr(m, "source", "") == "helper" for m in second.messages)  # replayed
        # the recorded TaskResult is rebuilt, so the model sees the same text
        assert second.tool_results == first.tool_results == ["helper: 42 notes"]

    def test_workbench_tool_override_records_the_tools_own_name(trace: Path) -> None:
        from autogen_core.tools import StaticWorkbench, ToolOverride
        from autogen_support import collect, tool_turn

        async def main() -> Any:
            client = ScriptedClient([tool_turn([Call("plus", {"a": 1, "b": 2})]), "ok"])
            with new_session(trace) as session:
                workbench = StaticWorkbench(
                    create_autogen_toolkit(session, [native_tool(add)]),
                    tool_overrides={"add": ToolOverride(name="plus")},
                )
                agent = AssistantAgent(
                    "assistant", client, workbench=workbench, max_tool_iterations=2
                )
                return collect(list((await agent.run(task="go")).messages), client)

        loop = asyncio.run(main())
        assert loop.client.seen_schemas[0][0]["name"] == "plus"
        assert loop.tool_results == ["3"] and ran == ["add"]
        [(start, _)] = calls(trace)
        assert start.tool == "add"


# ----------------------------------------------------------------------------- MCP tools

try:  # the latest variant installs autogen-ext[mcp]; the floor (0.4.2) has no MCP adapters
    from autogen_ext.tools.mcp import StdioServerParams, mcp_server_tools
except ImportError:
    mcp_server_tools = None

if mcp_server_tools is not None:
    MCP_SERVER = """
from pathlib import Path
from mcp.server.fastmcp import FastMCP

server = FastMCP("notes")
RAN = Path(__file__).with_suffix(".ran")


@server.tool()
def shout(text: str) -> str:
    \"\"\"Upper-case a text.\"\"\"
    with RAN.open("a") as f:
        f.write("shout\\n")
    return text.upper()


@server.tool()
def delete_notes(folder: str) -> str:
    \"\"\"Delete every note in a folder.\"\"\"
    with RAN.open("a") as f:
        f.write("delete_notes\\n")
    return "deleted"


server.run()
"""

    def test_mcp_tools_are_gated_recorded_and_replayed(tmp_path: Path) -> None:
        script_path = tmp_path / "mcp_server.py"
        script_path.write_text(MCP_SERVER)
        ran_path = script_path.with_suffix(".ran")
        trace = tmp_path / "mcp.jsonl"
        params = StdioServerParams(command=sys.executable, args=[str(script_path)])
        script = [Call("shout", {"text": "hi"}), Call("delete_notes", {"folder": "/"})]

        def run_once() -> Any:
            tools = asyncio.run(mcp_server_tools(params))
            with Session(trace, policy=presets.read_only()) as session:
                session.declare("shout", side_effect="read")
                session.declare("delete_notes", side_effect="write")
                gated = create_autogen_toolkit(session, tools)
                assert [g.schema for g in gated] == [t.schema for t in tools]
                assert all(isinstance(g, type(t)) for g, t in zip(gated, tools, strict=True))
                return run_loop(gated, script)

        first = run_once()
        assert ran_path.read_text() == "shout\n"  # delete_notes was blocked before the server
        assert json.loads(first.tool_results[0])[0]["text"] == "HI"
        assert "rule read_only.write" in first.tool_results[1]
        assert first.results[1].is_error is True

        second = run_once()
        assert ran_path.read_text() == "shout\n"  # replayed: the server was not called again
        # MCP content is rebuilt on replay, so the model sees the same JSON as live
        assert second.tool_results == first.tool_results
        ends = [end for _, end in calls(trace)]
        assert [(e.status, e.replayed) for e in ends] == [
            ("ok", False),
            ("blocked", False),
            ("ok", True),
            ("blocked", False),
        ]
