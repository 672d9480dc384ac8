"""CrewAI-specific behaviour: both execution paths, third-party tools, result_as_answer,
tool_failure_policy, the crew tool cache, copies, and misuse.

No ``from __future__ import annotations`` here: the tools below are handed to CrewAI, which
builds their argument schemas from runtime annotations.
"""

import asyncio
import copy
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from crewai import Agent
from crewai.tools import BaseTool
from crewai.tools import tool as crewai_tool

from calltape import Session
from calltape.policy.presets import read_only
from calltape.testing import ToolBox, TraceView
from calltape_crewai import BLOCK_CODE, CalltapeTool, create_crewai_toolkit, is_block, wrap_tool
from calltape_crewai._compat import HAS_TOOL_FAILURE
from calltape_crewai.testing import ScriptedLLM, run_crew

PATHS = pytest.mark.parametrize("function_calling", [True, False], ids=["native", "react"])


SENT: list[str] = []


class SendEmail(BaseTool):
    """A third-party style tool: a BaseTool subclass with its own ``_run``."""

    name: str = "send_email"
    description: str = "Send an email to someone."

    def _run(self, to: str, body: str) -> str:
        SENT.append(to)
        return f"sent to {to}"


def _session(tmp_path: Path, box: ToolBox | None = None, **kwargs: Any) -> Session:
    session = Session(tmp_path / "trace.jsonl", **kwargs)
    if box is not None:
        box.register(session)
    return session


def _calls(tmp_path: Path, tool: str | None = None) -> list[Any]:
    return TraceView(tmp_path / "trace.jsonl").calls(tool)


# ----------------------------------------------------------------------- both paths are gated


@PATHS
def test_third_party_tool_is_gated_on_both_paths(tmp_path: Path, function_calling: bool) -> None:
    SENT.clear()
    session = _session(tmp_path, policy=read_only())
    session.declare("send_email", side_effect="write")
    tools = create_crewai_toolkit(session, [SendEmail(), crewai_tool(ToolBox().functions()[0][0])])
    session.declare("add", side_effect="read")
    run = run_crew(
        tools,
        [("send_email", {"to": "bob", "body": "hi"}), ("add", {"a": 1, "b": 2})],
        function_calling=function_calling,
    )
    session.close()
    assert SENT == [], "the blocked tool's side effect happened"
    assert "read_only.write" in run.script.tool_results[0]
    assert run.script.tool_results[1] == "3"
    assert run.final_answer == "done: 3"
    ((start, end),) = _calls(tmp_path, "send_email")
    assert end.status == "blocked"
    assert start.args == {"to": "bob", "body": "hi"}
    assert [e.status for _, e in _calls(tmp_path, "add")] == ["ok"]


@PATHS
def test_allowed_third_party_tool_runs_once_and_replays(
    tmp_path: Path, function_calling: bool
) -> None:
    SENT.clear()
    script = [("send_email", {"to": "ann", "body": "hello"})]
    with _session(tmp_path) as session:
        first = run_crew(
            create_crewai_toolkit(session, [SendEmail()]), script, function_calling=function_calling
        )
    assert SENT == ["ann"]
    with _session(tmp_path) as session:
        second = run_crew(
            create_crewai_toolkit(session, [SendEmail()]), script, function_calling=function_calling
        )
    assert SENT == ["ann"], "resume executed a recorded call"
    assert second.final_answer == first.final_answer == "done: sent to ann"
    assert [e.replayed for _, e in _calls(tmp_path, "send_email")] == [False, True]


def test_react_path_goes_through_the_structured_tool_guard(tmp_path: Path) -> None:
    with _session(tmp_path, ToolBox()) as session:
        add = create_crewai_toolkit(session)[0]
        structured = add.to_structured_tool()
        # The executor matches the structured tool to its BaseTool by identity.
        assert structured._original_tool is add
        assert getattr(structured.func, "__calltape_guard__", False)
        assert structured.invoke({"a": 2, "b": 5}) == 7
    ((start, end),) = _calls(tmp_path, "add")
    assert start.args == {"a": 2, "b": 5} and end.output == 7


