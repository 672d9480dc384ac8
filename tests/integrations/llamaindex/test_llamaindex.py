"""LlamaIndex-specific behaviour of calltape_llamaindex, driven through the real loops offline."""

from __future__ import annotations

import asyncio
import copy
import importlib
import json
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from llama_index.core.agent.workflow import FunctionAgent
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.span_handlers import SimpleSpanHandler
from llama_index.core.tools import (
    AsyncBaseTool,
    BaseTool,
    FunctionTool,
    ToolMetadata,
    ToolOutput,
)
from llamaindex_support import (
    SYNC_RETRIES_FAILED_SINGLE_ARG_TOOL,
    ScriptedLLM,
    run_loop,
)
from pydantic import BaseModel

from calltape import Session
from calltape.errors import MissingFrameworkError
from calltape.policy import presets
from calltape.testing import TraceView
from calltape_llamaindex import create_llamaindex_toolkit, is_wrapped, unwrap, wrap_tool
from calltape_llamaindex.proxy import tool_arguments

ALL_MODES = ("sync", "async", "react")


# --------------------------------------------------------------------------- helpers


class Calls:
    """Counts real executions of the tools below."""

    def __init__(self) -> None:
        self.log: list[tuple[str, Any]] = []

    def count(self, name: str) -> int:
        return sum(1 for n, _ in self.log if n == name)


def make_functions(calls: Calls) -> dict[str, Any]:
    def add(a: int, b: int) -> int:
        """Add two integers and return the sum."""
        calls.log.append(("add", (a, b)))
        return a + b

    def write_note(text: str) -> str:
        """Save a note to the user's notebook."""
        calls.log.append(("write_note", text))
        return f"saved note: {text}"

    async def fetch(url: str) -> str:
        """Fetch a page (async)."""
        calls.log.append(("fetch", url))
        await asyncio.sleep(0)
        return f"<html>{url}</html>"

    return {"add": add, "write_note": write_note, "fetch": fetch}


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    return tmp_path / "trace.jsonl"


def new_session(trace: Path, calls: Calls, **kwargs: Any) -> Session:
    session = Session(trace, **kwargs)
    fns = make_functions(calls)
    session.register(fns["add"], side_effect="read")
    session.register(fns["write_note"], side_effect="write")
    session.register(fns["fetch"], side_effect="read")
    return session


def schema_dump(tool: BaseTool) -> str:
    return json.dumps(tool.metadata.to_openai_tool())


class SearchInput(BaseModel):
    query: str
    limit: int


class SearchTool(AsyncBaseTool):
    """A third-party tool: its own call/acall, several arguments, no FunctionTool."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    @property
    def metadata(self) -> ToolMetadata:
        return ToolMetadata(name="search", description="Search the web.", fn_schema=SearchInput)

    def call(self, query: str, limit: int) -> ToolOutput:
        self.calls.log.append(("search", (query, limit)))
        hits = [f"{query}-{i}" for i in range(limit)]
        return ToolOutput(
            content=", ".join(hits),
            tool_name="search",
            raw_input={"query": query, "limit": limit},
            raw_output=hits,
        )

    async def acall(self, query: str, limit: int) -> ToolOutput:
        return self.call(query=query, limit=limit)


class EchoTool(BaseTool):
    """A plain BaseTool (not AsyncBaseTool): one positional ``input``."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    @property
    def metadata(self) -> ToolMetadata:
        return ToolMetadata(name="echo", description="Echo the input.")

    def __call__(self, input: Any) -> ToolOutput:
        self.calls.log.append(("echo", input))
        return ToolOutput(
            content=f"echo {input}", tool_name="echo", raw_input={"input": input}, raw_output=input
        )


