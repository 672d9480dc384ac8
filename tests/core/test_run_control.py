"""The gate's run control: approval, budgets, rate limits, kill switch, run state, retries,
timeouts, fallbacks and output contracts."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pydantic
import pytest

from calltape import Decision, RunStateError, Session
from calltape.limits import Budget, RateLimit
from calltape.policy import ToolCall
from calltape.resilience import Retry
from calltape.session import RunState
from calltape.trace import Approval, CallEnd, CallStart, Kill, RunEnd, read_trace


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "calltape", *args], capture_output=True, text=True, check=False
    )


def records(path: Path) -> list:
    return read_trace(path).records


class AskForPayments:
    def decide(self, call: ToolCall) -> Decision:
        if call.tool == "pay":
            return Decision.ask("payments.ask", "payments need a human")
        return Decision.allow("ok", "fine")


# ------------------------------------------------------------------ approval


def test_callback_approver_sync_and_async_with_who_recorded(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    paid: list[int] = []

    def approve_small(req):
        return (req.args["amount"] < 100, f"amount {req.args['amount']}")

    with Session(trace, policy=AskForPayments(), approver=approve_small) as s:
        s.register("pay", lambda amount: paid.append(amount) or "paid", side_effect="write")
        ok, no = s.call("pay", amount=5), s.call("pay", amount=500)
    assert (ok.status, no.status) == ("ok", "blocked")
    assert paid == [5]
    assert "denied by approve_small: amount 500" in no.decision.reason
    starts = [r for r in records(trace) if isinstance(r, CallStart)]
    assert starts[0].approval["approved"] and starts[0].approval["by"] == "approve_small"

    async def async_approver(req):
        await asyncio.sleep(0)
        return True

    async def main():
        with Session(tmp_path / "a.jsonl", policy=AskForPayments(), approver=async_approver) as s:
            s.register("pay", lambda amount: "paid", side_effect="write")
            return await s.acall("pay", amount=1)

    assert asyncio.run(main()).ok


def test_approver_timeout_and_failure_deny(tmp_path: Path) -> None:
    def slow(req):
        time.sleep(5)
        return True

    def broken(req):
        raise RuntimeError("approval service down")

    for approver, text in ((slow, "timeout: deny"), (broken, "approver failed")):
        with Session(
            tmp_path / f"{text[:3]}.jsonl",
            policy=AskForPayments(),
            approver=approver,
            approval_timeout=0.2,
        ) as s:
            s.register("pay", lambda amount: "paid", side_effect="write")
            r = s.call("pay", amount=1)
        assert r.status == "blocked" and text in r.decision.reason


AGENT = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from calltape import Decision, Session

    class AskForPayments:
        def decide(self, call):
            if call.tool == "pay":
                return Decision.ask("payments.ask", "payments need a human")
            return Decision.allow("ok", "fine")

    trace, ledger = Path(sys.argv[1]), Path(sys.argv[2])
    with Session(trace, policy=AskForPayments(), approver="durable") as s:
        s.register("pay", lambda to: ledger.open("a").write(to + "\\n") and "paid " + to,
                   side_effect="write")
        s.register("lookup", lambda to: "iban of " + to, side_effect="read")
        for to in ("alice", "bob"):
            s.call("lookup", to=to)
            r = s.call("pay", to=to)
            print(to, r.status, r.replayed, r.seq, s.state.value, flush=True)
    """
)


def test_durable_approval_across_a_real_restart(tmp_path: Path) -> None:
    script, trace, ledger = tmp_path / "agent.py", tmp_path / "run.jsonl", tmp_path / "ledger"
    script.write_text(AGENT)
    run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, str(script), str(trace), str(ledger)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")

    first = run()
    assert first[0].startswith("alice blocked False") and first[0].endswith("paused")
    assert not ledger.exists(), "nothing is paid before a human decides"
    seq_alice, seq_bob = int(first[0].split()[3]), int(first[1].split()[3])
    assert records(trace)[-1].status == "paused"
    show = cli("show", str(trace))
    assert "pending_approval" in show.stdout

    assert cli("approve", str(trace), str(seq_alice), "--reason", "invoice 42").returncode == 0
    denied = cli("deny", str(trace), str(seq_bob), "--reason", "unknown payee")
    assert denied.returncode == 0, denied.stderr
    again = cli("approve", str(trace), "9999")
    assert again.returncode == 2 and "not waiting for approval" in again.stderr

    second = run()
    assert second[0].startswith("alice ok False")
    assert second[1].startswith("bob blocked False")
    assert ledger.read_text() == "alice\n", "approved call ran once, denied one never"
    third = run()
    assert third[0].startswith("alice ok True"), "and afterwards it is replayed"
    assert ledger.read_text() == "alice\n"
    approvals = [r for r in records(trace) if isinstance(r, Approval)]
    assert [(a.seq, a.approved, a.reason) for a in approvals] == [
        (seq_alice, True, "invoice 42"),
        (seq_bob, False, "unknown payee"),
    ]
    assert all(a.by for a in approvals)


