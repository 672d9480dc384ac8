"""The lifecycle through Session.call / acall / run_tool."""

from __future__ import annotations

import asyncio
import io
import threading
from pathlib import Path

import pytest

from calltape import (
    CallResult,
    Decision,
    FingerprintError,
    ReplayMiss,
    RunStateError,
    Session,
    ToolBlocked,
    ToolNotFound,
    TraceError,
    current_call,
)
from calltape.policy import ToolCall, presets
from calltape.trace import CallEnd, CallStart, RunEnd, read_trace


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    return tmp_path / "runs" / "t.jsonl"


def records(path: Path) -> list:
    return read_trace(path).records


def test_ok_call_is_recorded_with_write_ahead_start(trace: Path) -> None:
    seen_on_disk: list[int] = []
    with Session(trace) as s:

        @s.tool(side_effect="read")
        def add(a: int, b: int) -> int:
            # write-ahead: the call_start is on disk before the tool runs
            seen_on_disk.append(sum(1 for r in records(trace) if isinstance(r, CallStart)))
            return a + b

        r = s.call("add", a=2, b=3)
    assert seen_on_disk == [1]
    assert (r.status, r.output, r.replayed, r.seq) == ("ok", 5, False, 1)
    assert r.error is None and r.decision.action == "allow"
    assert len(r.fingerprint) == 64
    recs = records(trace)
    kinds = [type(x).__name__ for x in recs]
    assert kinds == ["RunStart", "CallStart", "CallEnd", "RunEnd"]
    assert recs[1].args == {"a": 2, "b": 3} and recs[1].side_effect == "read"
    assert recs[2].output == 5 and recs[3].status == "completed"


def test_tool_error_is_a_status_not_an_exception(trace: Path) -> None:
    with Session(trace) as s:
        s.register("divide", lambda a, b: a / b)
        r = s.call("divide", a=1, b=0)
    assert r.status == "error"
    assert r.error is not None and r.error.type == "ZeroDivisionError"
    assert isinstance(r.exception, ZeroDivisionError)
    with pytest.raises(ZeroDivisionError):
        r.unwrap()
    end = [x for x in records(trace) if isinstance(x, CallEnd)][0]
    assert end.status == "error" and end.error.type == "ZeroDivisionError"


def test_raise_on_error_raises_the_tool_exception(trace: Path) -> None:
    with Session(trace, raise_on_error=True) as s:
        s.register("divide", lambda a, b: a / b)
        with pytest.raises(ZeroDivisionError):
            s.call("divide", a=1, b=0)


def test_read_only_blocks_write_and_unknown_and_never_runs_them(trace: Path) -> None:
    ran: list[str] = []
    with Session(trace, policy=presets.read_only()) as s:
        s.register("read", lambda: ran.append("read") or "r", side_effect="read")
        s.register("write", lambda: ran.append("write"), side_effect="write")
        s.register("mystery", lambda: ran.append("mystery"))
        assert s.call("read").ok
        w, m = s.call("write"), s.call("mystery")
    assert ran == ["read"]
    assert w.status == "blocked" and w.decision.rule == "read_only.write"
    assert m.status == "blocked" and m.decision.rule == "read_only.unknown"
    assert "fail closed" in m.decision.reason
    assert "read_only.write" in w.block_message
    with pytest.raises(ToolBlocked) as info:
        w.unwrap()
    assert info.value.rule == "read_only.write"
    ends = [x for x in records(trace) if isinstance(x, CallEnd)]
    assert [e.status for e in ends] == ["ok", "blocked", "blocked"]
    assert s.summary().blocked_by_rule == {"read_only.write": 1, "read_only.unknown": 1}


class Exploding:
    def decide(self, call: ToolCall) -> Decision:
        raise RuntimeError("policy backend down")


class WrongType:
    def decide(self, call: ToolCall) -> Decision:
        return "allow"  # type: ignore[return-value]