class FlakyTool(AsyncBaseTool):
    """Reports failure as ``ToolOutput(is_error=True)`` instead of raising."""

    def __init__(self, calls: Calls) -> None:
        self.calls = calls

    @property
    def metadata(self) -> ToolMetadata:
        return ToolMetadata(name="flaky", description="Sometimes fails.")

    def call(self, input: str) -> ToolOutput:
        self.calls.log.append(("flaky", input))
        return ToolOutput(
            content=f"flaky failed on {input}",
            tool_name="flaky",
            raw_input={"input": input},
            raw_output=None,
            is_error=True,
        )

    async def acall(self, input: str) -> ToolOutput:
        return self.call(input)


# --------------------------------------------------------------------------- drop-in


def test_toolkit_builds_exactly_what_from_defaults_builds(trace: Path, calls: Calls) -> None:
    session = new_session(trace, calls)
    session.register("adder", make_functions(calls)["add"], description="Adds numbers.")
    tools = {t.metadata.name: t for t in create_llamaindex_toolkit(session)}
    fns = make_functions(calls)
    expected = {
        "add": FunctionTool.from_defaults(fns["add"]),
        "write_note": FunctionTool.from_defaults(fns["write_note"]),
        "fetch": FunctionTool.from_defaults(fns["fetch"]),
        "adder": FunctionTool.from_defaults(fns["add"], name="adder", description="Adds numbers."),
    }
    assert list(tools) == ["add", "write_note", "fetch", "adder"]
    for name, native in expected.items():
        tool = tools[name]
        assert type(tool) is not FunctionTool and isinstance(tool, FunctionTool)
        assert tool.metadata.description == native.metadata.description
        assert schema_dump(tool) == schema_dump(native)
    assert tools["add"].metadata.description.startswith("add(a: ")
    session.close()


def test_wrapped_tool_is_a_drop_in(trace: Path, calls: Calls) -> None:
    session = new_session(trace, calls)
    native = FunctionTool.from_defaults(make_functions(calls)["add"], return_direct=True)
    tool = wrap_tool(session, native)
    assert isinstance(tool, FunctionTool) and isinstance(tool, AsyncBaseTool)
    assert tool.metadata is native.metadata
    assert tool.fn is native.fn and tool.requires_context is native.requires_context
    assert is_wrapped(tool) and not is_wrapped(native)
    assert unwrap(tool) is native and unwrap(native) is native
    assert not is_wrapped(copy.copy(native)), "wrapping must not touch the original"
    assert type(wrap_tool(session, FunctionTool.from_defaults(lambda x: x, name="f"))) is type(tool)
    session.close()


@pytest.mark.parametrize("mode", ALL_MODES)
def test_model_sees_the_same_tools(trace: Path, calls: Calls, mode: str) -> None:
    session = new_session(trace, calls)
    gated = create_llamaindex_toolkit(session)
    natives = [unwrap(t) for t in gated]
    script = [{"tool": "add", "args": {"a": 1, "b": 2}}]
    seen_gated = run_loop(gated, script, mode).llm
    seen_native = run_loop(natives, script, mode).llm
    assert seen_gated is not None and seen_native is not None
    if mode == "react":  # the tools reach the model inside the ReAct system prompt
        first = [m.content for m in seen_gated.seen_messages[0]]
        assert first == [m.content for m in seen_native.seen_messages[0]]
        assert "Tool Name: add" in str(first[0])
    else:
        assert seen_gated.seen_tools[0] == seen_native.seen_tools[0]
        assert [t["function"]["name"] for t in seen_gated.seen_tools[0]] == [
            "add",
            "write_note",
            "fetch",
        ]
    session.close()


def test_copies_share_the_session_and_pickling_fails_loudly(trace: Path, calls: Calls) -> None:
    session = new_session(trace, calls)
    tool = create_llamaindex_toolkit(session)[0]
    shallow, deep = copy.copy(tool), copy.deepcopy(tool)
    for dup in (shallow, deep):
        assert type(dup) is type(tool) and is_wrapped(dup)
        assert vars(dup)["_calltape_session"] is session, "a copy must record into the same run"
    assert deep.metadata is not tool.metadata, "deepcopy copies the tool itself"
    with pytest.raises((pickle.PicklingError, TypeError, AttributeError)):
        pickle.dumps(tool)
    session.close()


