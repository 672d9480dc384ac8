"""The measurements. Each job runs in its own subprocess (see worker.py) inside a fresh temp dir.

A job is ``fn(tmp: Path, p: dict) -> dict`` and imports only the system it measures, so the
systems never share an interpreter, a heap or a file.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _util import (
    QuietGC,
    batch,
    count_lines,
    count_matching,
    ns,
    peak_rss_mb,
    per_call,
    read_lines,
    rss_mb,
    summarize,
    timer_overhead_ns,
)

JOBS: dict[str, Callable[[Path, dict[str, Any]], dict[str, Any]]] = {}


def job(name: str) -> Callable[[Callable[..., dict[str, Any]]], Callable[..., dict[str, Any]]]:
    def deco(fn: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        JOBS[name] = fn
        return fn

    return deco


def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


# =========================================================================== 1. overhead per call


@job("w1.raw")
def w1_raw(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    n = p["n"]
    f = add
    with QuietGC():
        samples = per_call(lambda i: f(a=i, b=2), n)
    with QuietGC():
        mean, _ = batch(lambda i: f(a=i, b=2), n)
    return {"stats": summarize(samples, batch_mean_ns=mean), "timer_ns": timer_overhead_ns()}


def _calltape_session(path: Path, **kw: Any) -> Any:
    from calltape import Session

    s = Session(path, **kw)
    s.register(add, side_effect="read")
    return s


def _calltape_versions() -> dict[str, Any]:
    import calltape

    return {"calltape": calltape.__version__}


@job("w1.calltape")
def w1_calltape(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    n = p["n"]
    path = tmp / "t.jsonl"
    s = _calltape_session(path)
    call = s.call
    for i in range(200):  # warm-up, recorded like any call
        call("add", a=-i, b=2)
    last: list[Any] = [None]

    def one(i: int) -> None:
        last[0] = call("add", a=i, b=2)

    with QuietGC():
        samples = per_call(one, n)
    assert last[0].status == "ok" and last[0].output == n - 1 + 2, last[0]
    with QuietGC():
        mean, _ = batch(lambda i: call("add", a=i + n, b=2), n)
    s.close()
    calls = 200 + 2 * n
    ends = count_matching(path, b'"call_end"')
    return {
        "stats": summarize(samples, batch_mean_ns=mean),
        "calls": calls,
        "records_on_disk": count_lines(path),
        "records_expected": 2 * calls + 2,
        "call_end_on_disk": ends,
        "bytes_per_call": path.stat().st_size / calls,
        **_calltape_versions(),
    }


@job("w1.fsync")
def w1_fsync(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    """calltape durability='fsync' against a bare write+fsync of the same bytes, interleaved in
    blocks so both see the same disk weather."""
    n, block = p["n"], p["block"]
    sample_path = tmp / "sample.jsonl"
    s0 = _calltape_session(sample_path)
    for i in range(64):
        s0.call("add", a=i, b=2)
    s0.close()
    lines = read_lines(sample_path, b'"call_')
    pairs = [(lines[k], lines[k + 1]) for k in range(0, len(lines) - 1, 2)]
    s = _calltape_session(tmp / "fsync.jsonl", durability="fsync")
    call = s.call
    fd2 = os.open(tmp / "bare2.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    fd1 = os.open(tmp / "bare1.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    write, fsync = os.write, os.fsync

    def ct(i: int) -> None:
        call("add", a=i, b=2)

    def bare2(i: int) -> None:  # the same protocol: call_start durable, then call_end durable
        a, b = pairs[i % len(pairs)]
        write(fd2, a)
        fsync(fd2)
        write(fd2, b)
        fsync(fd2)

    def bare1(i: int) -> None:  # one fsync per call: the floor if call_start were not synced
        a, b = pairs[i % len(pairs)]
        write(fd1, a + b)
        fsync(fd1)

    out: dict[str, list[int]] = {"calltape": [], "bare2": [], "bare1": []}
    fns = {"calltape": ct, "bare2": bare2, "bare1": bare1}
    order = list(fns)
    done = 0
    k = 0
    while done < n:
        for name in order[k % 3 :] + order[: k % 3]:
            out[name].extend(per_call(lambda i, f=fns[name], d=done: f(d + i), block))
        done += block
        k += 1
    s.close()
    os.close(fd1)
    os.close(fd2)
    return {
        "calltape": summarize(out["calltape"]),
        "bare2": summarize(out["bare2"]),
        "bare1": summarize(out["bare1"]),
        "bytes_per_call": sum(len(a) + len(b) for a, b in pairs) / len(pairs),
        "records_on_disk": count_lines(tmp / "fsync.jsonl"),
        "records_expected": 2 * n + 2,
    }


def _failcore_session(tmp: Path, path: Path) -> Any:
    from failcore.api.session import Session

    s = Session(trace=str(path), sandbox=str(tmp / "sandbox"), auto_ingest=False)
    s.register("add", add)
    return s


def _failcore_version() -> dict[str, Any]:
    from importlib.metadata import version

    return {"failcore": version("failcore")}


@job("w1.failcore")
def w1_failcore(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    n = p["n"]
    path = tmp / "fc.jsonl"
    s = _failcore_session(tmp, path)
    call = s.call
    for i in range(20):
        call("add", a=-i, b=2)
    last: list[Any] = [None]

    def one(i: int) -> None:
        last[0] = call("add", a=i, b=2)

    with QuietGC():
        samples = per_call(one, n, p["budget_s"])
    r = last[0]
    ok = str(getattr(r.status, "value", r.status)).lower() == "ok"
    with QuietGC():
        mean, nb = batch(lambda i: call("add", a=i + n, b=2), n, p["batch_budget_s"])
    s.close()
    calls = 20 + len(samples) + nb
    results = count_matching(path, b'"type":"RESULT"')
    return {
        "stats": summarize(samples, batch_mean_ns=mean),
        "last_ok": ok,
        "last_output": repr(getattr(r.output, "value", r.output)),
        "calls": calls,
        "records_on_disk": count_lines(path),
        "records_expected": 2 * calls,
        "call_end_on_disk": results,
        "bytes_per_call": path.stat().st_size / calls,
        **_failcore_version(),
    }


def _agentledger(tmp: Path, side_effect: str = "none") -> tuple[Any, dict[str, int]]:
    from agentledger.runtime import Runtime
    from agentledger.tools import tool

    rt = Runtime.local(tmp / "al")
    executed = {"n": 0}

    @tool(name="add", side_effect=side_effect)
    def add_tool(args: dict[str, Any]) -> dict[str, int]:
        executed["n"] += 1
        return {"sum": args["a"] + args["b"]}

    rt.register_tool(add_tool)
    return rt, executed


def _agentledger_version() -> dict[str, Any]:
    from importlib.metadata import version

    return {"agentledger-runtime": version("agentledger-runtime")}


def _al_counts(db: Path) -> dict[str, Any]:
    con = sqlite3.connect(db)
    try:
        ev = dict(con.execute("select type, count(*) from events group by type").fetchall())
        ledger = con.execute("select count(*) from tool_ledger").fetchone()[0]
        sync = con.execute("pragma synchronous").fetchone()[0]
        jm = con.execute("pragma journal_mode").fetchone()[0]
    finally:
        con.close()
    return {"events": ev, "ledger_rows": ledger, "sqlite_synchronous": sync, "journal_mode": jm}


@job("w1.agentledger")
def w1_agentledger(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    from agentledger.runtime import SimulatedCrash

    n = p["n"]
    rt, executed = _agentledger(tmp)
    res: dict[str, Any] = {}

    async def agent(ctx: Any, state: Any) -> None:
        for i in range(5):
            await ctx.call_tool("add", {"a": -i, "b": 2})
        samples: list[int] = []
        deadline = ns() + int(p["budget_s"] * 1e9)
        last = None
        with QuietGC():
            for i in range(n):
                t0 = ns()
                last = await ctx.call_tool("add", {"a": i, "b": 2})
                samples.append(ns() - t0)
                if ns() > deadline:
                    break
        res["samples"] = samples
        res["last"] = last
        done = 0
        total = 0
        deadline = ns() + int(p["batch_budget_s"] * 1e9)
        while done < n and ns() < deadline:
            t0 = ns()
            for i in range(20):
                await ctx.call_tool("add", {"a": n + done + i, "b": 2})
            total += ns() - t0
            done += 20
        res["batch"] = (total / max(done, 1), done)
        raise SimulatedCrash("end of benchmark step")  # leaves the run retryable; not measured

    run_id, _ = rt.create_run(retry_policy={"max_attempts": 3})
    asyncio.run(rt.run_once(agent, run_id=run_id))
    rt.close()
    samples = res["samples"]
    calls = 5 + len(samples) + res["batch"][1]
    counts = _al_counts(tmp / "al" / "state.db")
    return {
        "stats": summarize(samples, batch_mean_ns=res["batch"][0]),
        "last_output": repr(res["last"]),
        "calls": calls,
        "executed": executed["n"],
        "records_on_disk": sum(counts["events"].values()),
        "call_end_on_disk": counts["events"].get("tool_call_completed", 0),
        "events_per_call": sum(counts["events"].values()) / calls,
        "blob_files": sum(1 for _ in (tmp / "al" / "blobs").rglob("*.json")),
        **counts,
        **_agentledger_version(),
    }


def _agt() -> tuple[Any, Any, Any, Any]:
    from agent_os.audit_logger import GovernanceAuditLogger, JsonlFileBackend
    from agent_os.integrations.base import GovernancePolicy, PolicyInterceptor, ToolCallRequest

    return (
        GovernanceAuditLogger,
        JsonlFileBackend,
        (GovernancePolicy, PolicyInterceptor),
        ToolCallRequest,
    )


def _agt_version() -> dict[str, Any]:
    from importlib.metadata import version

    return {
        "agent-governance-toolkit-core": version("agent-governance-toolkit-core"),
        "agent-governance-toolkit-integrations": version("agent-governance-toolkit-integrations"),
    }


def _agt_caller(path: Path) -> tuple[Callable[[int], Any], Any, Any]:
    logger_cls, backend_cls, (policy_cls, interceptor_cls), req = _agt()
    interceptor = interceptor_cls(policy_cls())
    backend = backend_cls(path)
    audit = logger_cls()
    audit.add_backend(backend)
    intercept, log_decision = interceptor.intercept, audit.log_decision
    perf = time.perf_counter

    def one(i: int) -> Any:
        args = {"a": i, "b": 2}
        t0 = perf()
        verdict = intercept(req(tool_name="add", arguments=args, call_id=str(i), agent_id="bench"))
        if not verdict.allowed:
            log_decision("bench", "add", "deny", verdict.reason or "", (perf() - t0) * 1000)
            return None
        out = add(**args)
        log_decision(
            "bench", "add", "allow", "", (perf() - t0) * 1000, arguments=args, result=out, call_id=i
        )
        return out

    return one, audit, backend


@job("w1.agt")
def w1_agt(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    n = p["n"]
    path = tmp / "audit.jsonl"
    one, audit, backend = _agt_caller(path)
    for i in range(20):
        one(-i)
    with QuietGC():
        samples = per_call(one, n)
    with QuietGC():
        mean, _ = batch(lambda i: one(i + n), n)
    calls = 20 + 2 * n
    at_os_before_flush = count_lines(path)
    # how many of 200 further calls moved the file size the OS sees (a write reached the OS)
    moved = 0
    size = path.stat().st_size
    for i in range(200):
        one(10**6 + i)
        s2 = os.stat(path).st_size
        moved += s2 != size
        size = s2
    calls += 200
    audit.flush()
    backend.close()
    on_disk = count_lines(path)
    return {
        "stats": summarize(samples, batch_mean_ns=mean),
        "calls": calls,
        "records_on_disk": on_disk,
        "records_expected": calls,
        "call_end_on_disk": on_disk,
        "records_at_os_before_flush": at_os_before_flush,
        "records_buffered_before_flush": calls - 200 - at_os_before_flush,
        "writes_reaching_os_per_200_calls": moved,
        "bytes_per_call": path.stat().st_size / calls,
        **_agt_version(),
    }


# --------------------------------------------------------------------------- crash: kill -9 after N


@job("crash.calltape")
def crash_calltape(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    s = _calltape_session(tmp / "t.jsonl")
    for i in range(p["n"]):
        s.call("add", a=i, b=2)
    os._exit(137)


@job("crash.failcore")
def crash_failcore(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    s = _failcore_session(tmp, tmp / "fc.jsonl")
    for i in range(p["n"]):
        s.call("add", a=i, b=2)
    os._exit(137)


@job("crash.agentledger")
def crash_agentledger(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    rt, _ = _agentledger(tmp)

    async def agent(ctx: Any, state: Any) -> None:
        for i in range(p["n"]):
            await ctx.call_tool("add", {"a": i, "b": 2})
        os._exit(137)

    run_id, _ = rt.create_run()
    asyncio.run(rt.run_once(agent, run_id=run_id))
    os._exit(1)


@job("crash.agt")
def crash_agt(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    one, _, _ = _agt_caller(tmp / "audit.jsonl")
    for i in range(p["n"]):
        one(i)
    os._exit(137)


# =========================================================================== 2. replay / resume hit


@job("w2.calltape")
def w2_calltape(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    from calltape import Session

    n = p["n"]
    path = tmp / "t.jsonl"
    executed = {"n": 0}

    def add_counted(a: int, b: int) -> int:
        executed["n"] += 1
        return a + b

    def session(**kw: Any) -> Any:
        s = Session(path, **kw)
        s.register("add", add_counted, side_effect="read")
        return s

    s = session()
    for i in range(n):
        s.call("add", a=i, b=2)
    s.close()
    recorded = executed["n"]

    t0 = ns()
    s = session(replay="resume")
    open_ms = (ns() - t0) / 1e6
    call = s.call
    results: list[Any] = []

    def one(i: int) -> None:
        results.append(call("add", a=i, b=2))

    with QuietGC():
        samples = per_call(one, n)
    s.close()
    hits = sum(1 for i, r in enumerate(results) if r.replayed and r.output == i + 2)
    exec_during_replay = executed["n"] - recorded

    s = session(replay="resume")
    call = s.call
    with QuietGC():
        mean, _ = batch(lambda i: call("add", a=i, b=2), n)
    s.close()
    s = session(replay="strict")
    call = s.call
    strict_res: list[Any] = []
    with QuietGC():
        strict = per_call(lambda i: strict_res.append(call("add", a=i, b=2)), n)
    s.close()
    return {
        "stats": summarize(samples, batch_mean_ns=mean),
        "strict": summarize(strict),
        "recorded": recorded,
        "hits": hits,
        "strict_hits": sum(1 for r in strict_res if r.replayed),
        "executed_during_replay": executed["n"] - recorded,
        "exec_during_first_replay": exec_during_replay,
        "open_ms_10k": open_ms,
    }


@job("w2.failcore")
def w2_failcore(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    from failcore.core.replay.fingerprint import compute_fingerprint
    from failcore.core.replay.replayer import Replayer, ReplayMode

    n = p["n"]
    path = tmp / "fc.jsonl"
    s = _failcore_session(tmp, path)
    deadline = time.monotonic() + p["record_budget_s"]
    recorded = 0
    for i in range(n):
        s.call("add", a=i, b=2)
        recorded += 1
        if time.monotonic() > deadline:
            break
    s.close()
    t0 = ns()
    rp = Replayer(str(path), mode=ReplayMode.MOCK)
    load_ms = (ns() - t0) / 1e6
    outcomes: dict[str, int] = {}
    msgs: dict[str, int] = {}

    def one(i: int) -> None:
        params = {"a": i, "b": 2}
        fp = compute_fingerprint("add", params)
        r = rp.replay_step(f"s{i + 1:04d}", "add", params, fp)
        k = str(getattr(r.hit_type, "value", r.hit_type))
        outcomes[k] = outcomes.get(k, 0) + 1
        msgs[str(r.message)] = msgs.get(str(r.message), 0) + 1

    with QuietGC():
        samples = per_call(one, recorded)
    return {
        "stats": summarize(samples),
        "recorded": recorded,
        "hits": outcomes.get("HIT", 0),
        "outcomes": outcomes,
        "miss_reasons": msgs,
        "indexed_fingerprints": len(rp.loader.events_by_fingerprint),
        "load_ms": load_ms,
    }


@job("w2.agentledger")
def w2_agentledger(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    from agentledger.runtime import SimulatedCrash

    n = p["n"]
    rt, executed = _agentledger(tmp, side_effect="write")  # managed: goes through the ledger
    state: dict[str, Any] = {"recorded": 0}

    async def record(ctx: Any, st: Any) -> None:
        deadline = time.monotonic() + p["record_budget_s"]
        for i in range(n):
            await ctx.call_tool("add", {"a": i, "b": 2})
            state["recorded"] += 1
            if time.monotonic() > deadline:
                break
        raise SimulatedCrash("crash after the side effects")

    outs: list[Any] = []
    samples: list[int] = []

    async def resume(ctx: Any, st: Any) -> None:
        with QuietGC():
            for i in range(state["recorded"]):
                t0 = ns()
                outs.append(await ctx.call_tool("add", {"a": i, "b": 2}))
                samples.append(ns() - t0)

    run_id, _ = rt.create_run(retry_policy={"max_attempts": 3})
    asyncio.run(rt.run_once(record, run_id=run_id))
    before = executed["n"]
    asyncio.run(rt.run_once(resume, run_id=run_id))
    rt.close()
    counts = _al_counts(tmp / "al" / "state.db")
    con = sqlite3.connect(tmp / "al" / "state.db")
    replayed = con.execute(
        "select count(*) from events where type='tool_call_completed' and payload_ref like '%'"
    ).fetchone()[0]
    con.close()
    ok = sum(1 for i, o in enumerate(outs) if o == {"sum": i + 2})
    return {
        "stats": summarize(samples),
        "recorded": state["recorded"],
        "hits": ok if executed["n"] == before else 0,
        "executed_during_replay": executed["n"] - before,
        "correct_outputs": ok,
        "completed_events": replayed,
        **counts,
    }


# =========================================================================== 3. open / stream


@job("w3.calltape.gen")
def w3_calltape_gen(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    out = Path(p["path"])
    calls = (p["records"] - 2) // 2
    t0 = ns()
    s = _calltape_session(out)
    call = s.call
    for i in range(calls):
        call("add", a=i, b=2)
    s.close()
    return {"records": count_lines(out), "bytes": out.stat().st_size, "gen_s": (ns() - t0) / 1e9}


@job("w3.calltape.open")
def w3_calltape_open(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    from calltape import Session
    from calltape.trace import TraceIndex

    src = Path(p["path"])
    base = rss_mb()
    times = []
    for _ in range(3):
        t0 = ns()
        idx = TraceIndex.build(src)
        times.append(ns() - t0)
        replayable = len(idx.ok)
        del idx
    copy = tmp / "copy.jsonl"
    shutil.copyfile(src, copy)
    t0 = ns()
    s = Session(copy)
    open_ns = ns() - t0
    s.close()
    times.sort()
    return {
        "index_s": times[1] / 1e9,
        "index_min_s": times[0] / 1e9,
        "session_open_s": open_ns / 1e9,
        "replayable": replayable,
        "rss_base_mb": base,
        "peak_rss_mb": peak_rss_mb(),
    }


@job("w3.calltape.stream")
def w3_calltape_stream(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    from calltape import trace

    path = Path(p["path"])
    mode = p["mode"]
    base = rss_mb()
    n = 0
    t0 = ns()
    if mode == "iter_records":
        for _ in trace.iter_records(path):
            n += 1
    elif mode == "iter_raw":
        for _ in trace.iter_raw(path):
            n += 1
    elif mode == "index":
        n = trace.TraceIndex.build(path).records
    dt = (ns() - t0) / 1e9
    return {
        "records": n,
        "seconds": dt,
        "us_per_record": dt / max(n, 1) * 1e6,
        "rss_base_mb": base,
        "peak_rss_mb": peak_rss_mb(),
        "peak_delta_mb": peak_rss_mb() - base,
    }


@job("w3.failcore.gen")
def w3_failcore_gen(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    """A real failcore trace of 2 calls is the template; the rest are copies with their own step
    ids, seqs and parameter hashes (writing 100k records through failcore would take ~50 s)."""
    src = tmp / "tpl.jsonl"
    s = _failcore_session(tmp, src)
    s.call("add", a=1, b=2)
    s.call("add", a=2, b=2)
    s.close()
    import orjson  # a calltape dependency: only speeds up writing the synthetic trace

    tpl = [json.loads(line) for line in read_lines(src)]
    attempt = next(e for e in tpl if e["event"]["type"] == "ATTEMPT")
    result = next(e for e in tpl if e["event"]["type"] == "RESULT")
    tpl_a, tpl_r = orjson.dumps(attempt), orjson.dumps(result)
    out = Path(p["path"])
    rnd = random.Random(7)
    seq = 0
    with open(out, "wb") as f:
        for step in range(p["records"] // 2):
            sid = f"s{step + 1:04d}"
            h = f"sha256:{rnd.getrandbits(64):016x}"
            a = orjson.loads(tpl_a)
            seq += 1
            a["seq"] = seq
            st = a["event"]["step"]
            st["id"] = sid
            st["fingerprint"]["id"] = f"add#{h}"
            st["fingerprint"]["inputs"]["params_hash"] = h
            a["event"]["data"]["payload"]["input"]["summary"] = {"a": step, "b": 2}
            a["event"]["data"]["payload"]["input"]["hash"] = h
            r = orjson.loads(tpl_r)
            seq += 1
            r["seq"] = seq
            r["event"]["step"]["id"] = sid
            r["event"]["data"]["payload"]["output"]["summary"] = step + 2
            f.write(orjson.dumps(a) + b"\n")
            f.write(orjson.dumps(r) + b"\n")
    return {"records": count_lines(out), "bytes": out.stat().st_size}


@job("w3.failcore.open")
def w3_failcore_open(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    from failcore.core.replay.loader import TraceLoader

    base = rss_mb()
    t0 = ns()
    loader = TraceLoader(p["path"])
    dt = (ns() - t0) / 1e9
    return {
        "index_s": dt,
        "records": len(loader.events),
        "indexed_steps": len(loader.steps_by_id),
        "rss_base_mb": base,
        "peak_rss_mb": peak_rss_mb(),
        "peak_delta_mb": peak_rss_mb() - base,
    }


@job("w3.agentledger.gen")
def w3_agentledger_gen(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    """A real AgentLedger run of 3 managed calls is the template; its event rows are copied with
    fresh ids and seqs up to the record count (through the API: ~20 ms per call)."""
    from agentledger.ids import new_id
    from agentledger.runtime import SimulatedCrash

    root = Path(p["root"])
    from agentledger.runtime import Runtime
    from agentledger.tools import tool

    rt = Runtime.local(root)

    @tool(name="add", side_effect="write")
    def add_tool(args: dict[str, Any]) -> dict[str, int]:
        return {"sum": args["a"] + args["b"]}

    rt.register_tool(add_tool)

    async def agent(ctx: Any, st: Any) -> None:
        for i in range(3):
            await ctx.call_tool("add", {"a": i, "b": 2})
        raise SimulatedCrash("template")

    run_id, _ = rt.create_run(retry_policy={"max_attempts": 3})
    asyncio.run(rt.run_once(agent, run_id=run_id))
    con = rt.store.conn
    cols = [r[1] for r in con.execute("pragma table_info(events)")]
    rows = [dict(zip(cols, r, strict=True)) for r in con.execute("select * from events")]
    tool_rows = [r for r in rows if r["type"].startswith("tool_") or r["type"].startswith("perm")]
    start = max(r["seq"] for r in rows)
    need = p["records"] - len(rows)
    con.execute("pragma synchronous=OFF")  # generation only; not what is measured
    batch_rows = []
    for k in range(need):
        r = dict(tool_rows[k % len(tool_rows)])
        r["event_id"] = new_id("evt")
        r["seq"] = start + k + 1
        batch_rows.append(tuple(r[c] for c in cols))
    with con:
        con.executemany(
            f"insert into events({','.join(cols)}) values({','.join('?' * len(cols))})",
            batch_rows,
        )
    total = con.execute("select count(*) from events").fetchone()[0]
    rt.close()
    return {"records": total, "run_id": run_id}


@job("w3.agentledger.open")
def w3_agentledger_open(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    from agentledger.runtime import Runtime

    base = rss_mb()
    t0 = ns()
    rt = Runtime.local(p["root"])
    t1 = ns()
    events = rt.store.events(p["run_id"])
    ledger = rt.store.ledger(p["run_id"])
    t2 = ns()
    n = len(events)
    rt.close()
    return {
        "index_s": (t2 - t0) / 1e9,
        "open_s": (t1 - t0) / 1e9,
        "read_s": (t2 - t1) / 1e9,
        "records": n,
        "ledger_rows": len(ledger),
        "rss_base_mb": base,
        "peak_rss_mb": peak_rss_mb(),
        "peak_delta_mb": peak_rss_mb() - base,
    }


# =========================================================================== 4. policy decision


def _glob_rules(n: int) -> list[tuple[str, str]]:
    """50 first-match rules; the benchmark call (``add``) matches only the last one."""
    rules = [(f"tool_{k:02d}_*", "deny") for k in range(n - 1)]
    rules.append(("ad?", "allow"))
    return rules


def _calltape_policy(tmp: Path, n_rules: int) -> tuple[Any, str]:
    """calltape's file policy when core has one; else a 50-rule code policy (Policy protocol)."""
    try:
        from calltape.policy import file as policy_file  # type: ignore[attr-defined]
    except ImportError:
        policy_file = None
    if policy_file is not None and hasattr(policy_file, "load_policy"):
        import writer_policy

        path = writer_policy.write(tmp, _glob_rules(n_rules), policy_file)
        if path is not None:
            kind = f"calltape.policy.file.load_policy ({path.name}, {n_rules} [[rules]])"
            return policy_file.load_policy(path), kind
    import fnmatch
    import re

    from calltape import Decision

    class FirstMatch:
        def __init__(self, rules: list[tuple[str, str]]) -> None:
            self.rules = [
                (re.compile(fnmatch.translate(g)).match, a, f"rule{k}:{g}")
                for k, (g, a) in enumerate(rules)
            ]
            self.decisions = {
                name: (
                    Decision.allow(name, f"matched {name}")
                    if a == "allow"
                    else Decision.deny(name, f"matched {name}")
                )
                for _, a, name in self.rules
            }
            self.default = Decision.deny("default", "no rule matched (fail closed)")

        def decide(self, call: Any) -> Any:
            tool = call.tool
            for match, _, name in self.rules:
                if match(tool):
                    return self.decisions[name]
            return self.default

    return FirstMatch(_glob_rules(n_rules)), f"code policy ({n_rules} first-match glob rules)"