@pytest.mark.parametrize("policy", [Exploding(), WrongType()])
def test_policy_that_fails_blocks_the_call(trace: Path, policy: object) -> None:
    ran = []
    with Session(trace, policy=policy) as s:  # type: ignore[arg-type]
        s.register("t", lambda: ran.append(1), side_effect="read")
        r = s.call("t")
    assert ran == []
    assert r.status == "blocked" and r.decision.rule == "policy_error"
    assert "fail closed" in r.decision.reason
    end = [x for x in records(trace) if isinstance(x, CallEnd)][0]
    assert end.decision.rule == "policy_error"


def test_ask_without_approver_blocks(trace: Path) -> None:
    class Ask:
        def decide(self, call: ToolCall) -> Decision:
            return Decision.ask("needs_ok", "payments need a human")

    with Session(trace, policy=Ask()) as s:
        s.register("pay", lambda: 1, side_effect="write")
        r = s.call("pay")
    assert r.status == "blocked" and r.decision.action == "ask"
    assert "no approver" in r.decision.reason


def test_resume_replays_ok_calls_and_reruns_errors(trace: Path) -> None:
    runs: list[int] = []

    def flaky(n: int) -> int:
        runs.append(n)
        if n == 2 and runs.count(2) == 1:
            raise OSError("transient")
        return n * 10

    with Session(trace) as s:
        s.register(flaky)
        assert [s.call("flaky", n=i).status for i in (1, 2, 3)] == ["ok", "error", "ok"]
    with Session(trace) as s2:
        s2.register(flaky)
        results = [s2.call("flaky", n=i) for i in (1, 2, 3)]
    assert runs == [1, 2, 3, 2]
    assert [r.replayed for r in results] == [True, False, True]
    assert [r.output for r in results] == [10, 20, 30]
    assert s2.attempt == 2 and s2.run_id == s.run_id
    summary = s2.summary()
    assert (summary.calls, summary.replayed, summary.ok) == (3, 2, 3)
    assert summary.time_saved_s > 0


def test_occurrence_distinguishes_repeated_identical_calls(trace: Path) -> None:
    counter = iter(range(100))
    with Session(trace) as s:
        s.register("tick", lambda: next(counter))
        assert [s.call("tick").output for _ in range(2)] == [0, 1]
    with Session(trace) as s:
        s.register("tick", lambda: next(counter))
        out = [s.call("tick") for _ in range(3)]
    assert [(r.output, r.replayed) for r in out] == [(0, True), (1, True), (2, False)]


def test_replay_off_always_executes(trace: Path) -> None:
    runs = []
    for _ in range(2):
        with Session(trace, replay="off") as s:
            s.register("t", lambda: runs.append(1) or len(runs))
            assert not s.call("t").replayed
    assert len(runs) == 2


def test_strict_replay_executes_nothing_and_misses_loudly(trace: Path) -> None:
    with Session(trace) as s:
        s.register("get", lambda key: f"value of {key}", side_effect="read")
        s.call("get", key="alpha")
        s.call("get", key="beta")
    size = trace.stat().st_size

    def poisoned(key: str) -> str:
        raise AssertionError("strict replay executed a tool")

    s2 = Session(trace, replay="strict")
    s2.register("get", poisoned)
    assert s2.call("get", key="alpha").output == "value of alpha"
    assert s2.call("get", key="beta").replayed
    with pytest.raises(ReplayMiss) as info:
        s2.call("get", key="alphb")
    msg = str(info.value)
    assert "get(key='alphb')" in msg and "seq 1: get(key='alpha')" in msg
    s2.close()
    assert trace.stat().st_size == size


def test_strict_replay_without_a_trace_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no trace to replay"):
        Session(tmp_path / "missing.jsonl", replay="strict")


def test_fingerprint_error_means_the_tool_did_not_run(trace: Path) -> None:
    ran = []
    with Session(trace) as s:
        s.register("save", lambda fh: ran.append(fh))
        with pytest.raises(FingerprintError) as info:
            s.call("save", fh=io.BytesIO(b"x"))
    assert ran == [] and info.value.path == "args.fh"
    assert not [x for x in records(trace) if isinstance(x, CallStart)]


