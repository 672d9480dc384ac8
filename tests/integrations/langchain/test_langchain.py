"""LangChain-specific promises, proven in LangGraph's real loops (ToolNode, create_react_agent).

Deliberately no ``from __future__ import annotations``: the tools below are handed to
LangChain, which builds their schemas from runtime annotations.
"""

import asyncio
import copy
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import BaseTool, StructuredTool, Tool, ToolException, tool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_support import LOOPS, build_agent, has_create_agent, run_graph, scripted_model
from langgraph.prebuilt import InjectedState
from pydantic import BaseModel, Field

from calltape import Session
from calltape.errors import IntegrationError, ReplayMiss
from calltape.policy import presets
from calltape.trace import CallEnd, CallStart, read_trace
from calltape_langchain import (
    CalltapeTool,
    create_langchain_toolkit,
    is_wrapped,
    unwrap_tool,
    wrap_tool,
)
from calltape_langchain.testing import ScriptedChatModel, ScriptExhausted, call_tool

MODES = ("sync", "async")
AVAILABLE_LOOPS = [loop for loop in LOOPS if loop != "create_agent" or has_create_agent()]


# --------------------------------------------------------------------------- helpers


def calls(path: Path, name: str | None = None) -> list[tuple[CallStart, CallEnd]]:
    records = read_trace(path).records
    starts = {r.seq: r for r in records if isinstance(r, CallStart)}
    pairs = [(starts[r.seq], r) for r in records if isinstance(r, CallEnd)]
    return [p for p in pairs if name is None or p[0].tool == name]


def tool_messages(messages: list[Any]) -> list[ToolMessage]:
    return [m for m in messages if isinstance(m, ToolMessage)]


def run_loop(
    tools: list[BaseTool], script: list[Any], *, loop: str = "tool_node", mode: str = "sync"
) -> list[Any]:
    model = ScriptedChatModel(responses=[*script, "finished"])
    messages = run_graph(build_agent(loop, model, tools), mode)
    assert messages[-1].content == "finished"
    return messages


class SearchArgs(BaseModel):
    query: str = Field(description="What to look for")
    limit: int = Field(default=3, description="How many hits")


class SearchTool(BaseTool):
    """A third-party tool: its own class, a pydantic args_schema, sync and async bodies."""

    name: str = "search"
    description: str = "Search the catalogue."
    args_schema: type[BaseModel] = SearchArgs
    runs: Counter[str] = Field(default_factory=Counter)

    def _run(self, query: str, limit: int = 3) -> str:
        self.runs["sync"] += 1
        return f"{limit} hits for {query}"

    async def _arun(self, query: str, limit: int = 3) -> str:
        self.runs["async"] += 1
        return f"{limit} hits for {query}"


class LegacyTool(BaseTool):
    """A BaseTool subclass without args_schema: LangChain derives the schema from ``_run``."""

    name: str = "legacy"
    description: str = "Repeat a word."
    runs: Counter[str] = Field(default_factory=Counter)

    def _run(self, word: str, times: int = 2) -> str:
        self.runs["sync"] += 1
        return " ".join([word] * times)


JSON_SCHEMA = {
    "type": "object",
    "properties": {"x": {"type": "integer"}, "y": {"type": "string"}},
    "required": ["x"],
}


def _json_schema_args_supported() -> bool:
    try:
        StructuredTool.from_function(
            lambda **kw: "", name="probe", description="probe", args_schema=JSON_SCHEMA
        )
    except TypeError:
        return False
    return True


# LangChain accepts a JSON-schema dict as args_schema only in later 0.3 releases (0.3.30, the
# floor, rejects it): where LangChain itself rejects it, that kind is not built or collected.
JSON_SCHEMA_ARGS = _json_schema_args_supported()