def test_native_path_binds_the_proxy_run(tmp_path: Path) -> None:
    from crewai.utilities.agent_utils import convert_tools_to_openai_schema

    with _session(tmp_path, ToolBox()) as session:
        add = create_crewai_toolkit(session)[0]
        functions = convert_tools_to_openai_schema([add])[1]
        assert functions["add"](a=4, b=4) == 8
        # CrewAI looks the formatter up statically; it must be visible on the proxy.
        assert inspect.getattr_static(add, "format_output_for_agent", None) is not None
    assert len(_calls(tmp_path, "add")) == 1


def test_direct_run_binds_positional_arguments_by_name(tmp_path: Path) -> None:
    with _session(tmp_path, ToolBox()) as session:
        add = create_crewai_toolkit(session)[0]
        assert add.run(1, 2) == 3
        with pytest.raises(TypeError, match="takes 2 arguments"):
            add.run(1, 2, 3)
    ((start, _),) = _calls(tmp_path, "add")
    assert start.args == {"a": 1, "b": 2}


def test_async_tool_records_its_value_on_both_paths(tmp_path: Path) -> None:
    async def lookup(key: str) -> str:
        """Look a key up."""
        await asyncio.sleep(0)
        return f"value of {key}"

    with _session(tmp_path) as session:
        session.register(lookup, side_effect="read")
        for function_calling in (True, False):
            run = run_crew(
                create_crewai_toolkit(session),
                [("lookup", {"key": f"k{int(function_calling)}"})],
                function_calling=function_calling,
            )
            assert run.script.tool_results == [f"value of k{int(function_calling)}"]
    outputs = [e.output for _, e in _calls(tmp_path, "lookup")]
    assert outputs == ["value of k1", "value of k0"]


# ----------------------------------------------------------------------- the framework keeps it


def test_agent_keeps_the_proxy_through_validation_and_copy(tmp_path: Path) -> None:
    with _session(tmp_path, ToolBox()) as session:
        tools = create_crewai_toolkit(session)
        agent = Agent(
            role="r",
            goal="g",
            backstory="b",
            llm=ScriptedLLM.create([]),
            tools=tools,
            allow_delegation=False,
        )
        assert all(isinstance(t, CalltapeTool) for t in agent.tools)
        assert [id(t) for t in agent.tools] == [id(t) for t in tools]
        assert all(isinstance(t, CalltapeTool) for t in agent.copy().tools)


def test_schema_and_type_match_the_native_tool(tmp_path: Path) -> None:
    fn = ToolBox().functions()[0][0]
    native = crewai_tool(fn)
    with _session(tmp_path) as session:
        wrapped = wrap_tool(session, native)
        assert isinstance(wrapped, BaseTool) and isinstance(wrapped, type(native))
        assert wrapped.args_schema is native.args_schema
        assert wrapped.args_schema.model_json_schema() == native.args_schema.model_json_schema()
        assert (wrapped.name, wrapped.description) == (native.name, native.description)


def test_copies_rewrap_and_deepcopy_matches_the_wrapped_tool(tmp_path: Path) -> None:
    with _session(tmp_path, ToolBox(), policy=read_only()) as session:
        note = create_crewai_toolkit(session)[1]
        for dup in (copy.copy(note), note.model_copy()):
            assert isinstance(dup, CalltapeTool) and dup is not note
            assert dup.calltape_session is session
            assert is_block(dup.run(text="x"))
        try:
            native_copy = copy.deepcopy(note.__wrapped__)
        except Exception as exc:  # CrewAI's own tools hold a lock in newer releases
            with pytest.raises(type(exc)):
                copy.deepcopy(note)
        else:
            dup = copy.deepcopy(note)
            assert isinstance(dup, CalltapeTool) and type(native_copy) is type(dup.__wrapped__)
            assert is_block(dup.run(text="y"))
    assert [e.status for _, e in _calls(tmp_path, "write_note")].count("blocked") >= 2


# ----------------------------------------------------------------------- blocks in CrewAI's idiom


@PATHS
def test_block_is_crewai_failure_value_and_recorded_once(
    tmp_path: Path, function_calling: bool
) -> None:
    box = ToolBox()
    with _session(tmp_path, box, policy=read_only()) as session:
        run = run_crew(
            create_crewai_toolkit(session),
            [("write_note", {"text": "pay bob"})],
            function_calling=function_calling,
        )
    assert box.calls["write_note"] == 0
    assert len(_calls(tmp_path, "write_note")) == 1, "a block must be recorded once, not retried"
    seen = run.script.tool_results[0]
    assert "calltape blocked tool 'write_note' (rule read_only.write)" in seen
    if HAS_TOOL_FAILURE:
        assert seen.endswith(f"(code: {BLOCK_CODE})")
        (failure,) = run.output.tasks_output[0].tool_failures
        assert failure.failure.code == BLOCK_CODE
        assert failure.failure.details["rule"] == "read_only.write"
    assert run.final_answer == f"done: {seen}"