def test_context_manager_marks_failed_runs(trace: Path) -> None:
    with pytest.raises(KeyError), Session(trace):
        raise KeyError("boom")
    end = records(trace)[-1]
    assert isinstance(end, RunEnd) and end.status == "failed" and "KeyError" in end.reason


def test_closed_session_refuses_calls(trace: Path) -> None:
    s = Session(trace)
    s.register("t", lambda: 1)
    s.close()
    with pytest.raises(RunStateError):
        s.call("t")


def test_unknown_tool_and_bad_registration(trace: Path) -> None:
    with Session(trace) as s:
        s.register("known", lambda: 1)
        with pytest.raises(ToolNotFound, match="unknown tool 'nope'.*known"):
            s.call("nope")
        with pytest.raises(ValueError, match="unknown side_effect 'wrte'"):
            s.register("w", lambda: 1, side_effect="wrte")
        with pytest.raises(ValueError, match="lambda has no name"):
            s.register(lambda: 1)
        with pytest.raises(ValueError, match="already registered"):
            s.register("known", lambda: 2)


def test_decorator_forms_and_metadata(trace: Path) -> None:
    with Session(trace) as s:

        @s.tool
        def plain(x: int) -> int:
            """Plain tool."""
            return x

        @s.tool(name="renamed", side_effect="network", idempotent=True, description="D")
        def other(x: int) -> int:
            return x

        assert plain(3) == 3  # the function itself is returned unchanged
        assert list(s.tools) == ["plain", "renamed"]
        assert s.tools["plain"].description == "Plain tool."
        spec = s.tools["renamed"]
        assert (spec.side_effect, spec.idempotent, spec.description) == ("network", True, "D")
        s.declare("third_party_search", side_effect="read")
        assert s.spec_for("third_party_search").side_effect == "read"
        assert "third_party_search" not in s.tools
        assert s.spec_for("never_seen").side_effect == "unknown"


def test_async_tools_and_sync_tools_through_acall(trace: Path) -> None:
    seen_threads: list[str] = []

    async def main() -> list[CallResult]:
        with Session(trace) as s:

            @s.tool(side_effect="read")
            async def fetch(n: int) -> int:
                await asyncio.sleep(0)
                return n + 1

            @s.tool(side_effect="read")
            def blocking(n: int) -> int:
                seen_threads.append(threading.current_thread().name)
                return n * 2

            return await asyncio.gather(s.acall("fetch", n=1), s.acall("blocking", n=4))

    a, b = asyncio.run(main())
    assert (a.output, b.output) == (2, 8)
    assert seen_threads and seen_threads[0] != "MainThread"


def test_sync_call_of_async_tool(trace: Path) -> None:
    with Session(trace) as s:

        @s.tool
        async def fetch(n: int) -> int:
            return n + 1

        assert s.call("fetch", n=1).output == 2


def test_sync_call_of_async_tool_from_inside_a_running_loop(trace: Path) -> None:
    # e.g. a sync framework callback running on the event loop's thread
    seen: list[str | None] = []

    async def fetch(n: int) -> int:
        ctx = current_call()
        seen.append(ctx.tool if ctx else None)
        await asyncio.sleep(0)
        return n + 1

    async def main() -> CallResult:
        with Session(trace) as s:
            s.register(fetch, side_effect="read")
            return s.call("fetch", n=1)

    result = asyncio.run(main())
    assert (result.status, result.output) == ("ok", 2)
    assert seen == ["fetch"], "current_call() must work in the worker loop"
    ends = [x for x in records(trace) if isinstance(x, CallEnd)]
    assert [(x.status, x.output) for x in ends] == [("ok", 2)]