def make_tools(counter: Counter[str]) -> dict[str, BaseTool]:
    """One tool of every kind users hand to LangChain agents."""

    @tool(parse_docstring=True)
    def lookup(city: str, units: str = "metric") -> str:
        """Look up the weather.

        Args:
            city: The city.
            units: metric or imperial.
        """
        counter["lookup"] += 1
        return f"sunny in {city} ({units})"

    @tool
    async def fetch(url: str) -> str:
        """Fetch a page (async only)."""
        counter["fetch"] += 1
        return f"<html>{url}</html>"

    def shout(text: str) -> str:
        counter["shout"] += 1
        return text.upper()

    @tool(response_format="content_and_artifact")
    def chart(points: int) -> tuple[str, dict[str, Any]]:
        """Draw a chart."""
        counter["chart"] += 1
        return f"chart with {points} points", {"points": list(range(points))}

    def json_body(**kwargs: Any) -> str:
        counter["json_tool"] += 1
        return f"json {sorted(kwargs.items())}"

    tools: dict[str, BaseTool] = {
        "lookup": lookup,
        "fetch": fetch,
        "shout": Tool(name="shout", func=shout, description="Shout the text."),
        "chart": chart,
        "search": SearchTool(),
        "legacy": LegacyTool(),
    }
    if JSON_SCHEMA_ARGS:
        tools["json_tool"] = StructuredTool.from_function(
            func=json_body,
            name="json_tool",
            description="A tool with a JSON-schema args_schema.",
            args_schema=JSON_SCHEMA,
        )
    return tools


ARGS = {
    "lookup": {"city": "Oslo"},
    "fetch": {"url": "https://example.org"},
    "shout": {"__arg1": "hey"},
    "chart": {"points": 3},
    "json_tool": {"x": 1, "y": "z"},
    "search": {"query": "tea", "limit": 2},
    "legacy": {"word": "hi"},
}


def validated(tool: BaseTool, args: dict[str, Any]) -> dict[str, Any]:
    """The arguments as LangChain's own validation hands them to the tool.

    langchain-core >= 1.0 fills in defaults ({"city": "Oslo", "units": "metric"}), 0.3 does
    not; a tool without args_schema gets the model's arguments unvalidated.
    """
    return dict(tool._parse_input(dict(args), None))


KINDS = sorted(make_tools(Counter()))


# --------------------------------------------------------------------------- drop-in


@pytest.mark.parametrize("kind", KINDS)
def test_wrapped_tool_is_a_drop_in(tmp_path: Path, kind: str) -> None:
    original = make_tools(Counter())[kind]
    session = Session(tmp_path / "t.jsonl")
    wrapped = wrap_tool(session, original)
    assert isinstance(wrapped, type(original)) and isinstance(wrapped, CalltapeTool)
    assert type(wrapped).__name__ == type(original).__name__
    assert json.dumps(convert_to_openai_tool(wrapped)) == json.dumps(
        convert_to_openai_tool(original)
    )
    assert (wrapped.name, wrapped.description, wrapped.args) == (
        original.name,
        original.description,
        original.args,
    )
    assert (wrapped.return_direct, wrapped.response_format) == (
        original.return_direct,
        original.response_format,
    )
    assert not is_wrapped(original), "wrapping must not touch the original"
    plain = unwrap_tool(wrapped)
    assert type(plain) is type(original) and not is_wrapped(plain)
    session.close()


def test_toolkit_from_session_matches_the_tool_decorator(tmp_path: Path) -> None:
    session = Session(tmp_path / "t.jsonl")

    def convert(amount: float, currency: str = "EUR") -> str:
        """Convert an amount.

        Uses today's rate.
        """
        return f"{amount} {currency}"

    async def ping(host: str) -> bool:
        """Ping a host."""
        return True

    def area(w: int, h: int) -> int:
        return w * h

    session.register(convert, side_effect="read")
    session.register(ping, side_effect="network")
    session.register(area, name="rectangle_area", description="Area of a rectangle.")
    built = create_langchain_toolkit(session)
    expected = [
        tool(convert),
        tool(ping),
        StructuredTool.from_function(
            area, name="rectangle_area", description="Area of a rectangle."
        ),
    ]
    assert [t.name for t in built] == ["convert", "ping", "rectangle_area"]
    for got, want in zip(built, expected, strict=True):
        assert type(got).__mro__[1] is StructuredTool
        assert json.dumps(convert_to_openai_tool(got)) == json.dumps(convert_to_openai_tool(want))
    assert built[1].coroutine is ping and built[1].func is None
    session.close()