@PATHS
def test_result_as_answer_tool(tmp_path: Path, function_calling: bool) -> None:
    fns = {fn.__name__: fn for fn, _ in ToolBox().functions()}
    add = crewai_tool(result_as_answer=True)(fns["add"])
    note = crewai_tool(result_as_answer=True)(fns["write_note"])
    with _session(tmp_path, policy=read_only()) as session:
        session.declare("add", side_effect="read")
        allowed = run_crew(
            create_crewai_toolkit(session, [add]),
            [("add", {"a": 2, "b": 2})],
            function_calling=function_calling,
        )
        blocked = run_crew(
            create_crewai_toolkit(session, [note]),
            [("write_note", {"text": "x"})],
            function_calling=function_calling,
        )
    # An allowed result_as_answer tool ends the task with its output, as without calltape.
    assert allowed.final_answer == "4"
    if HAS_TOOL_FAILURE:
        # A ToolFailure never becomes the final answer: the model sees the block and answers.
        assert blocked.final_answer.startswith("done: calltape blocked tool 'write_note'")
    else:
        # crewai without ToolFailure: the block text becomes the task's answer (documented).
        assert blocked.final_answer.startswith("calltape blocked tool 'write_note'")
    assert [e.status for _, e in _calls(tmp_path)] == ["ok", "blocked"]


@PATHS
def test_tool_failure_policy_raise(tmp_path: Path, function_calling: bool) -> None:
    box = ToolBox()
    with _session(tmp_path, box, policy=read_only()) as session:
        tools = create_crewai_toolkit(session)
        script = [("write_note", {"text": "x"}), ("add", {"a": 1, "b": 1})]
        if HAS_TOOL_FAILURE:
            from crewai.tools.tool_failure import ToolExecutionFailedError

            with pytest.raises(ToolExecutionFailedError) as info:
                run_crew(
                    tools,
                    script,
                    function_calling=function_calling,
                    agent_kwargs={"tool_failure_policy": "raise"},
                )
            assert info.value.record.failure.code == BLOCK_CODE
            assert box.calls["add"] == 0, "the user asked CrewAI to stop at the first failure"
        else:
            # crewai without ToolFailure has no tool_failure_policy: a block never stops the run.
            assert "tool_failure_policy" not in Agent.model_fields
            run_crew(tools, script, function_calling=function_calling)
            assert box.calls["add"] == 1
    assert box.calls["write_note"] == 0
    assert [e.status for _, e in _calls(tmp_path, "write_note")] == ["blocked"]


@PATHS
def test_tool_error_reaches_the_model_once(tmp_path: Path, function_calling: bool) -> None:
    box = ToolBox()
    with _session(tmp_path, box) as session:
        run = run_crew(
            create_crewai_toolkit(session),
            [("explode", {"reason": "boom"})],
            function_calling=function_calling,
        )
    assert box.calls["explode"] == 1
    assert "exploded because boom" in run.script.tool_results[0]
    assert run.final_answer.startswith("done: ")
    assert [e.status for _, e in _calls(tmp_path, "explode")] == ["error"]


# ----------------------------------------------------------------------- crew tool cache


@PATHS
def test_crew_cache_hits_are_answered_by_crewai_and_not_recorded(
    tmp_path: Path, function_calling: bool
) -> None:
    box = ToolBox()
    script = [("add", {"a": 1, "b": 2}), ("write_note", {"text": "n"}), ("add", {"a": 1, "b": 2})]
    with _session(tmp_path, box) as session:
        run = run_crew(
            create_crewai_toolkit(session),
            script,
            function_calling=function_calling,
            crew_kwargs={"cache": True},
        )
    assert run.script.tool_results[0] == run.script.tool_results[2] == "3"
    assert box.calls["add"] == 1, "CrewAI's cache answered the repeat"
    assert len(_calls(tmp_path, "add")) == 1, "a cache hit never reaches the tool, nor the trace"