# ------------------------------------------------------------------ budgets and rate limits


def test_budgets_block_with_the_numbers(tmp_path: Path) -> None:
    budget = Budget(
        max_calls=4,
        max_calls_per_tool={"search": 2},
        max_cost_usd=0.05,
        cost_usd={"llm": lambda args: 0.02 * args["n"]},
    )
    with Session(tmp_path / "t.jsonl", budget=budget) as s:
        s.register("search", lambda q: q, side_effect="read")
        s.register("llm", lambda n: "x", side_effect="network")
        out = [s.call("search", q=str(i)).status for i in range(3)]
        assert out == ["ok", "ok", "blocked"]
        blocked = s.call("search", q="again")
        assert blocked.decision.rule == "budget.max_calls_per_tool.search"
        assert "2 of 2 calls used" in blocked.decision.reason
        assert s.call("llm", n=1).ok
        costly = s.call("llm", n=2)
        assert costly.decision.rule == "budget.max_cost_usd"
        assert "$0.0400" in costly.decision.reason and "$0.0500" in costly.decision.reason
        assert s.call("llm", n=1).ok
        last = s.call("llm", n=0)
        assert last.decision.rule == "budget.max_calls"
        assert "4 of 4 calls used" in last.decision.reason
        assert s.summary().cost_usd == pytest.approx(0.04)


def test_token_budget(tmp_path: Path) -> None:
    with Session(tmp_path / "t.jsonl", budget=Budget(max_tokens=100)) as s:
        s.register("t", lambda: 1, side_effect="read")
        s.add_tokens(60)
        assert s.call("t").ok
        s.add_tokens(50)
        r = s.call("t")
    assert r.decision.rule == "budget.max_tokens" and "110 of 100" in r.decision.reason


