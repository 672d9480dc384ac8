"""The integration contract, written once.

Every calltape integration promises the same things, so every integration is proven by this one
suite, instantiated with a small per-framework driver (as SQLAlchemy's dialect suite is)::

    from calltape.testing import ConformanceSuite

    class TestMyFrameworkConformance(ConformanceSuite):
        driver = MyFrameworkDriver()

The driver builds the framework's *real* agent loop with the framework's own fake or scripted
model; nothing of the framework is mocked. A shim for another framework can run the same kit.

Deliberately no ``from __future__ import annotations`` here: the tools below are handed to
frameworks that build schemas from runtime annotations.
"""

import copy
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import pytest

from calltape.policy import Policy
from calltape.policy.presets import read_only
from calltape.session import Session
from calltape.trace import CallEnd, CallStart, read_trace

__all__ = [
    "AgentRun",
    "ConformanceSuite",
    "FrameworkDriver",
    "ScriptedCall",
    "ToolBox",
    "TraceView",
]


@dataclass
class ScriptedCall:
    """One tool call the scripted model makes (one per model turn)."""

    tool: str
    args: dict[str, Any]


@dataclass
class AgentRun:
    """What a finished agent run produced.

    Attributes:
        final_answer: The agent's final text.
        tool_results: What the model saw for each tool call, as text, in order.
    """

    final_answer: str
    tool_results: list[str] = field(default_factory=list)


@runtime_checkable
class FrameworkDriver(Protocol):
    """How the kit drives one framework. Implement it next to the integration's tests.

    Attributes:
        name: The integration token (``"langchain"``).
        modes: The ways the agent can be run (e.g. ``("sync", "async")``).
        records_call_id: True when the framework hands its tool-call id to the tool, so the
            kit checks that the record stores ``call_1``, ``call_2``...
    """

    name: str
    modes: tuple[str, ...]
    records_call_id: bool

    def toolkit(self, session: Session, tools: list[Any] | None = None) -> list[Any]:
        """Call the integration's ``create_<fw>_toolkit``."""
        ...

    def native_tool(self, fn: Callable[..., Any]) -> Any:
        """The framework's own (unwrapped) tool for a plain function."""
        ...

    def schema(self, tool: Any) -> Any:
        """The JSON-able schema the model sees, by the framework's own conversion."""
        ...

    def copies(self, tool: Any) -> list[Any]:
        """Copies the framework (or a user) may make of a tool; each must stay gated."""
        ...

    def run_agent(self, tools: list[Any], script: list[ScriptedCall], *, mode: str) -> AgentRun:
        """Run the framework's real agent loop with a scripted model.

        The model makes the calls in ``script`` (one per turn, ids ``call_1``, ``call_2``...),
        then answers ``"done: <text of the last tool result>"``.
        """
        ...


class ToolBox:
    """The tools the kit registers, with counters proving whether each really ran."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def functions(self) -> list[tuple[Callable[..., Any], str]]:
        calls = self.calls

        def add(a: int, b: int) -> int:
            """Add two integers and return the sum."""
            calls["add"] += 1
            return a + b

        def write_note(text: str) -> str:
            """Save a note to the user's notebook."""
            calls["write_note"] += 1
            return f"saved note: {text}"

        def explode(reason: str) -> str:
            """A tool that always fails."""
            calls["explode"] += 1
            raise ValueError(f"exploded because {reason}")

        return [(add, "read"), (write_note, "write"), (explode, "read")]

    def register(self, session: Session) -> None:
        for fn, side_effect in self.functions():
            session.register(fn, side_effect=side_effect)


class TraceView:
    """The trace as the kit checks it."""

    def __init__(self, path: Path) -> None:
        result = read_trace(path)
        assert result.torn_line is None, f"trace has a torn record: {result.warning}"
        self.starts = {r.seq: r for r in result.records if isinstance(r, CallStart)}
        self.ends = [r for r in result.records if isinstance(r, CallEnd)]

    def calls(self, tool: str | None = None) -> list[tuple[CallStart, CallEnd]]:
        pairs = [(self.starts[e.seq], e) for e in self.ends]
        return [p for p in pairs if tool is None or p[0].tool == tool]