@PATHS
def test_blocks_are_never_cached(tmp_path: Path, function_calling: bool) -> None:
    box = ToolBox()
    script = [
        ("write_note", {"text": "n"}),
        ("add", {"a": 1, "b": 2}),
        ("write_note", {"text": "n"}),
    ]
    with _session(tmp_path, box, policy=read_only()) as session:
        run = run_crew(
            create_crewai_toolkit(session),
            script,
            function_calling=function_calling,
            crew_kwargs={"cache": True},
        )
    assert "read_only.write" in run.script.tool_results[2]
    assert [e.status for _, e in _calls(tmp_path, "write_note")] == ["blocked", "blocked"]


# ----------------------------------------------------------------------- misuse


def test_rejects_what_is_not_a_crewai_tool(tmp_path: Path) -> None:
    with _session(tmp_path, ToolBox()) as session:
        with pytest.raises(TypeError, match="crewai BaseTool") as info:
            wrap_tool(session, ToolBox().functions()[0][0])
        assert "function" in str(info.value)
        native = crewai_tool(ToolBox().functions()[0][0])
        with pytest.raises(TypeError, match="list of crewai tools"):
            create_crewai_toolkit(session, native)  # a tool, not a list of tools
        with pytest.raises(TypeError, match=r"calltape\.Session"):
            wrap_tool("not a session", native)  # type: ignore[arg-type]


def test_wrapping_again_reuses_or_rewraps(tmp_path: Path) -> None:
    native = crewai_tool(ToolBox().functions()[0][0])
    with _session(tmp_path) as one, Session(tmp_path / "other.jsonl") as other:
        first = wrap_tool(one, native)
        assert wrap_tool(one, first) is first
        moved = wrap_tool(other, first)
        assert moved.calltape_session is other and moved.__wrapped__ is native


def test_is_wrapped_and_unwrap_tool(tmp_path: Path) -> None:
    from calltape_crewai import is_wrapped, unwrap_tool

    native = crewai_tool(ToolBox().functions()[0][0])
    with _session(tmp_path) as session:
        gated = wrap_tool(session, native)
        assert is_wrapped(gated) and not is_wrapped(native)
        assert unwrap_tool(gated) is native
        assert unwrap_tool(native) is native
        copied = unwrap_tool(copy.copy(gated))  # a copy of the gated tool wraps a copy
        assert not is_wrapped(copied) and type(copied) is type(native)
        assert copied.name == native.name