@pytest.mark.parametrize("loop", AVAILABLE_LOOPS)
def test_the_model_is_shown_the_same_tools_inside_the_loop(tmp_path: Path, loop: str) -> None:
    natives = list(make_tools(Counter()).values())
    session = Session(tmp_path / "t.jsonl")
    shown = []
    for tools in (natives, create_langchain_toolkit(session, natives)):
        model = ScriptedChatModel(responses=["no tools needed"])
        run_graph(build_agent(loop, model, tools), "sync")
        shown.append(json.dumps(model.tool_schemas))
    session.close()
    assert shown[0] == shown[1]
    assert len(json.loads(shown[0])) == len(natives)


# --------------------------------------------------------------------------- every kind, gated


# LangChain itself cannot run an async-only tool synchronously, so "fetch" runs async only.
@pytest.mark.parametrize(
    ("kind", "mode"), [(k, m) for k in KINDS for m in MODES if (k, m) != ("fetch", "sync")]
)
def test_every_kind_of_tool_is_recorded_and_gated_in_tool_node(
    tmp_path: Path, kind: str, mode: str
) -> None:
    counter: Counter[str] = Counter()
    original = make_tools(counter)[kind]
    script = [call_tool(kind, ARGS[kind])]

    allowed = Session(tmp_path / "allowed.jsonl")
    messages = run_loop([wrap_tool(allowed, original)], script, mode=mode)
    allowed.close()
    assert sum(counter.values()) + sum(getattr(original, "runs", Counter()).values()) == 1
    ((start, end),) = calls(tmp_path / "allowed.jsonl")
    assert start.args == validated(original, ARGS[kind])
    assert start.call_id == "call_1" and start.framework == "langchain"
    assert end.status == "ok"
    (message,) = tool_messages(messages)
    assert message.status == "success"

    blocked = Session(tmp_path / "blocked.jsonl", policy=presets.read_only())
    messages = run_loop([wrap_tool(blocked, original)], script, mode=mode)
    blocked.close()
    assert sum(counter.values()) + sum(getattr(original, "runs", Counter()).values()) == 1
    (message,) = tool_messages(messages)
    assert message.status == "error" and message.tool_call_id == "call_1"
    assert "rule read_only.unknown" in message.content
    ((_, end),) = calls(tmp_path / "blocked.jsonl")
    assert end.status == "blocked"


def test_async_body_of_a_third_party_tool_runs_once_in_async_loops(tmp_path: Path) -> None:
    search = SearchTool()
    session = Session(tmp_path / "t.jsonl")
    run_loop([wrap_tool(session, search)], [call_tool("search", {"query": "x"})], mode="async")
    session.close()
    assert search.runs == Counter({"async": 1})
    assert len(calls(tmp_path / "t.jsonl")) == 1


# --------------------------------------------------------------------------- arguments and ids