@pytest.fixture
def spans() -> Iterator[SimpleSpanHandler]:
    dispatcher = get_dispatcher()
    handler = SimpleSpanHandler()
    dispatcher.add_span_handler(handler)
    yield handler
    dispatcher.span_handlers.remove(handler)


def test_one_instrumentation_span_per_call(
    trace: Path, calls: Calls, spans: SimpleSpanHandler
) -> None:
    session = new_session(trace, calls)
    tool = create_llamaindex_toolkit(session)[0]
    native = unwrap(tool)

    def call_spans() -> list[str]:
        return [s.id_ for s in spans.completed_spans if ".call-" in s.id_ or ".acall-" in s.id_]

    native.call(a=1, b=1)
    asyncio.run(native.acall(a=1, b=1))
    baseline = len(call_spans())
    assert baseline == 2
    tool.call(a=2, b=2)
    asyncio.run(tool.acall(a=2, b=2))
    assert len(call_spans()) == 2 * baseline, call_spans()
    session.close()


# --------------------------------------------------------------------------- blocks


def test_block_is_an_error_tool_output_never_an_exception(trace: Path, calls: Calls) -> None:
    session = new_session(trace, calls, policy=presets.read_only())
    note = {t.metadata.name: t for t in create_llamaindex_toolkit(session)}["write_note"]
    outputs = [note.call(text="a"), asyncio.run(note.acall(text="b")), note("c")]
    assert calls.count("write_note") == 0
    raw_inputs = [
        {"args": (), "kwargs": {"text": "a"}},
        {"args": (), "kwargs": {"text": "b"}},
        {"args": ("c",), "kwargs": {}},
    ]
    for output, raw_input in zip(outputs, raw_inputs, strict=True):
        assert isinstance(output, ToolOutput)
        assert output.is_error and output.raw_output is None
        assert output.tool_name == "write_note"
        assert output.raw_input == raw_input
        assert output.content == (
            "calltape blocked tool 'write_note' (rule read_only.write): "
            "side effect 'write' is not allowed by read_only"
        )
    ends = [e for _, e in TraceView(trace).calls("write_note")]
    assert [e.status for e in ends] == ["blocked"] * 3
    session.close()


@pytest.mark.parametrize("policy", ["allow_all", "read_only"])
def test_blocked_return_direct_tool_does_not_end_the_run(
    trace: Path, calls: Calls, policy: str
) -> None:
    session = new_session(trace, calls, policy=getattr(presets, policy)())
    native = FunctionTool.from_defaults(make_functions(calls)["write_note"], return_direct=True)
    tool = wrap_tool(session, native)
    script = [{"tool": "write_note", "args": {"text": "x"}}]
    run = run_loop([tool], script, "async")
    if policy == "allow_all":  # return_direct: the tool's output is the answer
        assert run.final_answer == "saved note: x"
    else:  # is_error stops return_direct: the model gets the block and answers
        assert run.final_answer.startswith("done: calltape blocked tool 'write_note'")
        assert calls.count("write_note") == 0
    session.close()


# --------------------------------------------------------------------------- errors


def explode(reason: str) -> str:
    """Always fails."""
    raise ValueError(f"exploded because {reason}")


@pytest.mark.parametrize("mode", ALL_MODES)
def test_tool_exception_keeps_the_frameworks_behaviour(trace: Path, mode: str) -> None:
    native = FunctionTool.from_defaults(explode)
    script = [{"tool": "explode", "args": {"reason": "x"}}]
    expected = run_loop([native], script, mode)
    session = Session(trace)
    run = run_loop([wrap_tool(session, native)], script, mode)
    session.close()
    assert run.tool_results == expected.tool_results
    assert run.final_answer == expected.final_answer
    assert "exploded because x" in run.tool_results[0]
    ends = [e for _, e in TraceView(trace).calls("explode")]
    retried = mode == "sync" and SYNC_RETRIES_FAILED_SINGLE_ARG_TOOL
    assert len(ends) == (2 if retried else 1)
    assert all(e.status == "error" and e.error and e.error.type == "ValueError" for e in ends)