def test_current_call_inside_tool_and_idempotency_key_is_stable(trace: Path) -> None:
    keys: list[str] = []

    def pay(amount: int) -> str:
        ctx = current_call()
        assert ctx is not None and ctx.tool == "pay"
        keys.append(ctx.idempotency_key)
        raise RuntimeError("gateway timeout")  # errors are re-run on resume

    for _ in range(2):
        with Session(trace) as s:
            s.register(pay, side_effect="write")
            s.call("pay", amount=5)
    assert current_call() is None
    assert len(keys) == 2 and keys[0] == keys[1]
    assert keys[0].startswith("ct-")
    # stored in the record, so an operator can match a trace entry to the API's dedup log
    starts = [x for x in records(trace) if isinstance(x, CallStart)]
    assert [x.ikey for x in starts] == keys


def test_a_second_call_with_the_same_arguments_has_its_own_idempotency_key(trace: Path) -> None:
    with Session(trace) as s:
        s.register("pay", lambda amount: current_call().idempotency_key, side_effect="write")  # type: ignore[union-attr]
        first, second = s.call("pay", amount=5), s.call("pay", amount=5)
    assert first.output != second.output
    assert first.fingerprint == second.fingerprint, "the key is not part of the fingerprint"
    starts = [x for x in records(trace) if isinstance(x, CallStart)]
    assert [x.ikey for x in starts] == [first.output, second.output]