def test_only_validated_schema_arguments_are_fingerprinted(tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    @tool
    def remember(
        note: str,
        priority: int,
        state: Annotated[dict, InjectedState],
    ) -> str:
        """Remember a note."""
        seen["state_keys"] = sorted(state)
        return f"remembered {note} ({priority})"

    session = Session(tmp_path / "t.jsonl")
    script = [call_tool("remember", {"note": "milk", "priority": "2"})]  # "2": pydantic coerces
    messages = run_loop([wrap_tool(session, remember)], script)
    session.close()
    assert seen["state_keys"] == ["messages"], "LangGraph still injects the state"
    ((start, end),) = calls(tmp_path / "t.jsonl")
    assert start.args == {"note": "milk", "priority": 2}
    assert end.output == "remembered milk (2)"
    assert tool_messages(messages)[0].content == "remembered milk (2)"


def test_injected_tool_call_id_reaches_the_tool_and_the_record(tmp_path: Path) -> None:
    from langchain_core.tools.base import InjectedToolCallId

    @tool
    def stamp(text: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Stamp a text with the call id."""
        return f"{text}@{tool_call_id}"

    session = Session(tmp_path / "t.jsonl")
    messages = run_loop([wrap_tool(session, stamp)], [call_tool("stamp", {"text": "a"}, id="X9")])
    session.close()
    assert tool_messages(messages)[0].content == "a@X9"
    ((start, _),) = calls(tmp_path / "t.jsonl")
    assert start.args == {"text": "a"} and start.call_id == "X9"
    assert "tool_call_id" not in json.dumps(convert_to_openai_tool(stamp)["function"]["parameters"])


@pytest.mark.parametrize("mode", MODES)
def test_parallel_tool_calls_are_each_recorded_once_with_their_ids(
    tmp_path: Path, mode: str
) -> None:
    counter: Counter[str] = Counter()
    session = Session(tmp_path / "t.jsonl")
    tools = create_langchain_toolkit(session, list(make_tools(counter).values()))
    batch = AIMessage(
        content="",
        tool_calls=[
            {"name": "lookup", "args": {"city": c}, "id": f"id-{c}", "type": "tool_call"}
            for c in ("Oslo", "Rome", "Lima", "Pune")
        ],
    )
    messages = run_loop(tools, [batch], mode=mode)
    session.close()
    assert counter["lookup"] == 4
    by_id = {m.tool_call_id: m.content for m in tool_messages(messages)}
    assert by_id == {f"id-{c}": f"sunny in {c} (metric)" for c in ("Oslo", "Rome", "Lima", "Pune")}
    recorded = {s.call_id: (s.args["city"], e.output) for s, e in calls(tmp_path / "t.jsonl")}
    assert recorded == {
        f"id-{c}": (c, f"sunny in {c} (metric)") for c in ("Oslo", "Rome", "Lima", "Pune")
    }


# --------------------------------------------------------------------------- blocks


def test_a_block_without_a_tool_call_id_is_a_plain_string_and_never_raises(tmp_path: Path) -> None:
    counter: Counter[str] = Counter()
    tools = make_tools(counter)
    session = Session(tmp_path / "t.jsonl", policy=presets.read_only())
    lookup = wrap_tool(session, tools["lookup"])
    chart = wrap_tool(session, tools["chart"])
    out = lookup.invoke({"city": "Oslo"})
    assert isinstance(out, str) and out.startswith("calltape blocked tool 'lookup'")
    text = asyncio.run(chart.ainvoke({"points": 2}))
    assert isinstance(text, str) and text.startswith(
        "calltape blocked tool 'chart' (rule read_only.unknown): tool 'chart' declares no side effect"
    )
    message = chart.invoke(
        {"name": "chart", "args": {"points": 2}, "id": "c1", "type": "tool_call"}
    )
    assert isinstance(message, ToolMessage) and message.status == "error"
    assert message.artifact is None and message.tool_call_id == "c1"
    session.close()
    assert counter == Counter()
    assert [e.status for _, e in calls(tmp_path / "t.jsonl")] == ["blocked"] * 3


class Events(BaseCallbackHandler):
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_tool_start(self, serialized: Any, input_str: str, **kwargs: Any) -> None:
        self.events.append(("start", serialized["name"]))

    def on_tool_end(self, output: Any, **kwargs: Any) -> None:
        self.events.append(("end", getattr(output, "status", output)))


def test_callbacks_see_blocked_and_replayed_calls(tmp_path: Path) -> None:
    counter: Counter[str] = Counter()
    lookup = make_tools(counter)["lookup"]
    call = {"name": "lookup", "args": {"city": "Oslo"}, "id": "c1", "type": "tool_call"}
    for policy, status in ((presets.read_only(), "error"), (None, "success"), (None, "success")):
        session = Session(tmp_path / "t.jsonl", policy=policy)
        handler = Events()
        wrap_tool(session, lookup).invoke(call, config={"callbacks": [handler]})
        session.close()
        assert handler.events == [("start", "lookup"), ("end", status)]
    assert counter["lookup"] == 1, "blocked once, ran once, replayed once"
    assert [e.replayed for _, e in calls(tmp_path / "t.jsonl")] == [False, False, True]


# --------------------------------------------------------------------------- errors


def test_tool_exception_keeps_handle_tool_error_and_is_recorded_as_error(tmp_path: Path) -> None:
    def flaky(x: int) -> str:
        """Call a flaky backend."""
        raise ToolException(f"backend down for {x}")

    handled = StructuredTool.from_function(flaky, handle_tool_error=True)
    session = Session(tmp_path / "t.jsonl")
    messages = run_loop([wrap_tool(session, handled)], [call_tool("flaky", {"x": 7})])
    session.close()
    (message,) = tool_messages(messages)
    assert (message.status, message.content) == ("error", "backend down for 7")
    ((_, end),) = calls(tmp_path / "t.jsonl")
    assert (end.status, end.error.type, end.error.message) == (
        "error",
        "ToolException",
        "backend down for 7",
    )


def test_the_tools_own_exception_object_is_reraised(tmp_path: Path) -> None:
    boom = ValueError("boom")

    @tool
    def explode(x: int) -> str:
        """Fail."""
        raise boom

    session = Session(tmp_path / "t.jsonl")
    wrapped = wrap_tool(session, explode)
    with pytest.raises(ValueError) as info:
        wrapped.invoke({"name": "explode", "args": {"x": 1}, "id": "c1", "type": "tool_call"})
    assert info.value is boom
    session.close()
    ((_, end),) = calls(tmp_path / "t.jsonl")
    assert end.status == "error" and end.error.type == "ValueError"


def test_tool_node_error_handling_shows_the_model_the_error(tmp_path: Path) -> None:
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode

    @tool
    def explode(x: int) -> str:
        """Fail."""
        raise RuntimeError(f"kaput {x}")

    session = Session(tmp_path / "t.jsonl")
    node = ToolNode([wrap_tool(session, explode)], handle_tool_errors=True)
    graph = StateGraph(MessagesState)
    graph.add_node("tools", node)
    graph.add_edge(START, "tools")
    graph.add_edge("tools", END)
    out = graph.compile().invoke({"messages": [call_tool("explode", {"x": 3}, id="c1")]})
    session.close()
    (message,) = tool_messages(out["messages"])
    assert message.status == "error" and "kaput 3" in message.content
    ((_, end),) = calls(tmp_path / "t.jsonl")
    assert end.status == "error" and end.error.message == "kaput 3"


# --------------------------------------------------------------------------- replay


@pytest.mark.parametrize("mode", MODES)
def test_replay_rebuilds_artifacts_and_messages(tmp_path: Path, mode: str) -> None:
    counter: Counter[str] = Counter()
    tools = make_tools(counter)
    script = [call_tool("chart", {"points": 3}), call_tool("shout", {"__arg1": "hey"})]
    seen = []
    for _ in range(2):
        session = Session(tmp_path / "t.jsonl")
        messages = run_loop(
            create_langchain_toolkit(session, [tools["chart"], tools["shout"]]), script, mode=mode
        )
        session.close()
        seen.append([(m.content, m.artifact, m.status, m.name) for m in tool_messages(messages)])
    assert counter == Counter({"chart": 1, "shout": 1})
    assert seen[0] == seen[1]
    assert seen[1][0][1] == {"points": [0, 1, 2]}


def test_a_tool_returning_its_own_tool_message_replays_as_one(tmp_path: Path) -> None:
    @tool
    def report(topic: str, tool_call_id: Annotated[str, _injected_call_id()]) -> ToolMessage:
        """Report with an artifact."""
        return ToolMessage(f"report on {topic}", artifact={"pages": 2}, tool_call_id=tool_call_id)

    results = []
    for call_id in ("first", "second"):
        session = Session(tmp_path / "t.jsonl")
        messages = run_loop(
            [wrap_tool(session, report)], [call_tool("report", {"topic": "x"}, id=call_id)]
        )
        session.close()
        (message,) = tool_messages(messages)
        results.append((message.content, message.artifact, message.tool_call_id))
    assert results == [
        ("report on x", {"pages": 2}, "first"),
        ("report on x", {"pages": 2}, "second"),
    ]
    assert [e.replayed for _, e in calls(tmp_path / "t.jsonl")] == [False, True]


def _injected_call_id() -> Any:
    from langchain_core.tools.base import InjectedToolCallId

    return InjectedToolCallId


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(text=st.text(max_size=40), n=st.integers(min_value=-(2**40), max_value=2**40))
def test_replay_returns_what_the_live_call_returned(
    tmp_path_factory: Any, text: str, n: int
) -> None:
    trace = tmp_path_factory.mktemp("prop") / "t.jsonl"

    @tool
    def echo(text: str, n: int) -> dict[str, Any]:
        """Echo."""
        return {"text": text, "n": n}

    call = {"name": "echo", "args": {"text": text, "n": n}, "id": "c1", "type": "tool_call"}
    outputs = []
    for _ in range(2):
        session = Session(trace)
        outputs.append(wrap_tool(session, echo).invoke(call))
        session.close()
    live, replayed = outputs
    assert (live.content, live.status) == (replayed.content, replayed.status)
    assert [e.replayed for _, e in calls(trace)] == [False, True]
    assert calls(trace)[0][0].args == {"text": text, "n": n}


# --------------------------------------------------------------------------- copies and wrapping


def test_copies_record_into_the_same_session(tmp_path: Path) -> None:
    counter: Counter[str] = Counter()
    session = Session(tmp_path / "t.jsonl")
    wrapped = wrap_tool(session, make_tools(counter)["lookup"])
    dups = [
        wrapped.model_copy(),
        wrapped.model_copy(deep=True),
        copy.copy(wrapped),
        copy.deepcopy(wrapped),
        copy.deepcopy([wrapped])[0],
    ]
    cities = [f"city{i}" for i in range(len(dups))]
    run_loop(dups, [call_tool("lookup", {"city": c}) for c in cities])
    session.close()
    assert counter["lookup"] == len(dups)
    assert [s.args["city"] for s, _ in calls(tmp_path / "t.jsonl")] == cities


def test_rewrapping_binds_to_the_new_session_only(tmp_path: Path) -> None:
    counter: Counter[str] = Counter()
    first = Session(tmp_path / "first.jsonl")
    second = Session(tmp_path / "second.jsonl")
    twice = wrap_tool(second, wrap_tool(first, make_tools(counter)["lookup"]))
    assert type(twice).__mro__.count(CalltapeTool) == 1
    run_loop([twice], [call_tool("lookup", {"city": "Oslo"})])
    first.close()
    second.close()
    assert counter["lookup"] == 1
    assert calls(tmp_path / "first.jsonl") == []
    assert len(calls(tmp_path / "second.jsonl")) == 1


# --------------------------------------------------------------------------- bad input


def test_non_tools_are_rejected_with_the_accepted_types(tmp_path: Path) -> None:
    session = Session(tmp_path / "t.jsonl")

    def plain(x: int) -> int:
        """Identity."""
        return x

    with pytest.raises(
        TypeError, match=r"accepts a LangChain tool \(langchain_core.tools.BaseTool"
    ):
        wrap_tool(session, plain)  # type: ignore[type-var]
    with pytest.raises(TypeError, match="register it on the session"):
        create_langchain_toolkit(session, [plain])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="pass tools=\\[tool\\]"):
        create_langchain_toolkit(session, tool(plain))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="calltape.Session, not str"):
        wrap_tool("session", tool(plain))  # type: ignore[arg-type]
    session.close()


def test_a_gated_tool_without_a_session_says_how_to_make_one(tmp_path: Path) -> None:
    session = Session(tmp_path / "t.jsonl")
    wrapped = wrap_tool(session, make_tools(Counter())["lookup"])
    session.close()
    orphan = type(wrapped)(
        **{k: getattr(wrapped, k) for k in ("name", "description", "func", "args_schema")}
    )
    with pytest.raises(IntegrationError, match="wrap_tool"):
        orphan.invoke({"city": "Oslo"})


def test_missing_framework_names_the_pip_install() -> None:
    code = (
        "import sys; sys.modules['langchain_core'] = None\n"
        "try:\n"
        "    import calltape_langchain\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    assert out.startswith("MissingFrameworkError ")
    assert "pip install calltape-langchain" in out


def test_scripted_model_reports_an_exhausted_script() -> None:
    model = scripted_model([])
    assert model.invoke("hi").content == "done: "
    with pytest.raises(ScriptExhausted, match="asked for turn 2"):
        model.invoke("again")


def test_pickling_a_gated_tool_says_what_to_do_instead(tmp_path: Path) -> None:
    import pickle

    session = Session(tmp_path / "t.jsonl")
    wrapped = wrap_tool(session, make_tools(Counter())["search"])
    with pytest.raises(TypeError, match=r"pickle calltape_langchain.unwrap_tool\(tool\)"):
        pickle.dumps(wrapped)
    restored = pickle.loads(pickle.dumps(unwrap_tool(wrapped)))
    assert type(restored) is SearchTool and restored.name == "search"
    session.close()


@pytest.mark.parametrize("loop", AVAILABLE_LOOPS)
def test_strict_replay_miss_never_runs_the_tool(tmp_path: Path, loop: str) -> None:
    counter: Counter[str] = Counter()
    lookup = make_tools(counter)["lookup"]
    recorded = Session(tmp_path / "t.jsonl")
    run_graph(
        build_agent(
            loop, scripted_model([("lookup", {"city": "Oslo"})]), [wrap_tool(recorded, lookup)]
        ),
        "sync",
    )
    recorded.close()
    size = (tmp_path / "t.jsonl").stat().st_size

    strict = Session(tmp_path / "t.jsonl", replay="strict")
    agent = build_agent(
        loop, scripted_model([("lookup", {"city": "Rome"})]), [wrap_tool(strict, lookup)]
    )
    try:
        messages = run_graph(agent, "sync")
    except ReplayMiss as exc:  # langgraph >= 1.0: ToolNode re-raises tool errors
        assert "no recorded result for lookup(city='Rome'" in str(exc)
    else:  # older ToolNode handles tool errors: the model is shown the error
        (message,) = tool_messages(messages)
        assert message.status == "error" and "ReplayMiss" in message.content
    strict.close()
    assert counter["lookup"] == 1, "only the recording run executed the tool"
    assert (tmp_path / "t.jsonl").stat().st_size == size


def test_declared_side_effects_decide_third_party_tools(tmp_path: Path) -> None:
    search = SearchTool()
    session = Session(tmp_path / "t.jsonl", policy=presets.read_only())
    session.declare("search", side_effect="read")
    session.declare("legacy", side_effect="write")
    tools = create_langchain_toolkit(session, [search, LegacyTool()])
    script = [call_tool("search", {"query": "tea"}), call_tool("legacy", {"word": "hi"})]
    messages = run_loop(tools, script)
    session.close()
    assert [(m.name, m.status) for m in tool_messages(messages)] == [
        ("search", "success"),
        ("legacy", "error"),
    ]
    assert search.runs == Counter({"sync": 1})
    assert [(s.side_effect, e.status) for s, e in calls(tmp_path / "t.jsonl")] == [
        ("read", "ok"),
        ("write", "blocked"),
    ]