def test_direct_call_reraises_the_tools_own_exception(trace: Path) -> None:
    session = Session(trace)
    tool = wrap_tool(session, FunctionTool.from_defaults(explode))
    with pytest.raises(ValueError, match="exploded because direct"):
        tool.call(reason="direct")
    with pytest.raises(ValueError, match="exploded because async"):
        asyncio.run(tool.acall(reason="async"))
    session.close()


def test_error_tool_output_is_recorded_as_an_error_and_not_replayed(
    trace: Path, calls: Calls
) -> None:
    script = [{"tool": "flaky", "args": {"input": "q"}}]
    for attempt in (1, 2):
        session = Session(trace)
        run = run_loop([wrap_tool(session, FlakyTool(calls))], script, "async")
        session.close()
        assert run.tool_results == ["flaky failed on q"], "the tool's own output reaches the model"
        assert run.tool_errors == [True]
        assert calls.count("flaky") == attempt, "a failure is re-run on resume, never replayed"
    ends = [e for _, e in TraceView(trace).calls("flaky")]
    assert [e.status for e in ends] == ["error", "error"]
    assert ends[0].error is not None and ends[0].error.message == "flaky failed on q"


# --------------------------------------------------------------------------- other tool kinds


@pytest.mark.parametrize("mode", ALL_MODES)
def test_third_party_async_base_tool(trace: Path, calls: Calls, mode: str) -> None:
    script = [{"tool": "search", "args": {"query": "cats", "limit": 2}}]
    session = Session(trace)
    session.declare("search", side_effect="read")
    run = run_loop(create_llamaindex_toolkit(session, [SearchTool(calls)]), script, mode)
    session.close()
    assert run.tool_results == ["cats-0, cats-1"]
    assert calls.count("search") == 1
    ((start, end),) = TraceView(trace).calls("search")
    assert start.args == {"query": "cats", "limit": 2}
    assert end.output == "cats-0, cats-1", "the tool formats its own content: that text is kept"

    resumed = Session(trace, policy=presets.read_only())
    resumed.declare("search", side_effect="read")
    again = run_loop(create_llamaindex_toolkit(resumed, [SearchTool(calls)]), script, mode)
    resumed.close()
    assert calls.count("search") == 1
    assert again.final_answer == run.final_answer


@pytest.mark.parametrize("mode", ALL_MODES)
def test_third_party_tool_blocked_by_declared_side_effect(
    trace: Path, calls: Calls, mode: str
) -> None:
    session = Session(trace, policy=presets.read_only())
    session.declare("search", side_effect="network")
    script = [{"tool": "search", "args": {"query": "cats", "limit": 2}}]
    run = run_loop([wrap_tool(session, SearchTool(calls))], script, mode)
    session.close()
    assert calls.count("search") == 0
    assert "read_only.network" in run.tool_results[0]
    assert run.final_answer.startswith("done: calltape blocked tool 'search'")


@pytest.mark.parametrize("mode", ALL_MODES)
def test_plain_base_tool(trace: Path, calls: Calls, mode: str) -> None:
    session = Session(trace)
    run = run_loop(
        [wrap_tool(session, EchoTool(calls))], [{"tool": "echo", "args": {"input": "hi"}}], mode
    )
    session.close()
    assert run.tool_results == ["echo hi"]
    assert calls.count("echo") == 1
    ((start, end),) = TraceView(trace).calls("echo")
    assert start.args == {"input": "hi"} and end.output == "echo hi"


