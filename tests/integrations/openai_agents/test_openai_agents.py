"""OpenAI Agents SDK specifics, each proven inside the SDK's real Runner loop (offline)."""

from __future__ import annotations

import copy
import dataclasses
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, FunctionTool, Runner, WebSearchTool, function_tool
from agents.exceptions import UserError
from agents.models.chatcmpl_converter import Converter
from openai_agents_support import MODES, run

from calltape import Session, current_call
from calltape.errors import ReplayMiss
from calltape.policy import presets
from calltape.trace import read_trace
from calltape_openai_agents import (
    create_openai_agents_toolkit,
    is_wrapped,
    unwrap_tool,
    wrap_tool,
)
from calltape_openai_agents.testing import ScriptedModel


def calls(path: Path) -> list[dict[str, Any]]:
    """call_end records joined with their call_start (tool, args, call_id, framework)."""
    starts: dict[int, dict[str, Any]] = {}
    out = []
    for model in read_trace(path).records:
        rec = model.model_dump(mode="json")
        if rec["type"] == "call_start":
            starts[rec["seq"]] = rec
        elif rec["type"] == "call_end":
            out.append({**starts[rec["seq"]], **rec})
    return out


class Counter:
    """Plain tool functions that count how often they really ran."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}

    def hit(self, name: str) -> None:
        self.runs[name] = self.runs.get(name, 0) + 1


def register(session: Session, counter: Counter) -> None:
    @session.tool(side_effect="read")
    def add(a: int, b: int) -> int:
        """Add two integers.

        Args:
            a: The first number.
            b: The second number.
        """
        counter.hit("add")
        return a + b

    @session.tool(side_effect="write")
    async def write_note(text: str) -> str:
        """Write a note to the notebook."""
        counter.hit("write_note")
        return f"wrote {text}"

    @session.tool(side_effect="read")
    def explode(reason: str) -> str:
        """Always fails."""
        counter.hit("explode")
        raise ValueError(f"exploded: {reason}")


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    return tmp_path / "trace.jsonl"


# --------------------------------------------------------------------------- drop-in


def test_built_tools_match_function_tool_exactly(trace: Path) -> None:
    session = Session(trace)
    register(session, Counter())
    built = create_openai_agents_toolkit(session)
    assert [t.name for t in built] == ["add", "write_note", "explode"]
    for tool in built:
        plain = function_tool(session.tools[tool.name].fn)  # type: ignore[arg-type]
        assert isinstance(tool, FunctionTool)
        assert type(tool) is FunctionTool
        assert tool.description == plain.description
        assert tool.params_json_schema == plain.params_json_schema
        assert tool.strict_json_schema == plain.strict_json_schema
        assert Converter.tool_to_openai(tool) == Converter.tool_to_openai(plain)
    # the parsed docstring (Args section) reaches the schema, as with @function_tool
    assert built[0].params_json_schema["properties"]["a"]["description"] == "The first number."
    session.close()


def test_session_name_and_explicit_description_are_used(trace: Path) -> None:
    session = Session(trace)

    def lookup(city: str) -> str:
        """Docstring description."""
        return city

    session.register(lookup, name="find_city", description="Find a city by name.")
    (tool,) = create_openai_agents_toolkit(session)
    plain = function_tool(
        lookup, name_override="find_city", description_override="Find a city by name."
    )
    assert (tool.name, tool.description) == ("find_city", "Find a city by name.")
    assert tool.params_json_schema == plain.params_json_schema
    final, _ = run([tool], [("find_city", {"city": "Oslo"})])
    assert final == "done: Oslo"
    assert [(c["tool"], c["status"]) for c in calls(trace)] == [("find_city", "ok")]
    session.close()


def test_wrapped_tool_keeps_every_field_but_the_invoker(trace: Path) -> None:
    @function_tool(name_override="mul", description_override="Multiply.", strict_mode=False)
    def multiply(x: int, y: int = 2) -> int:
        return x * y

    session = Session(trace)
    gated = wrap_tool(session, multiply)
    assert gated is not multiply and isinstance(gated, FunctionTool)
    for f in dataclasses.fields(FunctionTool):
        if f.name != "on_invoke_tool":
            assert getattr(gated, f.name) == getattr(multiply, f.name), f.name
    assert gated.on_invoke_tool is not multiply.on_invoke_tool
    final, model = run([gated], [("mul", {"x": 3})])
    assert final == "done: 6"
    assert model.turns[0].tools == [gated]  # the model is offered the gated tool itself
    session.close()


@pytest.mark.parametrize(
    "make_copy",
    [
        copy.copy,
        copy.deepcopy,
        dataclasses.replace,
        lambda t: dataclasses.replace(t, description="x"),
    ],
    ids=["copy", "deepcopy", "replace", "replace-description"],
)
def test_copies_stay_gated_in_the_loop(trace: Path, make_copy: Callable[[Any], Any]) -> None:
    counter = Counter()
    session = Session(trace, policy=presets.read_only())
    register(session, counter)
    copies = [make_copy(t) for t in create_openai_agents_toolkit(session)]
    final, model = run(copies, [("add", {"a": 2, "b": 3}), ("write_note", {"text": "hi"})])
    assert counter.runs == {"add": 1}
    assert [c["status"] for c in calls(trace)] == ["ok", "blocked"]
    assert model.tool_outputs[0] == "5"
    assert "rule read_only" in final
    session.close()


def test_wrap_twice_records_once(trace: Path) -> None:
    counter = Counter()
    session = Session(trace)
    register(session, counter)
    once = create_openai_agents_toolkit(session)
    twice = create_openai_agents_toolkit(session, once)
    assert twice[0] is once[0]
    assert wrap_tool(session, wrap_tool(session, once[0])) is once[0]
    run(twice, [("add", {"a": 1, "b": 1})])
    assert counter.runs == {"add": 1}
    assert len(calls(trace)) == 1
    session.close()


def test_a_tool_gated_by_another_session_moves_to_the_new_one(tmp_path: Path) -> None:
    # As in every calltape integration: wrapping never stacks, so a call is recorded once,
    # by the session that wrapped last.
    counter = Counter()
    outer_session, inner_session = Session(tmp_path / "outer.jsonl"), Session(tmp_path / "in.jsonl")
    register(inner_session, counter)
    inner = create_openai_agents_toolkit(inner_session)
    outer = create_openai_agents_toolkit(outer_session, inner)
    assert [unwrap_tool(t) for t in outer] == [unwrap_tool(t) for t in inner]
    run(outer, [("add", {"a": 1, "b": 1})])
    assert counter.runs == {"add": 1}
    assert [c["output"] for c in calls(tmp_path / "outer.jsonl")] == [2]
    assert calls(tmp_path / "in.jsonl") == []
    outer_session.close()
    inner_session.close()


def test_is_wrapped_and_unwrap_tool(trace: Path) -> None:
    session = Session(trace)

    @function_tool
    def echo(text: str) -> str:
        """Echo."""
        return text

    gated = wrap_tool(session, echo)
    assert is_wrapped(gated) and not is_wrapped(echo) and not is_wrapped("echo")
    assert unwrap_tool(gated) is echo
    assert unwrap_tool(echo) is echo
    assert unwrap_tool(copy.copy(gated)) is echo
    session.close()


def test_original_tool_is_left_ungated(trace: Path) -> None:
    ran = []

    @function_tool
    def ping(host: str) -> str:
        """Ping a host."""
        ran.append(host)
        return "pong"

    session = Session(trace, policy=presets.read_only())
    wrap_tool(session, ping)
    run([ping], [("ping", {"host": "a"})])
    assert ran == ["a"] and calls(trace) == []
    session.close()


# --------------------------------------------------------------------------- recording


@pytest.mark.parametrize("mode", MODES)
def test_call_id_args_and_framework_are_recorded(trace: Path, mode: str) -> None:
    session = Session(trace)
    register(session, Counter())
    tools = create_openai_agents_toolkit(session)
    run(tools, [("add", {"a": 1, "b": 2}), ("write_note", {"text": "n"})], mode)
    recs = calls(trace)
    assert [(r["tool"], r["args"], r["call_id"], r["framework"]) for r in recs] == [
        ("add", {"a": 1, "b": 2}, "call_1", "openai_agents"),
        ("write_note", {"text": "n"}, "call_2", "openai_agents"),
    ]
    assert [r["output"] for r in recs] == [3, "wrote n"]
    session.close()


@pytest.mark.parametrize("mode", MODES)
def test_the_running_tool_sees_its_call_context(trace: Path, mode: str) -> None:
    # newer SDKs run sync functions in a worker thread: the context must follow them there
    session = Session(trace)

    @session.tool(side_effect="read")
    def whoami() -> str:
        """Report the calltape call in progress."""
        call = current_call()
        assert call is not None
        return f"{call.tool}#{call.seq} {call.idempotency_key[:3]}"

    final, _ = run(create_openai_agents_toolkit(session), [("whoami", {})], mode)
    assert final == "done: whoami#1 ct-"
    session.close()


def test_fingerprint_keeps_only_schema_keys(trace: Path) -> None:
    @function_tool(strict_mode=False)
    def greet(name: str) -> str:
        """Greet someone."""
        return f"hi {name}"

    session = Session(trace)
    gated = wrap_tool(session, greet)
    run([gated], [("greet", {"name": "Ada", "injected": 1}), ("greet", {"name": "Ada"})])
    first, second = calls(trace)
    assert first["args"] == {"name": "Ada"}
    assert first["fp"] == second["fp"]
    session.close()


def test_non_object_arguments_are_still_gated(trace: Path) -> None:
    seen: list[str] = []

    async def invoke(ctx: Any, arguments: str) -> str:
        seen.append(arguments)
        return "raw ok"

    raw = FunctionTool(
        name="shell",
        description="Run a command line.",
        params_json_schema={"type": "object", "properties": {}},
        on_invoke_tool=invoke,
        strict_json_schema=False,
    )
    session = Session(trace, policy=presets.read_only())
    _, model = run([wrap_tool(session, raw)], [("shell", "ls -la")])
    assert seen == []
    assert model.tool_outputs[0].startswith("calltape blocked tool 'shell'")
    (rec,) = calls(trace)
    assert (rec["args"], rec["call_id"], rec["status"]) == ({"$raw": "ls -la"}, "call_1", "blocked")
    session.close()


# --------------------------------------------------------------------------- blocks


@pytest.mark.parametrize("mode", MODES)
def test_block_reaches_the_model_and_the_run_finishes(trace: Path, mode: str) -> None:
    counter = Counter()
    session = Session(trace, policy=presets.read_only())
    register(session, counter)
    final, model = run(create_openai_agents_toolkit(session), [("write_note", {"text": "x"})], mode)
    assert counter.runs == {}
    (message,) = model.tool_outputs
    assert message.startswith("calltape blocked tool 'write_note' (rule read_only")
    assert "side effect 'write'" in message
    assert final == f"done: {message}"
    (rec,) = calls(trace)
    assert rec["status"] == "blocked" and rec["decision"]["rule"].startswith("read_only")
    session.close()


def test_third_party_tool_blocked_by_declared_side_effect(trace: Path) -> None:
    sent = []

    @function_tool
    def send_email(to: str, body: str) -> str:
        """Send an email."""
        sent.append(to)
        return "sent"

    session = Session(trace, policy=presets.read_only())
    session.declare("send_email", side_effect="network")
    (gated,) = create_openai_agents_toolkit(session, [send_email])
    _, model = run([gated], [("send_email", {"to": "a@b.c", "body": "hi"})])
    assert sent == []
    assert "calltape blocked tool 'send_email'" in model.tool_outputs[0]
    assert calls(trace)[0]["side_effect"] == "network"
    session.close()


def test_block_with_stop_on_first_tool_becomes_the_final_output(trace: Path) -> None:
    session = Session(trace, policy=presets.read_only())
    register(session, Counter())
    final, _ = run(
        create_openai_agents_toolkit(session),
        [("write_note", {"text": "x"})],
        tool_use_behavior="stop_on_first_tool",
    )
    assert str(final).startswith("calltape blocked tool 'write_note'")
    session.close()


# --------------------------------------------------------------------------- tool errors


def test_tool_error_is_recorded_and_model_sees_the_sdk_text(tmp_path: Path) -> None:
    counter = Counter()
    session = Session(tmp_path / "t.jsonl")
    register(session, counter)
    _, gated_model = run(create_openai_agents_toolkit(session), [("explode", {"reason": "r1"})])
    # control: the same function as plain @function_tool, no calltape
    plain = function_tool(session.tools["explode"].fn)  # type: ignore[arg-type]
    _, plain_model = run([plain], [("explode", {"reason": "r1"})])
    assert gated_model.tool_outputs == plain_model.tool_outputs
    assert gated_model.tool_outputs[0].startswith("An error occurred while running the tool")
    (rec,) = calls(tmp_path / "t.jsonl")
    assert rec["status"] == "error"
    assert rec["error"] == {"type": "ValueError", "message": "exploded: r1"}
    assert counter.runs == {"explode": 2}
    session.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("custom_formatter", [False, True])
def test_a_users_function_tool_error_is_recorded_as_an_error_and_rerun_on_resume(
    tmp_path: Path, mode: str, custom_formatter: bool
) -> None:
    runs: list[int] = []

    def flaky(x: int) -> str:
        """Fails the first time."""
        runs.append(x)
        if len(runs) == 1:
            raise ValueError("transient failure")
        return "worked"

    kw: dict[str, Any] = {}
    if custom_formatter:
        kw["failure_error_function"] = lambda ctx, exc: f"tool said no: {exc}"
    user_tool = function_tool(flaky, **kw)
    trace = tmp_path / "t.jsonl"
    with Session(trace) as session:
        _, gated_model = run(wrap_tool_list(session, user_tool), [("flaky", {"x": 1})], mode)
    # control: the same tool without calltape shows the model the same text
    runs.clear()
    _, plain_model = run([function_tool(flaky, **kw)], [("flaky", {"x": 1})], mode)
    assert gated_model.tool_outputs == plain_model.tool_outputs
    expected = "tool said no: transient failure" if custom_formatter else "An error occurred"
    assert gated_model.tool_outputs[0].startswith(expected)
    (rec,) = calls(trace)
    assert rec["status"] == "error"
    assert rec["error"] == {"type": "ValueError", "message": "transient failure"}
    # the resumed run does not replay the failure as a success: the tool runs again
    runs.clear()
    runs.append(0)  # the next call succeeds
    with Session(trace) as session:
        _, resumed_model = run(wrap_tool_list(session, user_tool), [("flaky", {"x": 1})], mode)
    assert runs == [0, 1]
    assert resumed_model.tool_outputs == ["worked"]
    assert [c["status"] for c in calls(trace)] == ["error", "ok"]


def test_gating_a_users_tool_leaves_the_users_tool_as_it_was(tmp_path: Path) -> None:
    def boom() -> str:
        """Always fails."""
        raise RuntimeError("boom")

    user_tool = function_tool(boom)
    before = user_tool.on_invoke_tool
    with Session(tmp_path / "t.jsonl") as session:
        wrap_tool(session, user_tool)
        _, model = run([user_tool], [("boom", {})])  # the user's own, ungated tool
    assert user_tool.on_invoke_tool is before
    assert model.tool_outputs[0].startswith("An error occurred")
    assert calls(tmp_path / "t.jsonl") == []


def wrap_tool_list(session: Session, tool: FunctionTool) -> list[FunctionTool]:
    return [wrap_tool(session, tool)]


def test_a_non_session_is_refused_up_front() -> None:
    @function_tool
    def echo(text: str) -> str:
        """Echo."""
        return text

    for bad in ("not a session", None):
        with pytest.raises(TypeError, match="session must be a calltape.Session"):
            create_openai_agents_toolkit(bad, [echo])  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="session must be a calltape.Session"):
            wrap_tool(bad, echo)  # type: ignore[arg-type]


def test_exception_escaping_a_third_party_invoker_keeps_sdk_behaviour(trace: Path) -> None:
    def fragile(n: int) -> int:
        """Fails without a failure_error_function."""
        raise KeyError(n)

    raw = function_tool(fragile, failure_error_function=None)
    session = Session(trace)
    with pytest.raises(UserError) as gated_err:
        run([wrap_tool(session, raw)], [("fragile", {"n": 1})])
    with pytest.raises(UserError) as plain_err:
        run([raw], [("fragile", {"n": 1})])
    assert str(gated_err.value) == str(plain_err.value)
    assert isinstance(gated_err.value.__cause__, KeyError)
    (rec,) = calls(trace)
    assert rec["status"] == "error" and rec["error"]["type"] == "KeyError"
    session.close()


# --------------------------------------------------------------------------- replay


@pytest.mark.parametrize("mode", MODES)
def test_resume_then_strict_replay_without_executing(trace: Path, mode: str) -> None:
    script = [("add", {"a": 20, "b": 22}), ("write_note", {"text": "kept"})]
    counter = Counter()
    with Session(trace) as first:
        register(first, counter)
        recorded, _ = run(create_openai_agents_toolkit(first), script, mode)
    assert counter.runs == {"add": 1, "write_note": 1}
    for replay in ("resume", "strict"):
        with Session(trace, replay=replay) as again:
            register(again, counter)
            final, model = run(create_openai_agents_toolkit(again), script, mode)
        assert final == recorded == "done: wrote kept"
        assert model.tool_outputs == ["42", "wrote kept"]
        assert counter.runs == {"add": 1, "write_note": 1}


def test_strict_miss_aborts_the_run_without_executing(trace: Path) -> None:
    counter = Counter()
    with Session(trace) as first:
        register(first, counter)
        run(create_openai_agents_toolkit(first), [("add", {"a": 1, "b": 1})])
    with Session(trace, replay="strict") as again:
        register(again, counter)
        with pytest.raises(UserError) as err:
            run(create_openai_agents_toolkit(again), [("add", {"a": 5, "b": 5})])
    assert isinstance(err.value.__cause__, ReplayMiss)
    assert counter.runs == {"add": 1}


# --------------------------------------------------------------------------- bad input


def test_hosted_tool_is_rejected_with_a_clear_type_error(trace: Path) -> None:
    session = Session(trace)
    with pytest.raises(TypeError, match=r"only agents\.FunctionTool.*WebSearchTool.*next to"):
        create_openai_agents_toolkit(session, [WebSearchTool()])
    session.close()


def test_agent_instead_of_a_tool_points_to_as_tool(trace: Path) -> None:
    session = Session(trace)
    with pytest.raises(TypeError, match=r"expected agents\.FunctionTool.*agent\.as_tool"):
        wrap_tool(session, Agent(name="helper"))
    session.close()


@pytest.mark.parametrize("bad", [object(), "add", 42, len])
def test_non_tool_object_is_rejected_naming_the_accepted_type(trace: Path, bad: Any) -> None:
    session = Session(trace)
    with pytest.raises(TypeError, match=r"expected agents\.FunctionTool"):
        wrap_tool(session, bad)
    with pytest.raises(TypeError, match=r"expected agents\.FunctionTool"):
        create_openai_agents_toolkit(session, [bad])
    session.close()


def test_single_tool_instead_of_a_list_is_rejected(trace: Path) -> None:
    def echo(text: str) -> str:
        return text

    session = Session(trace)
    with pytest.raises(TypeError, match="wrap_tool"):
        create_openai_agents_toolkit(session, function_tool(echo))  # type: ignore[arg-type]
    session.close()


@pytest.mark.parametrize("module", ["calltape_openai_agents", "calltape_openai_agents.testing"])
def test_missing_framework_names_the_pip_install(module: str) -> None:
    code = (
        "import sys; sys.modules['agents'] = None\n"
        f"try:\n    import {module}\n"
        "except ImportError as e:\n    print(type(e).__name__, e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("MissingFrameworkError")
    assert "pip install calltape-openai-agents" in out.stdout


def test_public_surface() -> None:
    import calltape_openai_agents
    import calltape_openai_agents.testing

    assert calltape_openai_agents.__all__ == [
        "create_openai_agents_toolkit",
        "is_wrapped",
        "unwrap_tool",
        "wrap_tool",
    ]
    assert calltape_openai_agents.testing.__all__ == ["ModelTurn", "ScriptedModel"]


# --------------------------------------------------------------------------- SDK features


def test_agent_as_tool_is_gated_and_replayed(trace: Path) -> None:
    inner_model = ScriptedModel([], final="bonjour")
    translator = Agent(name="translator", model=inner_model)
    tool = translator.as_tool(tool_name="translate", tool_description="Translate text.")
    for replayed in (False, True):
        with Session(trace) as session:
            session.declare("translate", side_effect="read")
            final, _ = run([wrap_tool(session, tool)], [("translate", {"input": "hello"})])
        assert final == "done: bonjour"
        assert session.summary().replayed == int(replayed)
    assert len(inner_model.turns) == 1, "the replayed run did not run the inner agent"
    with Session(trace, policy=presets.read_only()) as session:
        final, _ = run([wrap_tool(session, tool)], [("translate", {"input": "hello"})])
    assert "rule read_only.unknown" in final and len(inner_model.turns) == 1


if "needs_approval" in {f.name for f in dataclasses.fields(FunctionTool)}:  # SDK >= 0.4

    def test_sdk_human_approval_runs_before_the_gate(trace: Path) -> None:
        paid: list[int] = []

        def pay(amount: int) -> str:
            """Pay an amount."""
            paid.append(amount)
            return "paid"

        session = Session(trace)
        gated = wrap_tool(session, function_tool(pay, needs_approval=True))  # type: ignore[call-arg]
        agent = Agent(name="a", model=ScriptedModel([("pay", {"amount": 5})]), tools=[gated])
        first = Runner.run_sync(agent, "go")
        assert [i.raw_item.name for i in first.interruptions] == ["pay"]
        assert paid == [] and calls(trace) == []
        state = first.to_state()
        state.approve(first.interruptions[0])
        second = Runner.run_sync(agent, state)
        assert second.final_output == "done: paid" and paid == [5]
        assert [(c["tool"], c["status"], c["call_id"]) for c in calls(trace)] == [
            ("pay", "ok", "call_1")
        ]
        session.close()


if "timeout_seconds" in {f.name for f in dataclasses.fields(FunctionTool)}:  # SDK >= 0.5

    def test_sync_tool_timeout_is_refused_as_without_calltape(trace: Path) -> None:
        session = Session(trace)
        register(session, Counter())
        add = create_openai_agents_toolkit(session)[0]
        with pytest.raises(ValueError, match="only supported for async"):
            dataclasses.replace(function_tool(session.tools["add"].fn), timeout_seconds=1)  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="only supported for async"):
            dataclasses.replace(add, timeout_seconds=1)
        session.close()