def test_replays_do_not_spend_budget(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    for _ in range(2):
        with Session(trace, budget=Budget(max_calls=2)) as s:
            s.register("t", lambda i: i, side_effect="read")
            assert [s.call("t", i=i).status for i in range(2)] == ["ok", "ok"]


def test_rate_limit_blocks_or_waits(tmp_path: Path) -> None:
    with Session(tmp_path / "b.jsonl", rate_limits={"t": RateLimit(2, per=60)}) as s:
        s.register("t", lambda i: i, side_effect="read")
        statuses = [s.call("t", i=i).status for i in range(3)]
        third = s.call("t", i=9)
    assert statuses == ["ok", "ok", "blocked"]
    assert third.decision.rule == "rate_limit.t" and "2 calls per 60s" in third.decision.reason

    limit = RateLimit(2, per=0.2, mode="wait")
    with Session(tmp_path / "w.jsonl", rate_limits={"t": limit}) as s:
        s.register("t", lambda i: i, side_effect="read")
        assert all(s.call("t", i=i).ok for i in range(5))


def spaced(times: list[float], per: float) -> bool:
    """No two executions within ``per`` seconds of each other (a little clock slack allowed)."""
    times = sorted(times)
    return all(b - a >= per * 0.9 for a, b in itertools.pairwise(times))


def test_rate_limit_wait_mode_makes_concurrent_calls_wait_their_turn(tmp_path: Path) -> None:
    ran: list[float] = []

    def t(i: int) -> int:
        ran.append(time.monotonic())
        return i

    limit = RateLimit(1, per=0.15, mode="wait")

    async def main() -> list[str]:
        with Session(tmp_path / "a.jsonl", rate_limits={"t": limit}) as s:
            s.register(t, side_effect="read")
            results = await asyncio.gather(*(s.acall("t", i=i) for i in range(3)))
        return [r.status for r in results]

    assert asyncio.run(main()) == ["ok", "ok", "ok"], "wait mode must wait, never block"
    assert len(ran) == 3 and spaced(ran, 0.15)

    ran.clear()
    statuses: list[str] = []
    with Session(tmp_path / "t.jsonl", rate_limits={"t": limit}) as s:
        s.register(t, side_effect="read")
        workers = [
            threading.Thread(target=lambda i=i: statuses.append(s.call("t", i=i).status))
            for i in range(3)
        ]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    assert statuses == ["ok", "ok", "ok"] and len(ran) == 3 and spaced(ran, 0.15)


def test_rate_limit_wait_gives_back_the_slot_of_a_call_that_did_not_run(tmp_path: Path) -> None:
    class DenyFirst:
        def decide(self, call: ToolCall) -> Decision:
            if call.args["i"] == 0:
                return Decision.deny("no.zero", "not zero")
            return Decision.allow("ok", "fine")

    limit = RateLimit(1, per=60, mode="wait")
    with Session(tmp_path / "t.jsonl", policy=DenyFirst(), rate_limits={"t": limit}) as s:
        s.register("t", lambda i: i, side_effect="read")
        assert s.call("t", i=0).status == "blocked"
        assert s.call("t", i=1).ok, "the blocked call kept the only slot of the minute"


# ------------------------------------------------------------------ kill switch and run state


def test_kill_from_another_thread_lets_the_running_call_finish(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    with Session(trace) as s:

        def long_job() -> str:
            threading.Thread(target=s.kill, args=("operator pressed stop",)).start()
            time.sleep(0.05)
            return "finished"

        s.register(long_job)
        s.register("next_step", lambda: "ran")
        first = s.call("long_job")
        second = s.call("next_step")
        assert s.state is RunState.KILLED
    assert first.ok and first.output == "finished"
    assert second.status == "blocked" and second.decision.rule == "killed"
    assert "operator pressed stop" in second.decision.reason
    end = records(trace)[-1]
    assert isinstance(end, RunEnd) and end.status == "killed"


def test_kill_from_another_process_stops_the_next_call(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    with Session(trace) as s:
        s.register("step", lambda i: i, side_effect="read")
        assert s.call("step", i=1).ok
        p = cli("kill", str(trace), "--reason", "runaway agent")
        assert p.returncode == 0, p.stderr
        time.sleep(0.02)
        r = s.call("step", i=2)
    assert r.status == "blocked" and "runaway agent" in r.decision.reason
    kills = [x for x in records(trace) if isinstance(x, Kill)]
    assert len(kills) == 1 and kills[0].by


def test_illegal_state_transitions_raise(tmp_path: Path) -> None:
    s = Session(tmp_path / "t.jsonl")
    s.kill("stop")
    with pytest.raises(RunStateError, match="cannot go from killed to running"):
        s._transition(RunState.RUNNING)
    s.close()
    assert records(tmp_path / "t.jsonl")[-1].status == "killed"


# ------------------------------------------------------------------ failure handling


def test_hanging_tool_in_a_worker_thread_is_timed_out(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    forever = threading.Event()
    with Session(trace) as s:
        s.register("hang", lambda: forever.wait(), side_effect="read", timeout=0.2)
        r = s.call("hang")
    forever.set()
    assert r.status == "error" and r.error.type == "ToolTimeout"
    assert "did not finish within 0.2s" in r.error.message
    end = [x for x in records(trace) if isinstance(x, CallEnd)][0]
    assert end.error.type == "ToolTimeout"


def test_async_tool_timeout(tmp_path: Path) -> None:
    async def main():
        with Session(tmp_path / "t.jsonl") as s:

            async def sleepy() -> str:
                await asyncio.sleep(10)
                return "late"

            s.register(sleepy, side_effect="read", timeout=0.1)
            return await s.acall("sleepy")

    assert asyncio.run(main()).error.type == "ToolTimeout"


def test_a_hung_sync_tool_timed_out_in_async_code_does_not_keep_the_program_alive(
    tmp_path: Path,
) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, threading
        from calltape import Session

        def hang():
            threading.Event().wait()  # forever

        async def main():
            with Session({str(tmp_path / "t.jsonl")!r}) as s:
                s.register(hang, side_effect="read", timeout=0.2, fallback="hang_too")
                s.register("hang_too", lambda: threading.Event().wait(), timeout=0.2)
                r = await s.acall("hang")
                print(r.status, r.error.type)

        asyncio.run(main())
        print("exited")
        """
    )
    p = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines() == ["error ToolTimeout", "exited"]


def test_retries_are_separate_linked_records_and_shown(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    attempts: list[int] = []

    def flaky(q: str) -> str:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("reset by peer")
        return "result"

    with Session(trace) as s:
        s.register(flaky, side_effect="read", retry=Retry(attempts=4, backoff=0.001))
        r = s.call("flaky", q="x")
    assert r.ok and len(attempts) == 3
    starts = [x for x in records(trace) if isinstance(x, CallStart)]
    assert [x.try_ for x in starts] == [None, 2, 3]
    assert [x.retry_of for x in starts] == [None, starts[0].seq, starts[0].seq]
    shown = cli("show", str(trace)).stdout
    assert f"retry 2 of #{starts[0].seq}" in shown and f"retry 3 of #{starts[0].seq}" in shown
    with Session(trace) as s:  # the logical call replays from its successful attempt
        s.register(flaky, side_effect="read", retry=Retry(attempts=4, backoff=0.001))
        assert s.call("flaky", q="x").replayed


def test_no_retry_for_tools_that_are_not_safe_to_repeat(tmp_path: Path) -> None:
    calls: list[int] = []

    def charge() -> None:
        calls.append(1)
        raise ConnectionError("timeout talking to the bank")

    with Session(tmp_path / "t.jsonl") as s:
        s.register(charge, side_effect="write", retry=Retry(attempts=5, backoff=0))
        assert s.call("charge").status == "error"
    assert len(calls) == 1


def test_fallback_chain_on_error_and_on_block(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"

    class DenyPrimary:
        def decide(self, call: ToolCall) -> Decision:
            if call.tool == "blocked_search":
                return Decision.deny("no_primary", "primary is off limits")
            return Decision.allow("ok", "ok")

    def primary(q: str) -> str:
        raise RuntimeError("primary down")

    with Session(trace, policy=DenyPrimary()) as s:
        s.register("backup", lambda q: f"backup:{q}", side_effect="read")
        s.register(primary, side_effect="read", fallback="backup")
        s.register("blocked_search", lambda q: "never", side_effect="read", fallback="backup")
        a, b = s.call("primary", q="x"), s.call("blocked_search", q="y")
    assert (a.output, b.output) == ("backup:x", "backup:y")
    starts = [x for x in records(trace) if isinstance(x, CallStart)]
    ends = {x.seq: x for x in records(trace) if isinstance(x, CallEnd)}
    primary_seq = next(x.seq for x in starts if x.tool == "primary")
    assert ends[primary_seq].status == "error"
    fb = [x for x in starts if x.fallback_for is not None]
    assert [x.fallback_for for x in fb] == [primary_seq, primary_seq + 2]
    assert f"fallback for #{primary_seq}" in cli("show", str(trace)).stdout


def test_sync_call_falls_back_to_an_async_tool(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"

    async def backup(q: str) -> str:
        await asyncio.sleep(0)
        return f"backup:{q}"

    def primary(q: str) -> str:
        raise RuntimeError("primary down")

    with Session(trace) as s:
        s.register(backup, side_effect="read")
        s.register(primary, side_effect="read", fallback="backup")
        r = s.call("primary", q="x")
    assert (r.status, r.output) == ("ok", "backup:x")
    starts = [x for x in records(trace) if isinstance(x, CallStart)]
    assert [(x.tool, x.fallback_for) for x in starts] == [("primary", None), ("backup", 1)]


class Weather(pydantic.BaseModel):
    city: str
    celsius: float


def test_output_contract_drift_warns_or_blocks(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    with Session(trace) as s:
        s.register("good", lambda: {"city": "Oslo", "celsius": 3.5}, output=Weather)
        s.register("loose", lambda: "it is cold", output=Weather)
        s.register("strict", lambda: "it is cold", output="json", on_drift="block")
        s.register("text", lambda: '{"a": 1}', output="text")
        s.register(
            "schema",
            lambda: {"n": "x"},
            output={"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
        )
        good, loose, strict = s.call("good"), s.call("loose"), s.call("strict")
        text, schema = s.call("text"), s.call("schema")
    assert good.ok and loose.ok and loose.output == "it is cold"
    assert strict.status == "blocked" and strict.decision.rule == "contract_drift"
    assert strict.output is None and "received text" in strict.decision.reason
    ends = {e.seq: e for e in records(trace) if isinstance(e, CallEnd)}
    assert ends[good.seq].contract_drift is None
    assert ends[loose.seq].contract_drift["expected"] == "Weather"
    assert "received JSON" in ends[text.seq].contract_drift["detail"]
    assert "output.n: expected integer" in ends[schema.seq].contract_drift["detail"]
    assert "contract drift" in cli("show", str(trace)).stdout


def test_resuming_a_paused_run_records_that_it_runs_again(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    with Session(trace, policy=AskForPayments(), approver="durable") as s:
        s.register("pay", lambda amount: "paid", side_effect="write")
        pending = s.call("pay", amount=5)
        assert s.state is RunState.PAUSED
    assert f"calltape approve {trace} {pending.seq}'" in pending.decision.reason
    assert f"calltape deny {trace} {pending.seq} --reason" in pending.decision.reason
    assert cli("approve", str(trace), str(pending.seq)).returncode == 0
    with Session(trace, policy=AskForPayments(), approver="durable") as s:
        s.register("pay", lambda amount: "paid", side_effect="write")
        assert s.state is RunState.RUNNING
        assert s.call("pay", amount=5).output == "paid"
    states = [
        (r.type, getattr(r, "state", None) or getattr(r, "status", None))
        for r in records(trace)
        if r.type in ("run_state", "run_end")
    ]
    assert states == [
        ("run_state", "paused"),
        ("run_end", "paused"),
        ("run_state", "running"),
        ("run_end", "completed"),
    ]