@pytest.mark.parametrize("mode", ALL_MODES)
def test_async_registered_function(trace: Path, calls: Calls, mode: str) -> None:
    script = [{"tool": "fetch", "args": {"url": "a.example"}}]
    session = new_session(trace, calls)
    run = run_loop(create_llamaindex_toolkit(session), script, mode)
    session.close()
    assert run.tool_results == ["<html>a.example</html>"]
    assert calls.count("fetch") == 1
    resumed = new_session(trace, calls, replay="strict")
    again = run_loop(create_llamaindex_toolkit(resumed), script, mode)
    resumed.close()
    assert calls.count("fetch") == 1 and again.final_answer == run.final_answer


# --------------------------------------------------------------------------- arguments


def test_positional_and_keyword_calls_fingerprint_alike(trace: Path, calls: Calls) -> None:
    session = new_session(trace, calls)
    tools = {t.metadata.name: t for t in create_llamaindex_toolkit(session)}
    tools["write_note"]("x")  # how call_tool calls a one-argument tool before 0.14.25
    tools["write_note"](text="x")
    tools["add"].call(1, b=2)
    session.close()
    starts = [s for s, _ in TraceView(trace).calls()]
    assert [s.args for s in starts] == [{"text": "x"}, {"text": "x"}, {"a": 1, "b": 2}]
    assert starts[0].fp == starts[1].fp


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))


@given(a=json_scalars, b=json_scalars)
def test_tool_arguments_bind_positionals_to_schema_keys(a: Any, b: Any) -> None:
    def pair(a: str, b: str) -> str:
        return f"{a}{b}"

    tool = FunctionTool.from_defaults(pair)
    expected = {"a": a, "b": b}
    assert tool_arguments(tool, (a, b), {}) == expected
    assert tool_arguments(tool, (a,), {"b": b}) == expected
    assert tool_arguments(tool, (), {"b": b, "a": a, "extra": 1}) == expected
    assert list(tool_arguments(tool, (), {"b": b, "a": a})) == ["a", "b"]


def test_strict_replay_miss_reaches_the_model_and_runs_nothing(trace: Path, calls: Calls) -> None:
    recorder = new_session(trace, calls)
    run_loop(
        create_llamaindex_toolkit(recorder), [{"tool": "add", "args": {"a": 1, "b": 1}}], "async"
    )
    recorder.close()
    session = new_session(trace, calls, replay="strict")
    script = [{"tool": "add", "args": {"a": 1, "b": 2}}]
    run = run_loop(create_llamaindex_toolkit(session), script, "async")
    session.close()
    assert calls.count("add") == 1, "only the recording run executed"
    assert "no recorded result for add" in run.tool_results[0]
    assert run.tool_errors == [True]


# --------------------------------------------------------------------------- sessions


def test_wrapping_twice_and_rebinding_to_another_session(tmp_path: Path, calls: Calls) -> None:
    first = new_session(tmp_path / "one.jsonl", calls)
    second = new_session(tmp_path / "two.jsonl", calls)
    native = FunctionTool.from_defaults(make_functions(calls)["add"])
    twice = wrap_tool(first, wrap_tool(first, native))
    assert unwrap(twice) is native
    twice.call(a=1, b=1)
    moved = wrap_tool(second, twice)
    assert unwrap(moved) is native
    moved.call(a=2, b=2)
    first.close()
    second.close()
    assert calls.count("add") == 2
    assert [s.args for s, _ in TraceView(tmp_path / "one.jsonl").calls()] == [{"a": 1, "b": 1}]
    assert [s.args for s, _ in TraceView(tmp_path / "two.jsonl").calls()] == [{"a": 2, "b": 2}]


def test_agent_keeps_the_gated_objects(trace: Path, calls: Calls) -> None:
    session = new_session(trace, calls)
    tools = create_llamaindex_toolkit(session)
    agent = FunctionAgent(name="a", description="A.", tools=tools, llm=ScriptedLLM(script=[]))
    assert all(a is b for a, b in zip(agent.tools or [], tools, strict=True))
    session.close()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("bad", [object(), "add", None, lambda: 1])