class ConformanceSuite:
    """The contract every integration meets. Subclass it and set ``driver``."""

    driver: FrameworkDriver

    # --------------------------------------------------------------- plumbing

    def pytest_generate_tests(self, metafunc: Any) -> None:
        if "mode" in metafunc.fixturenames:
            metafunc.parametrize("mode", list(self.driver.modes))

    def _session(
        self,
        tmp_path: Path,
        box: ToolBox,
        *,
        policy: Policy | None = None,
        replay: str = "resume",
    ) -> Session:
        session = Session(tmp_path / "trace.jsonl", policy=policy, replay=replay)
        box.register(session)
        return session

    def _tools(self, session: Session) -> list[Any]:
        tools = self.driver.toolkit(session)
        assert len(tools) == 3, f"toolkit built {len(tools)} tools from 3 registered functions"
        return tools

    # --------------------------------------------------------------- the contract

    def test_allowed_call_is_executed_once_and_recorded(self, tmp_path: Path, mode: str) -> None:
        box = ToolBox()
        session = self._session(tmp_path, box)
        run = self.driver.run_agent(
            self._tools(session), [ScriptedCall("add", {"a": 2, "b": 3})], mode=mode
        )
        session.close()
        assert box.calls["add"] == 1
        assert "5" in run.tool_results[0]
        assert run.final_answer.startswith("done")
        calls = TraceView(tmp_path / "trace.jsonl").calls("add")
        assert len(calls) == 1
        start, end = calls[0]
        assert end.status == "ok" and not end.replayed
        assert start.args == {"a": 2, "b": 3}, "only the tool's schema arguments are recorded"
        assert end.output in (5, "5")
        if self.driver.records_call_id:
            assert start.call_id == "call_1"

    def test_blocked_call_never_runs_and_the_agent_finishes(
        self, tmp_path: Path, mode: str
    ) -> None:
        box = ToolBox()
        session = self._session(tmp_path, box, policy=read_only())
        script = [
            ScriptedCall("write_note", {"text": "pay bob"}),
            ScriptedCall("add", {"a": 1, "b": 1}),
        ]
        run = self.driver.run_agent(self._tools(session), script, mode=mode)
        session.close()
        assert box.calls["write_note"] == 0, "a blocked tool must never run"
        assert box.calls["add"] == 1, "the loop continues after a block"
        assert "read_only.write" in run.tool_results[0], run.tool_results[0]
        assert "not allowed" in run.tool_results[0]
        assert run.final_answer.startswith("done")
        ((_, end),) = TraceView(tmp_path / "trace.jsonl").calls("write_note")
        assert end.status == "blocked"
        assert end.decision.rule == "read_only.write"

    def test_resume_reaches_the_same_answer_without_executing(
        self, tmp_path: Path, mode: str
    ) -> None:
        script = [
            ScriptedCall("add", {"a": 20, "b": 22}),
            ScriptedCall("write_note", {"text": "hi"}),
        ]
        box1 = ToolBox()
        s1 = self._session(tmp_path, box1)
        first = self.driver.run_agent(self._tools(s1), script, mode=mode)
        s1.close()
        assert box1.calls == Counter({"add": 1, "write_note": 1})

        box2 = ToolBox()
        s2 = self._session(tmp_path, box2)
        second = self.driver.run_agent(self._tools(s2), script, mode=mode)
        s2.close()
        assert box2.calls == Counter(), "resume must not execute recorded calls"
        assert second.final_answer == first.final_answer
        assert second.tool_results == first.tool_results
        assert s2.summary().replayed == 2
        replayed = [e for _, e in TraceView(tmp_path / "trace.jsonl").calls() if e.replayed]
        assert len(replayed) == 2

    def test_strict_replay_runs_the_agent_offline(self, tmp_path: Path, mode: str) -> None:
        script = [ScriptedCall("add", {"a": 4, "b": 5}), ScriptedCall("write_note", {"text": "x"})]
        box = ToolBox()
        s1 = self._session(tmp_path, box)
        first = self.driver.run_agent(self._tools(s1), script, mode=mode)
        s1.close()
        size = (tmp_path / "trace.jsonl").stat().st_size

        offline = ToolBox()
        s2 = self._session(tmp_path, offline, replay="strict")
        second = self.driver.run_agent(self._tools(s2), script, mode=mode)
        s2.close()
        assert offline.calls == Counter(), "strict replay must execute nothing"
        assert second.final_answer == first.final_answer
        assert (tmp_path / "trace.jsonl").stat().st_size == size, "strict replay writes nothing"

    def test_tool_error_is_recorded(self, tmp_path: Path, mode: str) -> None:
        box = ToolBox()
        session = self._session(tmp_path, box)
        try:
            self.driver.run_agent(
                self._tools(session), [ScriptedCall("explode", {"reason": "test"})], mode=mode
            )
        except Exception as exc:  # the framework's own behaviour for tool errors is kept
            assert "exploded because test" in str(exc) or isinstance(exc, ValueError)
        session.close()
        # Some framework versions themselves call a failing tool twice (e.g. LlamaIndex's
        # sync call_tool before 0.14.25 retries with keyword arguments); a driver says so
        # with an optional ``error_attempts(mode)``. Each real execution is one record.
        attempts = getattr(self.driver, "error_attempts", lambda m: 1)(mode)
        assert box.calls["explode"] == attempts
        calls = TraceView(tmp_path / "trace.jsonl").calls("explode")
        assert len(calls) == attempts
        for _, end in calls:
            assert end.status == "error"
            assert end.error is not None and end.error.type == "ValueError"
            assert "exploded because test" in end.error.message

    def test_schema_name_description_and_type_are_preserved(self, tmp_path: Path) -> None:
        box = ToolBox()
        session = self._session(tmp_path, box)
        natives = {
            self._name(t): t for t in (self.driver.native_tool(fn) for fn, _ in box.functions())
        }
        for source in (
            self.driver.toolkit(session),
            self.driver.toolkit(session, list(natives.values())),
        ):
            assert len(source) == len(natives)
            for wrapped in source:
                native = natives[self._name(wrapped)]
                assert isinstance(wrapped, type(native)), (type(wrapped), type(native))
                assert json.dumps(self.driver.schema(wrapped)) == json.dumps(
                    self.driver.schema(native)
                )

    def test_copies_stay_gated(self, tmp_path: Path) -> None:
        box = ToolBox()
        session = self._session(tmp_path, box, policy=read_only())
        tools = self._tools(session)
        note = next(t for t in tools if self._name(t) == "write_note")
        copies = self.driver.copies(note) + [copy.copy(note)]
        for i, dup in enumerate(copies):
            run = self.driver.run_agent(
                [dup],
                [ScriptedCall("write_note", {"text": f"copy {i}"})],
                mode=self.driver.modes[0],
            )
            assert "read_only.write" in run.tool_results[0], (i, run.tool_results)
        session.close()
        assert box.calls["write_note"] == 0, "a copy of a wrapped tool bypassed the gate"
        blocked = TraceView(tmp_path / "trace.jsonl").calls("write_note")
        assert len(blocked) == len(copies)
        assert all(e.status == "blocked" for _, e in blocked)

    def test_wrapping_twice_records_once(self, tmp_path: Path) -> None:
        box = ToolBox()
        session = self._session(tmp_path, box)
        twice = self.driver.toolkit(session, self.driver.toolkit(session))
        self.driver.run_agent(
            twice, [ScriptedCall("add", {"a": 1, "b": 2})], mode=self.driver.modes[0]
        )
        session.close()
        assert box.calls["add"] == 1
        assert len(TraceView(tmp_path / "trace.jsonl").calls("add")) == 1

    def test_one_policy_file_gives_the_same_decisions(self, tmp_path: Path, mode: str) -> None:
        from calltape.policy.file import load_policy

        policy = load_policy(Path(__file__).with_name("conformance_policy.toml"))
        asked: list[str] = []

        def approver(request: Any) -> tuple[bool, str]:
            asked.append(request.args["text"])
            return request.args["text"] == "approve me", "checked by the conformance kit"

        box = ToolBox()
        session = Session(tmp_path / "trace.jsonl", policy=policy, approver=approver)
        box.register(session)
        script = [
            ScriptedCall("add", {"a": 1, "b": 2}),
            ScriptedCall("write_note", {"text": "approve me"}),
            ScriptedCall("write_note", {"text": "reject me"}),
            ScriptedCall("explode", {"reason": "never"}),
        ]
        run = self.driver.run_agent(self._tools(session), script, mode=mode)
        session.close()
        assert box.calls == Counter({"add": 1, "write_note": 1}), box.calls
        assert asked == ["approve me", "reject me"]
        assert "3" in run.tool_results[0]
        assert "saved note: approve me" in run.tool_results[1]
        assert "notes-need-a-human" in run.tool_results[2] and "denied" in run.tool_results[2]
        assert "default" in run.tool_results[3]
        assert run.final_answer.startswith("done")
        decided = [
            (s.tool, e.status, e.decision.action, e.decision.rule)
            for s, e in TraceView(tmp_path / "trace.jsonl").calls()
        ]
        assert decided == [
            ("add", "ok", "allow", "sums"),
            ("write_note", "ok", "allow", "notes-need-a-human"),
            ("write_note", "blocked", "deny", "notes-need-a-human"),
            ("explode", "blocked", "deny", "default"),
        ]

    def test_rejects_objects_that_are_not_tools(self, tmp_path: Path) -> None:
        session = self._session(tmp_path, ToolBox())
        with pytest.raises(TypeError) as info:
            self.driver.toolkit(session, [object()])
        message = str(info.value)
        assert "object" in message, f"the error does not say what was given: {message}"
        # ... and names what is accepted: the framework's tool class or one of its bases
        native = type(self.driver.native_tool(ToolBox().functions()[0][0]))
        accepted = {
            klass.__name__
            for klass in native.__mro__
            if klass.__module__.split(".")[0] not in ("builtins", "abc", "typing", "pydantic")
        }
        assert any(name in message for name in accepted), (
            f"the error names none of the accepted tool types {sorted(accepted)}: {message}"
        )
        session.close()

    @staticmethod
    def _name(tool: Any) -> str:
        name = getattr(tool, "name", None)
        if name is None and hasattr(tool, "metadata"):
            name = tool.metadata.name
        assert isinstance(name, str), f"cannot find the name of {tool!r}"
        return name