def test_missing_crewai_names_the_pip_install() -> None:
    code = (
        "import sys; sys.modules['crewai'] = None\n"
        "try:\n"
        "    import calltape_crewai\n"
        "except ImportError as exc:\n"
        "    print(type(exc).__name__, exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("MissingFrameworkError ")
    assert "pip install calltape-crewai" in out.stdout


@PATHS
def test_usage_limit_refusals_never_reach_the_tool(tmp_path: Path, function_calling: bool) -> None:
    fns = {fn.__name__: fn for fn, _ in ToolBox().functions()}
    box = ToolBox()
    limited = crewai_tool(max_usage_count=1)(box.functions()[0][0])
    note = crewai_tool(fns["write_note"])
    script = [("add", {"a": 1, "b": 2}), ("write_note", {"text": "n"}), ("add", {"a": 3, "b": 4})]
    with _session(tmp_path) as session:
        run = run_crew(
            create_crewai_toolkit(session, [limited, note]),
            script,
            function_calling=function_calling,
        )
    assert box.calls["add"] == 1
    assert "usage limit" in run.script.tool_results[2]
    assert [s.args for s, _ in _calls(tmp_path, "add")] == [{"a": 1, "b": 2}]


def test_arun_is_gated_and_recorded(tmp_path: Path) -> None:
    async def fetch(url: str) -> str:
        """Fetch a URL."""
        return f"<html>{url}</html>"

    with _session(tmp_path, policy=read_only()) as session:
        session.declare("fetch", side_effect="read")
        tool = wrap_tool(session, crewai_tool(fetch))
        assert asyncio.run(tool.arun(url="a")) == "<html>a</html>"
        session.declare("fetch", side_effect="write")
        assert is_block(asyncio.run(tool.arun(url="b")))
    assert [(s.args, e.status) for s, e in _calls(tmp_path, "fetch")] == [
        ({"url": "a"}, "ok"),
        ({"url": "b"}, "blocked"),
    ]


def test_public_surface() -> None:
    import calltape_crewai

    assert sorted(calltape_crewai.__all__) == [
        "BLOCK_CODE",
        "CalltapeTool",
        "create_crewai_toolkit",
        "is_block",
        "is_wrapped",
        "unwrap_tool",
        "wrap_tool",
    ]


@PATHS
def test_standalone_agent_kickoff_is_gated(tmp_path: Path, function_calling: bool) -> None:
    box = ToolBox()
    script = [("write_note", {"text": "x"}), ("add", {"a": 1, "b": 2})]
    with _session(tmp_path, box, policy=read_only()) as session:
        llm = ScriptedLLM.create(script, function_calling=function_calling)
        agent = Agent(
            role="r", goal="g", backstory="b", llm=llm, tools=create_crewai_toolkit(session)
        )
        output = agent.kickoff("Use the tools.")
    assert dict(box.calls) == {"add": 1}
    assert "read_only.write" in llm.script.tool_results[0]
    assert str(output.raw) == "done: 3"
    assert [e.status for _, e in _calls(tmp_path)] == ["blocked", "ok"]


class PostMessage(BaseTool):
    """A tool that reports its own failure, as CrewAI 1.15 tools (and MCP servers) do."""

    name: str = "post_message"
    description: str = "Post a message to a channel."

    def _run(self, channel: str) -> Any:
        SENT.append(channel)
        from crewai.tools.tool_failure import ToolFailure

        return ToolFailure(message=f"no channel {channel}", code="channel_not_found")


@PATHS
def test_tool_reported_failure_replays_as_the_same_failure(
    tmp_path: Path, function_calling: bool
) -> None:
    if not HAS_TOOL_FAILURE:
        # crewai 1.9 has no ToolFailure: a tool reports failure as text, replayed as text.
        with pytest.raises(ImportError):
            import crewai.tools.tool_failure  # noqa: F401
        return
    SENT.clear()
    runs = []
    for _ in range(2):
        with _session(tmp_path) as session:
            runs.append(
                run_crew(
                    create_crewai_toolkit(session, [PostMessage()]),
                    [("post_message", {"channel": "ops"})],
                    function_calling=function_calling,
                )
            )
    assert SENT == ["ops"], "resume executed a recorded call"
    first, second = runs
    assert second.script.tool_results == first.script.tool_results
    assert first.script.tool_results == ["no channel ops (code: channel_not_found)"]
    for run in runs:
        (failure,) = run.output.tasks_output[0].tool_failures
        assert failure.failure.code == "channel_not_found"
    assert [e.replayed for _, e in _calls(tmp_path, "post_message")] == [False, True]


# ---------------------------------------------------------- one call, one fingerprint, any path

FORECASTS: list[str] = []


class Forecast(BaseTool):
    """A tool with a defaulted argument: the model may or may not spell the default out."""

    name: str = "forecast"
    description: str = "Weather forecast for a city."

    def _run(self, city: str, units: str = "C") -> str:
        FORECASTS.append(f"{city}/{units}")
        return f"12 {units} in {city}"


@pytest.mark.parametrize(
    ("record_path", "resume_path"),
    [(True, False), (False, True)],
    ids=["native-react", "react-native"],
)
@pytest.mark.parametrize("spelled_out", [False, True], ids=["default-left-out", "default-given"])
def test_a_call_recorded_on_one_path_resumes_on_the_other(
    tmp_path: Path, record_path: bool, resume_path: bool, spelled_out: bool
) -> None:
    FORECASTS.clear()
    recorded = {"city": "Oslo", "units": "C"} if spelled_out else {"city": "Oslo"}
    with _session(tmp_path) as session:
        first = run_crew(
            create_crewai_toolkit(session, [Forecast()]),
            [("forecast", recorded)],
            function_calling=record_path,
        )
    with _session(tmp_path) as session:
        again = run_crew(
            create_crewai_toolkit(session, [Forecast()]),
            [("forecast", {"city": "Oslo"})],
            function_calling=resume_path,
        )
        assert session.summary().replayed == 1
    assert FORECASTS == ["Oslo/C"], "the resumed run executed the tool again"
    assert again.final_answer == first.final_answer
    (start, _), (again_start, _) = _calls(tmp_path, "forecast")
    assert start.fp == again_start.fp
    assert start.args == {"city": "Oslo", "units": "C"}