def test_non_tools_are_rejected_with_the_accepted_types(trace: Path, bad: Any) -> None:
    session = Session(trace)
    with pytest.raises(TypeError, match="llama_index.core.tools.BaseTool") as info:
        create_llamaindex_toolkit(session, [bad])
    assert type(bad).__qualname__ in str(info.value)
    with pytest.raises(TypeError, match="BaseTool"):
        wrap_tool(session, bad)
    session.close()


def test_single_tool_and_wrong_session_are_rejected(trace: Path, calls: Calls) -> None:
    session = Session(trace)
    tool = FunctionTool.from_defaults(make_functions(calls)["add"])
    with pytest.raises(TypeError, match="must be a list"):
        create_llamaindex_toolkit(session, tool)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"calltape\.Session"):
        wrap_tool(object(), tool)  # type: ignore[arg-type]
    session.close()


def test_missing_framework_names_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name.startswith("calltape_llamaindex"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "llama_index.core.tools", None)
    with pytest.raises(MissingFrameworkError) as info:
        importlib.import_module("calltape_llamaindex")
    assert isinstance(info.value, ImportError)
    assert "pip install calltape-llamaindex" in str(info.value)


def test_agent_workflow_gates_its_agents_tools(trace: Path, calls: Calls) -> None:
    from llama_index.core.agent.workflow import AgentWorkflow

    session = new_session(trace, calls, policy=presets.read_only())
    script = [
        {"tool": "write_note", "args": {"text": "x"}},
        {"tool": "add", "args": {"a": 3, "b": 4}},
    ]
    agent = FunctionAgent(
        name="helper",
        description="Helps.",
        tools=create_llamaindex_toolkit(session),
        llm=ScriptedLLM(script=script),
    )
    workflow = AgentWorkflow(agents=[agent])

    async def go() -> str:
        return str(await workflow.run(user_msg="go"))

    answer = asyncio.run(go())
    session.close()
    assert answer == "done: 7"
    assert calls.count("write_note") == 0 and calls.count("add") == 1
    assert [e.status for _, e in TraceView(trace).calls()] == ["blocked", "ok"]


def test_partial_params_reach_the_tool_but_not_the_record(trace: Path) -> None:
    received: list[tuple[str, str]] = []

    def greet(user: str, greeting: str) -> str:
        """Greet the user."""
        received.append((user, greeting))
        return f"{greeting}, {user}"

    native = FunctionTool.from_defaults(greet, partial_params={"user": "bob"})
    session = Session(trace)
    run = run_loop(
        [wrap_tool(session, native)], [{"tool": "greet", "args": {"greeting": "hi"}}], "sync"
    )
    session.close()
    assert received == [("bob", "hi")] and run.tool_results == ["hi, bob"]
    ((start, _),) = TraceView(trace).calls("greet")
    assert start.args == {"greeting": "hi"}


def test_positional_call_the_function_cannot_take_is_not_recorded(trace: Path) -> None:
    received: list[tuple[str, str]] = []

    def greet(user: str, greeting: str) -> str:
        """Greet the user."""
        received.append((user, greeting))
        return f"{greeting}, {user}"

    native = FunctionTool.from_defaults(greet, partial_params={"user": "bob"})
    session = Session(trace)
    tool = wrap_tool(session, native)
    with pytest.raises(TypeError, match="multiple values"):
        native("hi")  # what llama-index-core does without calltape
    with pytest.raises(TypeError, match="greet\\(\\) multiple values"):
        tool("hi")
    assert tool(greeting="hey").content == "hey, bob"
    session.close()
    assert received == [("bob", "hey")]
    assert [s.args for s, _ in TraceView(trace).calls()] == [{"greeting": "hey"}]


def test_public_surface() -> None:
    import calltape_llamaindex

    assert sorted(calltape_llamaindex.__all__) == [
        "create_llamaindex_toolkit",
        "is_wrapped",
        "unwrap",
        "unwrap_tool",
        "wrap_tool",
    ]
    assert calltape_llamaindex.unwrap_tool is calltape_llamaindex.unwrap