@job("w4.calltape")
def w4_calltape(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    from calltape import ToolCall, ToolSpec

    n = p["n"]
    policy, kind = _calltape_policy(tmp, p["rules"])
    spec = ToolSpec("add", add, None, "read")
    decide = policy.decide
    last: list[Any] = [None]

    def one(i: int) -> None:
        last[0] = decide(ToolCall("add", {"a": i, "b": 2}, "read", spec, "0" * 64, "run"))

    with QuietGC():
        samples = per_call(one, n)
    with QuietGC():
        mean, _ = batch(one, n)
    allowed = last[0].action == "allow"
    # the gate inside a whole call: same session, with the policy vs allow_all
    s_pol = _calltape_session(tmp / "pol.jsonl", policy=policy)
    s_all = _calltape_session(tmp / "all.jsonl")
    out: dict[str, list[int]] = {"policy": [], "allow_all": []}
    m = p["calls"]
    for k in range(0, m, 500):
        out["policy"].extend(per_call(lambda i, k=k: s_pol.call("add", a=k + i, b=2), 500))
        out["allow_all"].extend(per_call(lambda i, k=k: s_all.call("add", a=k + i, b=2), 500))
    res = s_pol.call("add", a=-1, b=2)
    s_pol.close()
    s_all.close()
    return {
        "stats": summarize(samples, batch_mean_ns=mean),
        "policy_kind": kind,
        "decision_allowed": allowed,
        "call_with_policy": summarize(out["policy"]),
        "call_allow_all": summarize(out["allow_all"]),
        "call_status": res.status,
        "rule": getattr(res.decision, "rule", None),
    }


@job("w4.agentledger")
def w4_agentledger(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    from agentledger.policy import PolicyEngine, PolicyRequest

    n = p["n"]
    path = tmp / "policy.json"
    deny = [f"tool_{k:02d}_x" for k in range(p["rules"] - 1)]
    path.write_text(
        json.dumps(
            {"version": "bench", "roles": {"Agent": {"deny_tools": deny, "allow_tools": ["add"]}}}
        )
    )
    engine = PolicyEngine.from_file(path)
    ev = engine.evaluate
    last: list[Any] = [None]

    def one(i: int) -> None:
        last[0] = ev(PolicyRequest.for_tool(role="Agent", tool_name="add", risk_level="low"))

    with QuietGC():
        samples = per_call(one, n)
    with QuietGC():
        mean, _ = batch(one, n)
    return {
        "stats": summarize(samples, batch_mean_ns=mean),
        "policy_kind": f"JSON file, role with {len(deny)} deny_tools + 1 allow_tools (set lookups)",
        "decision_allowed": bool(last[0].allowed),
    }


@job("w4.agt")
def w4_agt(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    from agent_os.policies.evaluator import PolicyEvaluator
    from agent_os.policies.schema import PolicyDocument

    n = p["n"]
    path = tmp / "policy.yaml"
    lines = ["version: '1.0'", "name: bench", "defaults:", "  action: deny", "rules:"]
    rules = _glob_rules(p["rules"])
    for k, (g, a) in enumerate(rules):
        rx = "^" + g.replace("*", ".*").replace("?", ".") + "$"
        lines += [
            f"  - name: rule{k}",
            "    condition:",
            "      field: tool_name",
            "      operator: matches",
            f"      value: '{rx}'",
            f"    action: {a}",
            f"    priority: {len(rules) - k}",
        ]
    path.write_text("\n".join(lines) + "\n")
    evaluator = PolicyEvaluator(policies=[PolicyDocument.from_yaml(path)])
    ev = evaluator.evaluate
    last: list[Any] = [None]

    def one(i: int) -> None:
        last[0] = ev({"tool_name": "add", "arguments": {"a": i, "b": 2}})

    with QuietGC():
        samples = per_call(one, n)
    with QuietGC():
        mean, _ = batch(one, n)
    return {
        "stats": summarize(samples, batch_mean_ns=mean),
        "policy_kind": f"YAML PolicyDocument, {len(rules)} regex rules by priority",
        "decision_allowed": bool(last[0].allowed),
        "rule": (last[0].audit_entry or {}).get("rule")
        if hasattr(last[0], "audit_entry")
        else None,
    }


# =========================================================================== 5. inside real loops


def _interleave(fns: dict[str, Callable[[int], Any]], n: int, block: int) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {k: [] for k in fns}
    names = list(fns)
    for k, start in enumerate(range(0, n, block)):
        for name in names[k % 2 :] + names[: k % 2]:
            out[name].extend(per_call(lambda i, f=fns[name], s=start: f(s + i), block))
    return out


@job("w5.langchain")
def w5_langchain(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    from importlib.metadata import version

    from langchain_core.messages import AIMessage
    from langchain_core.tools import tool
    from langgraph.graph import END, START, MessagesState, StateGraph
    from langgraph.prebuilt import ToolNode

    from calltape import Session
    from calltape_langchain import wrap_tool

    @tool
    def add_lc(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    session = Session(tmp / "lc.jsonl")
    wrapped = wrap_tool(session, add_lc)

    def graph(t: Any) -> Any:
        g = StateGraph(MessagesState)
        g.add_node("tools", ToolNode([t]))
        g.add_edge(START, "tools")
        g.add_edge("tools", END)
        return g.compile()

    graphs = {"unwrapped": graph(add_lc), "wrapped": graph(wrapped)}
    last: dict[str, Any] = {}

    def runner(name: str) -> Callable[[int], Any]:
        gi = graphs[name].invoke

        def one(i: int) -> None:
            msg = AIMessage(
                content="",
                tool_calls=[
                    {
                        "name": add_lc.name,
                        "args": {"a": i, "b": 2},
                        "id": f"c{i}",
                        "type": "tool_call",
                    }
                ],
            )
            last[name] = gi({"messages": [msg]})["messages"][-1].content

        return one

    for name in graphs:
        for i in range(20):
            runner(name)(-1 - i)
    with QuietGC():
        out = _interleave({k: runner(k) for k in graphs}, p["n"], p["block"])
    # where the proxy sits: the tool invoked with a ToolCall, as ToolNode does (lower variance
    # than the whole graph, whose thread-pool hand-offs dominate its noise)
    tools = {"unwrapped": add_lc, "wrapped": wrapped}

    def tool_runner(name: str) -> Callable[[int], Any]:
        inv = tools[name].invoke

        def one(i: int) -> None:
            inv({"name": add_lc.name, "args": {"a": i, "b": 2}, "id": f"t{i}", "type": "tool_call"})

        return one

    with QuietGC():
        at_tool = _interleave({k: tool_runner(k) for k in tools}, 2 * p["n"], 50)
    session.close()
    ends = count_matching(tmp / "lc.jsonl", b'"call_end"')
    return {
        "unwrapped": summarize(out["unwrapped"]),
        "wrapped": summarize(out["wrapped"]),
        "tool_unwrapped": summarize(at_tool["unwrapped"]),
        "tool_wrapped": summarize(at_tool["wrapped"]),
        "last": last,
        "recorded_calls": ends,
        "path": "LangGraph StateGraph(START -> ToolNode -> END).invoke, one tool call per invoke",
        "versions": {k: version(k) for k in ("langchain-core", "langgraph", "langgraph-prebuilt")},
    }


@job("w5.llamaindex")
def w5_llamaindex(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    from importlib.metadata import version

    from llama_index.core.tools import FunctionTool

    from calltape import Session
    from calltape_llamaindex import wrap_tool

    tool = FunctionTool.from_defaults(fn=add)
    session = Session(tmp / "li.jsonl")
    wrapped = wrap_tool(session, tool)
    tools = {"unwrapped": tool, "wrapped": wrapped}
    last: dict[str, Any] = {}

    async def main() -> dict[str, list[int]]:
        out: dict[str, list[int]] = {k: [] for k in tools}
        names = list(tools)
        for name in names:
            for i in range(20):
                await tools[name].acall(a=-1 - i, b=2)
        n, block = p["n"], p["block"]
        for k, start in enumerate(range(0, n, block)):
            for name in names[k % 2 :] + names[: k % 2]:
                acall = tools[name].acall
                for i in range(start, start + block):
                    t0 = ns()
                    r = await acall(a=i, b=2)
                    out[name].append(ns() - t0)
                last[name] = str(r)
        return out

    with QuietGC():
        out = asyncio.run(main())
    session.close()
    ends = count_matching(tmp / "li.jsonl", b'"call_end"')
    return {
        "unwrapped": summarize(out["unwrapped"]),
        "wrapped": summarize(out["wrapped"]),
        "last": last,
        "recorded_calls": ends,
        "path": "await FunctionTool.acall(a=.., b=..) of a sync function",
        "versions": {k: version(k) for k in ("llama-index-core",)},
    }


# =========================================================================== profiles of calltape


def _profile(fn: Callable[[], Any], ops: int, top: int = 14) -> dict[str, Any]:
    import cProfile
    import pstats

    pr = cProfile.Profile()
    t0 = ns()
    pr.enable()
    fn()
    pr.disable()
    wall = ns() - t0
    st = pstats.Stats(pr)
    rows = []
    for (file, line, func), (_, nc, tt, ct, _) in st.stats.items():  # type: ignore[attr-defined]
        short = file
        for marker in ("/site-packages/", "/core/", "/integrations/", "/lib/python3.11/"):
            if marker in file:
                short = file.split(marker, 1)[1]
                break
        rows.append(
            {
                "function": f"{short}:{line}({func})",
                "calls_per_op": nc / ops,
                "self_us_per_op": tt / ops * 1e6,
                "cum_us_per_op": ct / ops * 1e6,
            }
        )
    rows.sort(key=lambda r: -r["self_us_per_op"])
    total_self = sum(r["self_us_per_op"] for r in rows)
    return {
        "ops": ops,
        "profiled_us_per_op": wall / ops / 1000,
        "self_total_us_per_op": total_self,
        "top": rows[:top],
    }


@job("profile.call")
def profile_call(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    n = p["n"]
    s = _calltape_session(tmp / "t.jsonl")
    call = s.call
    for i in range(200):
        call("add", a=-i, b=2)

    def go() -> None:
        for i in range(n):
            call("add", a=i, b=2)

    out = _profile(go, n)
    s.close()
    return out


@job("profile.replay")
def profile_replay(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    n = p["n"]
    path = tmp / "t.jsonl"
    s = _calltape_session(path)
    for i in range(n):
        s.call("add", a=i, b=2)
    s.close()
    s = _calltape_session(path, replay="resume")
    call = s.call

    def go() -> None:
        for i in range(n):
            call("add", a=i, b=2)

    out = _profile(go, n)
    s.close()
    return out


@job("profile.open")
def profile_open(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    from calltape import Session

    path = tmp / "t.jsonl"
    if p.get("path") and Path(p["path"]).exists():
        shutil.copyfile(p["path"], path)
    else:
        s = _calltape_session(path)
        for i in range((p["records"] - 2) // 2):
            s.call("add", a=i, b=2)
        s.close()
    box: list[Any] = []
    out = _profile(lambda: box.append(Session(path)), 1, top=16)
    box[0].close()
    out["records"] = p["records"]
    return out


@job("profile.llamaindex")
def profile_llamaindex(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    from llama_index.core.tools import FunctionTool

    from calltape import Session
    from calltape_llamaindex import wrap_tool

    n = p["n"]
    session = Session(tmp / "li.jsonl")
    wrapped = wrap_tool(session, FunctionTool.from_defaults(fn=add))

    async def go() -> None:
        for i in range(n):
            await wrapped.acall(a=i, b=2)

    async def warm() -> None:
        for i in range(20):
            await wrapped.acall(a=-1 - i, b=2)

    asyncio.run(warm())
    out = _profile(lambda: asyncio.run(go()), n)
    session.close()
    return out


@job("w3.calltape.extend")
def w3_calltape_extend(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    """The 1M-record trace: the call records of the Session-written 100k trace repeated (their seqs
    repeat too), re-chained with calltape's own chain function so ``calltape verify`` passes;
    writing 500k calls through a Session would dominate the suite's run time."""
    import orjson

    try:
        from calltape.trace import chain_digest, split_chained
    except ImportError:  # a core without the chain: copy the lines as they are
        chain_digest = split_chained = None  # type: ignore[assignment]
    src, out, target = Path(p["src"]), Path(p["path"]), p["records"]
    lines = read_lines(src)
    header = lines[0]
    calls = [ln for ln in lines if b'"type":"call_start"' in ln or b'"type":"call_end"' in ln]
    tail = next((ln for ln in reversed(lines) if b'"type":"run_end"' in ln), None)
    bodies = {ln: split_chained(ln)[0] for ln in calls} if split_chained else {}
    t0 = ns()
    head = split_chained(header)[1] if split_chained and split_chained(header) else b""
    written = 1
    loads, dumps = orjson.loads, orjson.dumps
    with open(out, "wb") as f:
        f.write(header)
        k = 0
        while written < target - 1:
            for ln in calls:
                if written >= target - 1:
                    break
                if chain_digest is None:
                    f.write(ln)
                else:
                    body = bodies[ln]
                    head = chain_digest(head, body, None)
                    f.write(body[:-1] + b',"h":"' + head + b'"}\n')
                written += 1
            k += 1
        if tail is not None:
            rec = loads(tail)
            rec.pop("h", None)
            if chain_digest is not None:
                rec["records"] = written
                rec["head"] = head.decode()
                body = dumps(rec)
                head = chain_digest(head, body, None)
                f.write(body[:-1] + b',"h":"' + head + b'"}\n')
            else:
                f.write(tail)
            written += 1
    verified = None
    try:
        from calltape.integrity import verify

        rep = verify(out)
        verified = getattr(rep, "problem", "no report") is None
    except Exception as exc:  # report, do not fail the stream measurement
        verified = f"{type(exc).__name__}: {exc}"
    return {
        "records": count_lines(out),
        "gen_s": (ns() - t0) / 1e9,
        "verified": verified,
        "rechained": chain_digest is not None,
    }


@job("profile.components")
def profile_components(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    """Time the pieces of one default-durability call separately (batch loops, no profiler), next
    to the whole call, so the shares add up without cProfile's per-function inflation."""
    import inspect as _inspect

    import orjson

    n = p["n"]
    s = _calltape_session(tmp / "t.jsonl")
    for i in range(200):
        s.call("add", a=-i, b=2)
    parts: dict[str, Callable[[int], Any]] = {}
    parts["whole session.call"] = lambda i: s.call("add", a=i, b=2)
    try:
        from calltape.fingerprint import fingerprint_args

        parts["fingerprint_args (JCS + sha256)"] = lambda i: fingerprint_args(
            "add", {"a": i, "b": 2}
        )
    except ImportError:
        pass
    red = getattr(s, "_redactor", None)
    if red is not None:
        parts["redact args (default redactor)"] = lambda i: red({"a": i, "b": 2}, "args")
        parts["redact output (default redactor)"] = lambda i: red(i + 2, "output")
        # what a real tool returns: text (no secret in it), and a search-result dict
        text = ("Refunds are processed within five business days of the request. " * 32)[:2048]
        hits = {"results": [{"title": f"doc {n}", "snippet": text[:200]} for n in range(10)]}
        parts["redact a 2 KB text output (not in a whole call)"] = lambda i: red(text, "output")
        parts["redact a 10-hit search result (not in a whole call)"] = lambda i: red(hits, "output")
    try:
        from calltape.fingerprint import to_jsonable

        parts["to_jsonable(output)"] = lambda i: to_jsonable(i + 2)
    except ImportError:
        pass
    lines = read_lines(tmp / "t.jsonl", b'"call_')[-2:]
    start, end = orjson.loads(lines[0]), orjson.loads(lines[1])
    start.pop("h", None)
    end.pop("h", None)
    parts["orjson.dumps x2 (call_start, call_end)"] = lambda i: (
        orjson.dumps(start),
        orjson.dumps(end),
    )
    try:
        from calltape.trace import TraceWriter, chain_digest

        body = orjson.dumps(start)
        parts["chain_digest x2 (sha256 of prev h + record)"] = lambda i: (
            chain_digest(b"0" * 64, body, None),
            chain_digest(b"0" * 64, body, None),
        )
        w = TraceWriter(tmp / "scratch.jsonl")
        sf = dict(start)
        ef = dict(end)
        parts["TraceWriter.append x2 (lock, dumps, chain, write)"] = lambda i: (
            w.append([dict(sf)], new_seq=True),
            w.append([dict(ef)]),
        )
    except ImportError:
        pass
    fd = os.open(tmp / "raw.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    a, b = lines
    parts["os.write x2 of the same bytes"] = lambda i: (os.write(fd, a), os.write(fd, b))
    poll = getattr(s, "_poll", None)
    if callable(poll) and hasattr(s, "_next_poll"):
        perf = time.perf_counter

        def guarded(i: int) -> None:  # as the session calls it: at most every few ms
            if perf() >= s._next_poll:
                poll()

        parts["control inbox check (os.stat, rate-limited as in the call)"] = guarded
    parts["inspect.iscoroutinefunction(fn) (ToolSpec.is_async)"] = lambda i: (
        _inspect.iscoroutinefunction(add)
    )
    try:
        from calltape.context import _CURRENT, CallContext

        def ctx(i: int) -> None:
            tok = _CURRENT.set(CallContext(s.run_id, i, "add", "f" * 64, 0, 1))
            _CURRENT.reset(tok)

        parts["CallContext + ContextVar set/reset"] = ctx
    except (ImportError, TypeError):
        pass
    out: dict[str, Any] = {}
    for name, fn in parts.items():
        best = None
        for rep in range(3):
            with QuietGC():
                mean, _ = batch(lambda i, f=fn, r=rep: f(i + r * n + 10**6), n)
            best = mean if best is None else min(best, mean)
        out[name] = best / 1000
    s.close()
    return {"us": out, "n": n}


@job("profile.variants")
def profile_variants(tmp: Path, p: dict[str, Any]) -> dict[str, Any]:
    """The same call through calltape's variants, interleaved in blocks of 100 in one process, so
    the differences (what redaction, Session.call, replay cost) are not machine weather."""
    import statistics

    n = p["n"]
    rec = _calltape_session(tmp / "rec.jsonl")
    for i in range(n):
        rec.call("add", a=i, b=2)
    rec.close()
    shutil.copyfile(tmp / "rec.jsonl", tmp / "rec2.jsonl")
    sessions = {
        "session.call, defaults": _calltape_session(tmp / "a.jsonl"),
        "session.call, redact=False": _calltape_session(tmp / "b.jsonl", redact=False),
        "session.run_tool, defaults": _calltape_session(tmp / "c.jsonl"),
        "replay hit, replay='resume'": _calltape_session(tmp / "rec.jsonl", replay="resume"),
        "replay hit, replay='strict'": _calltape_session(tmp / "rec2.jsonl", replay="strict"),
    }
    run_tool = sessions["session.run_tool, defaults"].run_tool
    fns: dict[str, Callable[[int], Any]] = {
        k: (lambda i, c=s.call: c("add", a=i, b=2)) for k, s in sessions.items()
    }
    fns["session.run_tool, defaults"] = lambda i: run_tool("add", {"a": i, "b": 2}, lambda: i + 2)
    blocks: dict[str, list[float]] = {k: [] for k in fns}
    with QuietGC():
        for start in range(0, n, 100):
            for k, f in fns.items():
                t0 = ns()
                for i in range(start, start + 100):
                    f(i)
                blocks[k].append((ns() - t0) / 100 / 1000)
    for s in sessions.values():
        s.close()
    return {"us": {k: statistics.median(v) for k, v in blocks.items()}, "n": n}