def test_threads_share_a_session_without_losing_records(trace: Path) -> None:
    with Session(trace) as s:
        s.register("echo", lambda i: i, side_effect="read")

        def worker(base: int) -> None:
            for i in range(200):
                assert s.call("echo", i=base + i).ok

        threads = [threading.Thread(target=worker, args=(k * 1000,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    ends = [x for x in records(trace) if isinstance(x, CallEnd)]
    starts = [x for x in records(trace) if isinstance(x, CallStart)]
    assert len(ends) == len(starts) == 800
    assert sorted(x.seq for x in starts) == list(range(1, 801))


def test_reentrant_layers_record_once(trace: Path) -> None:
    with Session(trace) as s:
        inner = lambda: s.run_tool("t", {"x": 1}, lambda: 42).output  # noqa: E731
        r = s.run_tool("t", {"x": 1}, inner)
    assert r.output == 42
    assert len([x for x in records(trace) if isinstance(x, CallEnd)]) == 1


def test_unserializable_output_is_recorded_as_text_and_replayed_as_text(trace: Path) -> None:
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    with Session(trace) as s:
        s.register("make", lambda: Thing())
        assert isinstance(s.call("make").output, Thing)
    end = [x for x in records(trace) if isinstance(x, CallEnd)][0]
    assert end.output == "a thing" and end.output_lossy
    with Session(trace) as s:
        s.register("make", lambda: Thing())
        assert s.call("make").output == "a thing"


def test_reopening_a_trace_with_a_torn_tail_moves_it_aside(trace: Path) -> None:
    with Session(trace) as s:
        s.register("t", lambda: 1)
        s.call("t")
    with trace.open("ab") as f:
        f.write(b'{"type":"call_start","seq":9')
    with Session(trace) as s:
        s.register("t", lambda: 1)
        assert s.call("t").replayed
    result = read_trace(trace)
    assert result.torn_line is None
    backups = list(trace.parent.glob("t.jsonl.torn-*"))
    assert len(backups) == 1 and backups[0].read_bytes().startswith(b'{"type":"call_start"')


def test_store_failure_means_the_tool_does_not_run(tmp_path: Path) -> None:
    ran = []
    s = Session(tmp_path / "t.jsonl")
    s.register("t", lambda: ran.append(1))
    s._writer._fd = -1  # simulate a store that fails (EBADF) on the next write
    with pytest.raises(TraceError, match="was not executed"):
        s.call("t")
    assert ran == []


def test_large_outputs_go_to_blobs_and_replay_restores_them(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    big = {"rows": [f"row {i}" for i in range(5000)]}
    with Session(trace, blob_threshold=1024) as s:
        s.register("dump", lambda: big, side_effect="read")
        assert s.call("dump").output == big
    assert trace.stat().st_size < 4096, "the trace stays small"
    blobs = list((tmp_path / "t.jsonl.blobs").iterdir())
    assert len(blobs) == 1
    with Session(trace, blob_threshold=1024) as s:
        s.register("dump", lambda: {"rows": []}, side_effect="read")
        r = s.call("dump")
    assert r.replayed and r.output == big


def test_secrets_are_redacted_before_disk_but_fingerprint_uses_real_args(trace: Path) -> None:
    secret = "sk-live-0123456789abcdefghijkl"

    def call_api(api_key: str, query: str) -> str:
        raise PermissionError(f"key {secret} rejected")

    def echo(text: str) -> dict:
        return {"reply": text, "password": "hunter2"}

    with Session(trace) as s:
        s.register(call_api)
        s.register(echo)
        r = s.call("call_api", api_key=secret, query="q")
        assert secret in r.error.message  # in memory the caller still sees the real error
        e = s.call("echo", text=f"Bearer {secret}")
    raw = trace.read_bytes()
    assert secret.encode() not in raw and b"hunter2" not in raw
    assert b"[REDACTED]" in raw
    with Session(trace) as s:
        s.register(echo)
        s.register(call_api)
        again = s.call("echo", text=f"Bearer {secret}")
    assert again.replayed and again.fingerprint == e.fingerprint


def test_redaction_can_be_extended_and_turned_off(tmp_path: Path) -> None:
    t1, t2 = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    with Session(t1, redact=["account_no"]) as s:
        s.register("pay", lambda account_no, amount: "ok")
        s.call("pay", account_no="DE89370400440532013000", amount=5)
    assert b"DE89370400440532013000" not in t1.read_bytes()
    with Session(t2, redact=False) as s:
        s.register("login", lambda password: "ok")
        s.call("login", password="hunter2")
    assert b"hunter2" in t2.read_bytes()


def test_the_fast_result_constructor_builds_the_same_frozen_result() -> None:
    import dataclasses

    from calltape.result import ErrorInfo, make_result

    d = Decision.deny("rule", "why")
    args = ("t", "error", None, ErrorInfo("E", "m"), d, False, "fp", 3, 0.5, "id-1", None)
    fast, slow = make_result(*args), CallResult(*args)
    assert fast == slow and repr(fast) == repr(slow)
    assert [getattr(fast, f.name) for f in dataclasses.fields(CallResult)] == list(args)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.status = "ok"  # type: ignore[misc]


def test_tool_spec_knows_once_whether_its_function_is_async() -> None:
    import dataclasses

    from calltape import ToolSpec

    async def a() -> None: ...

    spec = ToolSpec("x", lambda: None)
    assert not spec.is_async
    assert dataclasses.replace(spec, fn=a).is_async
    assert ToolSpec("y").is_async is False


def test_strict_replay_miss_message_shows_redacted_arguments(tmp_path: Path) -> None:
    trace = tmp_path / "run.jsonl"
    with Session(trace) as s:
        s.register("login", lambda user, password: "ok", side_effect="read")
        assert s.call("login", user="ann", password="hunter2-secret").ok
    with Session(trace, replay="strict") as s:
        s.register("login", lambda user, password: "ok", side_effect="read")
        assert s.call("login", user="ann", password="hunter2-secret").replayed
        with pytest.raises(ReplayMiss) as info:
            s.call("login", user="bob", password="hunter2-secret")
    assert "hunter2-secret" not in str(info.value)
    assert "bob" in str(info.value)
    assert info.value.tool == "login"


def test_calltape_errors_pickle_with_their_attributes() -> None:
    import pickle

    from calltape.errors import TraceCorrupt

    miss = ReplayMiss("t", {"a": 1}, ["t(a=2)"], "run.jsonl")
    for err in (
        miss,
        FingerprintError("args.f", "TextIOWrapper"),
        TraceCorrupt("run.jsonl", 3, "malformed record"),
        ToolBlocked("blocked", tool="t", rule="r", reason="why"),
        ToolNotFound("x", ["a"]),
    ):
        back = pickle.loads(pickle.dumps(err))
        assert type(back) is type(err) and str(back) == str(err)
        assert back.__dict__ == err.__dict__
    assert miss.arguments == {"a": 1} and miss.nearest == ["t(a=2)"]
