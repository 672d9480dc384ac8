"""Turn the raw job results into tables, target verdicts, the terminal text and the markdown page.

Nothing here measures; every number printed comes from the run's results.
"""

from __future__ import annotations

from typing import Any

NA = "n/a"


def us(x: float | None) -> str:
    if x is None:
        return NA
    if x < 10:
        return f"{x:.2f}"
    if x < 1000:
        return f"{x:.1f}"
    return f"{x:,.0f}"


def secs(x: float | None) -> str:
    return NA if x is None else f"{x:.3f}"


def mb(x: float | None) -> str:
    return NA if x is None else f"{x:.1f}"


def ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return NA
    r = a / b
    return f"{r:.2f}x" if r < 10 else f"{r:,.0f}x"


def st(res: dict[str, Any], key: str = "stats") -> dict[str, Any]:
    if not isinstance(res, dict) or "error" in res:
        return {}
    v = res.get(key)
    return v if isinstance(v, dict) else {}


def med(res: dict[str, Any], key: str = "stats") -> float | None:
    return st(res, key).get("median_us")


def err(res: Any) -> str | None:
    return res.get("error") if isinstance(res, dict) else None


def table(
    tid: str, title: str, columns: list[str], rows: list[list[str]], notes: list[str]
) -> dict[str, Any]:
    return {"id": tid, "title": title, "columns": columns, "rows": rows, "notes": notes}


def count(a: Any, b: Any = None) -> str:
    if a is None:
        return NA
    if b is None:
        return f"{a:,}" if isinstance(a, int) else str(a)
    mark = "ok" if a == b else "MISMATCH"
    return f"{a:,}/{b:,} {mark}"


# =========================================================================== the tables


def t_w1(w: dict[str, Any]) -> list[dict[str, Any]]:
    raw = med(w["raw"])
    ct = med(w["calltape"])
    crash = w.get("crash", {})
    cols = [
        "system (durable mode)",
        "calls timed",
        "median us",
        "p99 us",
        "batch mean us",
        "x raw",
        "x calltape",
        "records on disk",
        "kill -9 after 50 calls",
    ]

    def crash_cell(name: str) -> str:
        c = crash.get(name)
        if not c:
            return NA
        if c.get("error"):
            return "error: " + str(c["error"])[:60]
        return f"{c['on_disk']}/{crash.get('n', 50)} on disk"

    rows = []
    s = st(w["raw"])
    rows.append(
        [
            "raw Python call",
            count(s.get("n")),
            us(s.get("median_us")),
            us(s.get("p99_us")),
            us(s.get("batch_mean_us")),
            "1.00x",
            NA,
            NA,
            NA,
        ]
    )
    specs = [
        ("calltape", "calltape (durability='os': one write per record)"),
        ("failcore", "failcore (JSONL, flush per record)"),
        ("agentledger", "agentledger-runtime (SQLite WAL, synchronous=FULL)"),
        ("agt", "Agent Governance Toolkit (PolicyInterceptor + JsonlFileBackend)"),
    ]
    notes = []
    for key, label in specs:
        res = w.get(key, {})
        if err(res):
            rows.append([label, "ERROR", err(res)[:80], "", "", "", "", "", ""])
            continue
        s = st(res)
        if key == "agt":
            disk = (
                f"{res.get('records_on_disk', 0):,} after flush; "
                f"{res.get('records_at_os_before_flush', 0):,} reached the OS before it"
            )
        elif key == "agentledger":
            disk = (
                f"{res.get('call_end_on_disk', 0):,}/{res.get('calls', 0):,} calls "
                f"({res.get('events_per_call', 0):.1f} events/call)"
            )
        else:
            disk = count(res.get("records_on_disk"), res.get("records_expected"))
        rows.append(
            [
                label,
                count(s.get("n")),
                us(s.get("median_us")),
                us(s.get("p99_us")),
                us(s.get("batch_mean_us")),
                ratio(s.get("median_us"), raw),
                "1.00x" if key == "calltape" else ratio(s.get("median_us"), ct),
                disk,
                crash_cell(key),
            ]
        )
    fc, al, agt = w.get("failcore", {}), w.get("agentledger", {}), w.get("agt", {})
    if not err(fc) and st(fc).get("n", 0) < w["n"]:
        notes.append(
            f"failcore: {st(fc).get('n'):,} of {w['n']:,} calls timed (time budget; "
            f"~{us(st(fc).get('mean_us'))} us each)."
        )
    if not err(al) and st(al).get("n", 0) < w["n"]:
        notes.append(
            f"agentledger-runtime: {st(al).get('n'):,} of {w['n']:,} calls timed (time "
            "budget): every call is 3-4 SQLite transactions, each fsynced "
            f"(synchronous={al.get('sqlite_synchronous')}, {al.get('journal_mode')}), plus "
            "content-addressed blob files."
        )
    if not err(agt):
        notes.append(
            "Agent Governance Toolkit: JsonlFileBackend writes through a buffered text file; "
            f"{agt.get('writes_reaching_os_per_200_calls')} of 200 calls moved the file size "
            "the OS "
            f"sees, {agt.get('records_buffered_before_flush')} records were still in the process "
            "buffer before flush(): records reach the OS only when the 8 KiB buffer fills or on "
            "flush(), so a crash loses the buffered tail (see the kill -9 column)."
        )
    notes.append(
        "x raw and x calltape are ratios of medians; 'kill -9' ends the process with "
        "os._exit right after the 50th call returned and counts completed calls on disk."
    )
    out = [table("w1", "1. Overhead per call: add(a, b) with the trace on", cols, rows, notes)]

    f = w.get("fsync", {})
    if err(f):
        out.append(table("w1-fsync", "1b. fsync mode", ["error"], [[err(f)]], []))
    else:
        c, b2, b1 = med(f, "calltape"), med(f, "bare2"), med(f, "bare1")
        rows = [
            [
                "calltape durability='fsync'",
                count(st(f, "calltape").get("n")),
                us(c),
                us(st(f, "calltape").get("p99_us")),
                "1.00x",
            ],
            [
                "bare os.write+os.fsync of the same two records (call_start, then call_end)",
                count(st(f, "bare2").get("n")),
                us(b2),
                us(st(f, "bare2").get("p99_us")),
                ratio(c, b2),
            ],
            [
                "bare single os.write+os.fsync of both records",
                count(st(f, "bare1").get("n")),
                us(b1),
                us(st(f, "bare1").get("p99_us")),
                ratio(c, b1),
            ],
        ]
        notes = [
            f"{f.get('bytes_per_call', 0):.0f} bytes per call; the three run interleaved in blocks "
            "in one process and one directory so they see the same disk.",
            "calltape syncs call_start before the tool runs (write-ahead) and call_end after it: "
            "two durability points per call; the single-fsync row is what a design without the "
            "write-ahead sync would cost.",
            f"records on disk: {count(f.get('records_on_disk'), f.get('records_expected'))}",
        ]
        out.append(
            table(
                "w1-fsync",
                "1b. fsync mode against a bare write+fsync of the same bytes",
                ["what", "calls timed", "median us", "p99 us", "calltape / this"],
                rows,
                notes,
            )
        )
    return out


def t_w2(w: dict[str, Any], raw: float | None) -> dict[str, Any]:
    cols = [
        "system: what answers the call",
        "recorded",
        "hits",
        "median us",
        "p99 us",
        "batch mean us",
        "x raw",
        "x calltape",
        "tool ran during replay",
    ]
    rows = []
    notes = []
    c = w.get("calltape", {})
    ctm = med(c)
    if err(c):
        rows.append(["calltape", "ERROR", err(c)[:80], "", "", "", "", "", ""])
    else:
        rows.append(
            [
                "calltape replay='resume' (records the replay: 2 records/call)",
                count(c.get("recorded")),
                count(c.get("hits")),
                us(ctm),
                us(st(c).get("p99_us")),
                us(st(c).get("batch_mean_us")),
                ratio(ctm, raw),
                "1.00x",
                count(c.get("executed_during_replay")),
            ]
        )
        s2 = st(c, "strict")
        rows.append(
            [
                "calltape replay='strict' (offline, writes nothing)",
                count(c.get("recorded")),
                count(c.get("strict_hits")),
                us(s2.get("median_us")),
                us(s2.get("p99_us")),
                NA,
                ratio(s2.get("median_us"), raw),
                ratio(s2.get("median_us"), ctm),
                "0",
            ]
        )
    f = w.get("failcore", {})
    if err(f):
        rows.append(["failcore", "ERROR", err(f)[:80], "", "", "", "", "", ""])
    else:
        rows.append(
            [
                "failcore Replayer(MOCK).replay_step",
                count(f.get("recorded")),
                count(f.get("hits")),
                us(med(f)),
                us(st(f).get("p99_us")),
                NA,
                ratio(med(f), raw),
                ratio(med(f), ctm),
                "n/a (no hit)",
            ]
        )
        if not f.get("hits"):
            reasons = ", ".join(f"{k!r} x{v}" for k, v in (f.get("miss_reasons") or {}).items())
            notes.append(
                f"failcore 0.1.3 replay does not hit: {f.get('outcomes')} ({reasons}). Its "
                "TraceLoader indexes steps under 'attempt_event'/'result_event' while "
                "FingerprintMatcher and Replayer read 'start_event'/'end_event', so every "
                "lookup is a MISS and the call would run again. The time shown is the cost of "
                "that lookup (miss), not of a replay."
            )
    a = w.get("agentledger", {})
    if err(a):
        rows.append(["agentledger-runtime", "ERROR", err(a)[:80], "", "", "", "", "", ""])
    else:
        rows.append(
            [
                "agentledger-runtime ledger replay on retry (side_effect='write')",
                count(a.get("recorded")),
                count(a.get("hits")),
                us(med(a)),
                us(st(a).get("p99_us")),
                NA,
                ratio(med(a), raw),
                ratio(med(a), ctm),
                count(a.get("executed_during_replay")),
            ]
        )
        notes.append(
            "agentledger-runtime: only tools declared with a side effect go through its tool "
            "ledger; a retried step (same run and step, after SimulatedCrash) gets the recorded "
            "response back. Each hit still writes 2 events and a cost row (fsynced SQLite "
            f"transactions). {a.get('recorded', 0):,} calls recorded within the time budget."
        )
    rows.append(["Agent Governance Toolkit", NA, NA, NA, NA, NA, NA, NA, NA])
    notes.append(
        "Agent Governance Toolkit: no replay or resume of tool results (its audit log "
        "is write-only), so nothing to measure."
    )
    if not err(c):
        notes.append(
            f"calltape: opening the 10k-call trace for resume took "
            f"{c.get('open_ms_10k', 0):.0f} ms (not in the per-call numbers)."
        )
    return table(
        "w2", "2. Replay / resume hit: recorded calls answered from the trace", cols, rows, notes
    )


def t_w3(w: dict[str, Any]) -> dict[str, Any]:
    cols = [
        "system",
        f"open+index {w['n_open']:,} records (s)",
        "peak RSS (MB)",
        f"stream {w['n_stream']:,} records (s)",
        "us/record",
        "stream peak RSS (MB)",
    ]
    rows = []
    notes = []
    o, s, sr = (
        w.get("calltape_open", {}),
        w.get("calltape_stream", {}),
        w.get("calltape_stream_raw", {}),
    )
    if err(o) or err(s):
        rows.append(["calltape", "ERROR", str(err(o) or err(s))[:80], "", "", ""])
    else:
        rows.append(
            [
                "calltape Session(path) (index + open for append)",
                secs(o.get("session_open_s")),
                mb(o.get("peak_rss_mb")),
                secs(s.get("seconds")),
                us(s.get("us_per_record")),
                mb(s.get("peak_rss_mb")),
            ]
        )
        rows.append(
            [
                "calltape TraceIndex.build / trace.iter_raw (no validation)",
                secs(o.get("index_s")),
                NA,
                secs(sr.get("seconds")),
                us(sr.get("us_per_record")),
                mb(sr.get("peak_rss_mb")),
            ]
        )
        notes.append(
            f"calltape streaming = trace.iter_records (validated records, what the CLI reads): "
            f"peak RSS {mb(s.get('peak_rss_mb'))} MB, of which {mb(s.get('rss_base_mb'))} MB is "
            "the interpreter with calltape imported before the first record. "
            f"The {w['n_open']:,}-record trace was written by calltape's own Session "
            f"({w.get('calltape_gen', {}).get('gen_s', 0):.1f} s) and its index holds "
            f"{o.get('replayable', 0):,} replayable calls. The {w['n_stream']:,}-record trace is "
            "its call records repeated (seqs repeat; the streaming readers do not "
            "check them) with the hash chain recomputed by calltape's "
            f"chain function (calltape verify: {w.get('calltape_gen_1m', {}).get('verified')})."
        )
    f = w.get("failcore_open", {})
    if err(f):
        rows.append(["failcore", "ERROR", str(err(f))[:80], "", "", ""])
    else:
        rows.append(
            [
                "failcore TraceLoader(path) (what its Replayer loads)",
                secs(f.get("index_s")),
                mb(f.get("peak_rss_mb")),
                NA,
                NA,
                NA,
            ]
        )
        notes.append(
            "failcore: no streaming reader; TraceLoader keeps every event in memory "
            f"(+{mb(f.get('peak_delta_mb'))} MB for {w['n_open']:,} records), so the 1M stream is "
            "not run. Its 100k trace is a real failcore trace's records copied with fresh step "
            "ids, seqs and hashes (writing 100k records through failcore takes ~1 ms per record)."
        )
    a = w.get("agentledger_open", {})
    if err(a) or not a:
        rows.append(
            [
                "agentledger-runtime",
                "ERROR",
                str(err(a) or err(w.get("agentledger_gen", {})))[:80],
                "",
                "",
                "",
            ]
        )
    else:
        rows.append(
            [
                "agentledger-runtime Runtime.local + store.events(run)",
                secs(a.get("index_s")),
                mb(a.get("peak_rss_mb")),
                NA,
                NA,
                NA,
            ]
        )
        notes.append(
            "agentledger-runtime: SQLite, so opening is cheap "
            f"({a.get('open_s', 0) * 1000:.0f} ms) "
            f"and reading the run's {a.get('records', 0):,} events is the rest; store.events() "
            f"returns a list (+{mb(a.get('peak_delta_mb'))} MB), no streaming reader, so the 1M "
            "stream is not run. Its events are a real run's rows copied with fresh ids and seqs "
            "(through its API each call costs ~10-20 ms)."
        )
    rows.append(["Agent Governance Toolkit", NA, NA, NA, NA, NA])
    notes.append(
        "Agent Governance Toolkit: the JSONL audit log has no reader or index in the "
        "toolkit, so nothing to open or stream."
    )
    return table("w3", "3. Opening and indexing a trace; streaming a large one", cols, rows, notes)


def t_w4(w: dict[str, Any]) -> dict[str, Any]:
    cols = ["system", "policy", "median us", "p99 us", "batch mean us", "x calltape", "decision"]
    rows = []
    notes = []
    c = w.get("calltape", {})
    ctm = med(c)
    for key, label in [
        ("calltape", "calltape"),
        ("agentledger", "agentledger-runtime PolicyEngine.evaluate"),
        ("agt", "Agent Governance Toolkit PolicyEvaluator.evaluate"),
    ]:
        r = w.get(key, {})
        if err(r):
            rows.append([label, "ERROR", err(r)[:80], "", "", "", ""])
            continue
        s = st(r)
        rows.append(
            [
                label + (" policy.decide" if key == "calltape" else ""),
                str(r.get("policy_kind")),
                us(s.get("median_us")),
                us(s.get("p99_us")),
                us(s.get("batch_mean_us")),
                "1.00x" if key == "calltape" else ratio(s.get("median_us"), ctm),
                "allow (last rule)" if r.get("decision_allowed") else "WRONG",
            ]
        )
    rows.append(["failcore", "no policy file format", NA, NA, NA, NA, NA])
    notes.append(
        "failcore: policies are Python objects (Policy.allow(step, ctx)); there is no "
        "file policy to load, so nothing comparable to measure."
    )
    if not err(c):
        cp, ca = med(c, "call_with_policy"), med(c, "call_allow_all")
        notes.append(
            f"calltape, the gate inside a whole call: session.call median {us(cp)} us with this "
            f"policy against {us(ca)} us with allow_all (the default, which skips the gate): "
            f"{us((cp or 0) - (ca or 0))} us for building the ToolCall and deciding"
            + (" (negative: within this machine's noise)." if (cp or 0) < (ca or 0) else ".")
        )
        if "code policy" in str(c.get("policy_kind")):
            notes.append(
                "calltape.policy.file.load_policy was not available in core when this ran, so "
                "calltape's row is a code policy through the Policy protocol: 50 first-match glob "
                "rules (fnmatch-compiled regexes), the call matching only the last one."
            )
    notes.append(
        "Every system evaluates the same call (tool 'add') against 50 rules where only "
        "the last one matches it (worst case for first-match engines)."
    )
    return table("w4", "4. Policy decision cost with a 50-rule policy", cols, rows, notes)


def t_w5(w: dict[str, Any]) -> dict[str, Any]:
    cols = [
        "framework path (1 tool call per iteration)",
        "unwrapped median us",
        "wrapped median us",
        "added us",
        "proxy share",
        "unwrapped p99 us",
        "wrapped p99 us",
        "calls recorded",
    ]
    rows = []
    notes = []
    for key, label in [
        ("langchain", "LangChain/LangGraph ToolNode"),
        ("llamaindex", "LlamaIndex FunctionTool.acall"),
    ]:
        r = w.get(key, {})
        if err(r):
            rows.append([label, "ERROR", err(r)[:100], "", "", "", "", ""])
            continue
        u, wr = med(r, "unwrapped"), med(r, "wrapped")
        share = (wr - u) / u * 100 if u and wr is not None else None
        rows.append(
            [
                label,
                us(u),
                us(wr),
                us((wr or 0) - (u or 0)),
                NA if share is None else f"{share:.1f}%",
                us(st(r, "unwrapped").get("p99_us")),
                us(st(r, "wrapped").get("p99_us")),
                count(r.get("recorded_calls")),
            ]
        )
        notes.append(f"{label}: {r.get('path')}; {r.get('versions')}.")
        tu, tw = med(r, "tool_unwrapped"), med(r, "tool_wrapped")
        if tu is not None and tw is not None and u:
            notes.append(
                f"{label}, measured where the proxy sits (tool.invoke(ToolCall) as ToolNode calls "
                f"it, {st(r, 'tool_wrapped').get('n', 0):,} interleaved calls each): "
                f"{us(tu)} us unwrapped, {us(tw)} us wrapped, {us(tw - tu)} us added = "
                f"{(tw - tu) / u * 100:.1f}% of the graph's unwrapped per-call cost. The "
                "graph-level difference above also carries the noise of ToolNode's thread-pool "
                "hand-offs."
            )
    notes.append(
        "Wrapped and unwrapped run interleaved in blocks in one process; proxy share = "
        "(wrapped - unwrapped) / unwrapped median, i.e. calltape's whole lifecycle "
        "(fingerprint, gate, two trace records) as a share of the framework's own cost."
    )
    notes.append(
        "Peers: not measured in this workload (failcore, agentledger-runtime and the "
        "Agent Governance Toolkit ship their own framework adapters, installed "
        "separately); the table compares calltape against the bare framework only."
    )
    return table("w5", "5. Inside real loops: wrapped vs unwrapped tool calls", cols, rows, notes)


def t_profiles(p: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    v = p.get("variants")
    if v and not err(v):
        parts = v["us"]
        base = parts.get("session.call, defaults")
        rows = [[k, us(x), ratio(x, base)] for k, x in parts.items()]
        out.append(
            table(
                "profile-variants",
                "calltape variants of the same call, interleaved",
                ["variant", "us per call (median of 100-call blocks)", "x session.call"],
                rows,
                [
                    f"{v['n']:,} calls per variant, in alternating blocks of 100 in one process. "
                    "The redact=False row shows what default redaction costs per call; strict "
                    "replay writes nothing, resume writes a call_start and a call_end per hit."
                ],
            )
        )
    c = p.get("components")
    if c and not err(c):
        parts = c["us"]
        whole = parts.get("whole session.call")
        rows = [
            [
                k,
                us(v),
                "100%"
                if k == "whole session.call"
                else (f"{v / whole * 100:.0f}%" if whole else NA),
            ]
            for k, v in parts.items()
        ]
        out.append(
            table(
                "profile-components",
                "calltape session.call, piece by piece (default durability)",
                [
                    "piece (timed alone, batch loop, best of 3)",
                    "us per call",
                    "share of the whole call",
                ],
                rows,
                [
                    f"{c['n']:,} iterations per piece. The pieces overlap (TraceWriter.append "
                    "includes orjson.dumps, chain_digest and os.write), so shares do not add up to "
                    "100%; what is left of the whole after fingerprint + redaction + two appends "
                    "is the session's own bookkeeping (records as dicts, locks, CallResult, "
                    "context variables)."
                ],
            )
        )
    titles = {
        "call": "calltape session.call (w1), per call",
        "replay": "calltape replay hit (w2), per call",
        "open": "calltape Session(path) on the w3 trace, per open",
        "llamaindex": "calltape_llamaindex wrapped FunctionTool.acall (w5), per call",
    }
    for key, title in titles.items():
        r = p.get(key)
        if not r:
            continue
        if err(r):
            out.append(table(f"profile-{key}", f"Profile: {title}", ["error"], [[err(r)]], []))
            continue
        rows = [
            [
                x["function"],
                f"{x['calls_per_op']:.2f}",
                us(x["self_us_per_op"]),
                us(x["cum_us_per_op"]),
            ]
            for x in r["top"]
        ]
        out.append(
            table(
                f"profile-{key}",
                f"Profile: {title}",
                [
                    "function (cProfile, sorted by self time)",
                    "calls per op",
                    "self us per op",
                    "cum us per op",
                ],
                rows,
                [
                    f"{r['ops']:,} ops; {us(r['profiled_us_per_op'])} us per op under the profiler "
                    "(cProfile inflates small functions; use the shares, not the absolute numbers)."
                ],
            )
        )
    return out


# =========================================================================== targets


def _tool_level(r: dict[str, Any], u: float | None) -> str:
    tu, tw = med(r, "tool_unwrapped"), med(r, "tool_wrapped")
    if tu is None or tw is None or not u:
        return ""
    return f"; at the tool itself {us(tw - tu)} us added = {(tw - tu) / u * 100:.1f}%"


def targets(res: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(
        tid: str,
        what: str,
        goal: str,
        value: float | None,
        limit: float,
        shown: str,
        detail: str = "",
    ) -> None:
        out.append(
            {
                "id": tid,
                "target": what,
                "goal": goal,
                "value": value,
                "shown": shown,
                "met": None if value is None else bool(value <= limit),
                "detail": detail,
            }
        )

    w1 = res.get("w1")
    if w1:
        raw, ct = med(w1["raw"]), med(w1["calltape"])
        ov = None if raw is None or ct is None else ct - raw
        add(
            "overhead",
            "Overhead per call, default durability (median - raw median)",
            "<= 10 us",
            ov,
            10,
            f"{us(ov)} us",
            f"calltape median {us(ct)} us, raw {us(raw)} us",
        )
        f = w1.get("fsync", {})
        c, b2, b1 = med(f, "calltape"), med(f, "bare2"), med(f, "bare1")
        r2 = None if not c or not b2 else c / b2
        add(
            "fsync",
            "fsync mode vs bare write+fsync of the same bytes",
            "<= 1.2x",
            r2,
            1.2,
            ratio(c, b2),
            f"{us(c)} us vs {us(b2)} us (same two records, each synced); "
            f"vs one write+fsync of both records: {ratio(c, b1)}",
        )
    w2 = res.get("w2")
    if w2:
        m = med(w2.get("calltape", {}))
        s = med(w2.get("calltape", {}), "strict")
        add(
            "replay",
            "Replay hit (resume), median",
            "<= 5 us",
            m,
            5,
            f"{us(m)} us",
            f"strict (offline, no writes): {us(s)} us",
        )
    w3 = res.get("w3")
    if w3:
        o = w3.get("calltape_open", {})
        v = None if err(o) else o.get("session_open_s")
        add(
            "open",
            f"Opening a {w3['n_open']:,}-record trace (Session(path))",
            "<= 0.2 s",
            v,
            0.2,
            f"{secs(v)} s",
            f"TraceIndex.build alone: {secs(o.get('index_s'))} s",
        )
        s = w3.get("calltape_stream", {})
        v = None if err(s) else s.get("peak_rss_mb")
        add(
            "stream",
            f"Streaming {w3['n_stream']:,} records (iter_records), peak RSS",
            "<= 50 MB",
            v,
            50,
            f"{mb(v)} MB",
            f"{mb(s.get('rss_base_mb'))} MB before the first record; {secs(s.get('seconds'))} s",
        )
    w5 = res.get("w5")
    if w5:
        for key, label in [
            ("langchain", "LangGraph ToolNode"),
            ("llamaindex", "LlamaIndex FunctionTool.acall"),
        ]:
            r = w5.get(key, {})
            u, wr = med(r, "unwrapped"), med(r, "wrapped")
            share = None if not u or wr is None else (wr - u) / u * 100
            add(
                f"share-{key}",
                f"Proxy share of the framework's per-call cost: {label}",
                "<= 2%",
                share,
                2,
                NA if share is None else f"{share:.1f}%",
                f"{us(u)} us unwrapped, {us(wr)} us wrapped" + _tool_level(r, u),
            )
    return out


# =========================================================================== document


def build(
    results: dict[str, Any], env: dict[str, Any], *, scale: float, command: str
) -> dict[str, Any]:
    tables: list[dict[str, Any]] = []
    raw = med(results["w1"]["raw"]) if "w1" in results else None
    if "w1" in results:
        tables += t_w1(results["w1"])
    if "w2" in results:
        tables.append(t_w2(results["w2"], raw))
    if "w3" in results:
        tables.append(t_w3(results["w3"]))
    if "w4" in results:
        tables.append(t_w4(results["w4"]))
    if "w5" in results:
        tables.append(t_w5(results["w5"]))
    if "profile" in results:
        tables += t_profiles(results["profile"])
    return {
        "schema": 1,
        "command": command,
        "scale": scale,
        "environment": env,
        "targets": targets(results),
        "tables": tables,
        "results": _strip(results),
    }


def _strip(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip(v) for k, v in obj.items() if k not in ("_tmp", "traceback")}
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


def _verdict(t: dict[str, Any]) -> str:
    return "n/a" if t["met"] is None else ("MET" if t["met"] else "MISSED")


def _fmt_row(row: list[Any], widths: list[int]) -> str:
    return "  ".join(str(c)[:70].ljust(widths[i]) for i, c in enumerate(row[: len(widths)]))


def render_text(doc: dict[str, Any]) -> str:
    lines: list[str] = []
    env = doc["environment"]
    lines.append("")
    lines.append(f"calltape benchmarks  ({doc['command']}; scale {doc['scale']})")
    lines.append(
        f"Python {env['python']} on {env['cpu']} x{env['cores']}; load "
        f"{env['loadavg_start'][0]:.2f} -> {env.get('loadavg_end', [0])[0]:.2f}; "
        f"{env.get('duration_s')} s; core @ {env.get('git_commit')}"
        f"{' (dirty)' if env.get('core_dirty') else ''}"
    )
    for t in doc["tables"]:
        lines.append("")
        lines.append(t["title"])
        cols = t["columns"]
        widths = [len(c) for c in cols]
        for row in t["rows"]:
            for i, cell in enumerate(row[: len(cols)]):
                widths[i] = min(max(widths[i], len(str(cell))), 70)
        lines.append(_fmt_row(cols, widths))
        lines.append("  ".join("-" * w for w in widths))
        for row in t["rows"]:
            lines.append(_fmt_row(row, widths))
        for n in t["notes"]:
            lines.append(f"  * {n}")
    secs_by_job = sorted(env.get("job_seconds", {}).items(), key=lambda kv: -kv[1])
    lines.append("")
    lines.append("Seconds per job: " + ", ".join(f"{k} {v:.1f}" for k, v in secs_by_job))
    lines.append("")
    lines.append("Targets")
    for t in doc["targets"]:
        lines.append(
            f"  [{_verdict(t):6}] {t['target']}: {t['shown']} (goal {t['goal']}); {t['detail']}"
        )
    lines.append("")
    return "\n".join(lines)


def _timer_ns(doc: dict[str, Any]) -> Any:
    return doc["results"].get("w1", {}).get("raw", {}).get("timer_ns", "n/a")


def _md_cell(x: Any) -> str:
    return str(x).replace("|", "\\|")


def _profile_row(prof: dict[str, Any], needle: str, col: str = "cum_us_per_op") -> float | None:
    for row in prof.get("top", []) if isinstance(prof, dict) else []:
        if needle in row["function"]:
            return float(row[col])
    return None


def gaps(doc: dict[str, Any]) -> list[str]:
    """Where the time goes for each missed target, and what would close it (numbers from the
    run; the remedies are the bench's reading of the profiles, for core to decide)."""
    res = doc["results"]
    missed = {t["id"] for t in doc["targets"] if t["met"] is False}
    prof = res.get("profile", {})
    comp = (prof.get("components") or {}).get("us", {})
    var = (prof.get("variants") or {}).get("us", {})
    out: list[str] = []
    whole = comp.get("whole session.call")
    red = None
    if var.get("session.call, defaults") and var.get("session.call, redact=False"):
        red = var["session.call, defaults"] - var["session.call, redact=False"]
    if "overhead" in missed and whole:
        fp = comp.get("fingerprint_args (JCS + sha256)")
        app = comp.get("TraceWriter.append x2 (lock, dumps, chain, write)")
        wr = comp.get("os.write x2 of the same bytes")
        ch = comp.get("chain_digest x2 (sha256 of prev h + record)")
        dumps = comp.get("orjson.dumps x2 (call_start, call_end)")
        floor = sum(x for x in (fp, wr, ch, dumps) if x is not None)
        out.append(
            "- **Overhead per call.** In the piece-by-piece table the whole call is "
            f"{us(whole)} us: fingerprint {us(fp)}, two chained appends {us(app)} (of which "
            f"the two os.write {us(wr)} and the two chain hashes {us(ch)}), default redaction "
            f"{us(red)} in place (the variants table: defaults minus redact=False); the rest "
            "is the session's own bookkeeping (record dicts, decision records, locks, "
            "CallResult, context variables). The floor of the design (fingerprint, two "
            f"records encoded, chained and written) is {us(floor)} us on this machine that "
            "day (its system calls are slow: compare the os.write row). Already done: no "
            "redaction probe for arguments without strings, CallResult built through its "
            "slots, ToolSpec.is_async worked out once. What would close the rest: one record "
            "per call instead of two for tools that need no write-ahead (side_effect='read'), "
            "call_end written together with the next call_start (group commit), and a leaner "
            "_begin/_end (build each record once, reuse the decision's record dict, one lock "
            "section per record). The fstat before each write-ahead (it notices a trace "
            "deleted mid-run, so the tool does not run unrecorded) is one more system call."
        )
    if "fsync" in missed:
        f = res.get("w1", {}).get("fsync", {})
        c, b2, b1 = med(f, "calltape"), med(f, "bare2"), med(f, "bare1")
        cpu = med(res.get("w1", {}).get("calltape", {}))
        out.append(
            f"- **fsync mode.** calltape {us(c)} us against {us(b2)} us for the same two "
            f"write+fsync pairs: {us((c or 0) - (b2 or 0))} us apart, of which calltape's own "
            f"CPU work per call is about {us(cpu)} us (table 1); the rest is how this disk's "
            "fsync time varies between the interleaved blocks (see the p99 column). The "
            f"single-fsync row ({us(b1)} us) is the floor for a design that syncs call_end "
            "together with the next call_start (group commit); cutting the CPU overhead closes "
            "the part that is calltape's."
        )
    if "replay" in missed:
        c = res.get("w2", {}).get("calltape", {})
        out.append(
            "- **Replay hit.** resume "
            f"{us(med(c))} us, strict {us(med(c, 'strict'))} us: strict writes nothing, so "
            "its cost is fingerprint + redaction of the recorded args + decision + lookup + "
            "CallResult; resume adds two chained records per hit. To reach 5 us: skip "
            "redaction and record building when nothing is written (strict), and in resume "
            "write a hit as one compact record, or buffer hits and write them with the next "
            "live call (a replayed call has no side effect to protect, so it needs no "
            "write-ahead)."
        )
    if "open" in missed:
        po = prof.get("open", {})
        total = po.get("self_total_us_per_op") if isinstance(po, dict) else None
        loads = _profile_row(po, "orjson.loads", "self_us_per_op")
        share = f"{loads / total * 100:.0f}%" if loads and total else NA
        out.append(
            "- **Opening a trace.** In the open profile JSON parsing (orjson.loads) is "
            f"{share} of the time. The index is already one fused loop over the file's lines "
            "(no generator, no per-line validation call; the careful path only for the first, "
            "a torn or a malformed line), so what is left is one dict per record and the "
            "records themselves. Below 0.2 s needs parsing less: keep byte offsets of ok "
            "call_end records and parse their outputs on a hit, or write an index snapshot at "
            "close so that open parses only the tail after it."
        )
    w5 = res.get("w5", {})
    if "share-llamaindex" in missed:
        out.append(
            "- **LlamaIndex proxy share.** The schema keys are cached per fn_schema class "
            "(rebuilding the pydantic JSON schema per call cost 0.4-1.7 ms before), so what "
            "remains is one core call plus the proxy's own frame against a framework call of "
            f"{us(med(w5.get('llamaindex', {}), 'unwrapped'))} us, where 2% is a few "
            "microseconds: below the core's own floor. Cutting the core overhead cuts this "
            "share in proportion."
        )
    if "share-langchain" in missed:
        out.append(
            "- **LangGraph proxy share.** The added time is one core call plus the proxy's "
            "frame bookkeeping (see the tool-level measurement under table 5); the graph-level "
            "difference also carries ToolNode's thread-pool noise. Cutting the core overhead "
            "cuts this share in proportion."
        )
    return out


def render_markdown(doc: dict[str, Any]) -> str:
    env = doc["environment"]
    v = env["versions"]
    out = [
        "# Performance",
        "",
        "<!-- Generated by bench/run.py from one run; do not edit by hand. -->",
        "",
        "calltape sits on every tool call an agent makes, so its cost has to stay near the floor",
        "of the work it does: a hash, a policy lookup, one write. These numbers come from one run",
        "of the benchmark suite, every system measured in its own subprocess and temp dir, side",
        "by side. Machines are noisy: read the ratios, not the absolute microseconds.",
        "",
        "Produced by:",
        "",
        "```",
        doc["command"],
        "```",
        "",
        f"- Python {env['python']} ({env['implementation']}), {env['platform']}",
        f"- CPU: {env['cpu']}, {env['cores']} cores; load average {env['loadavg_start'][0]:.2f} at "
        f"start, {env.get('loadavg_end', [0])[0]:.2f} at the end "
        "(other processes share this machine)",
        f"- calltape {v.get('calltape')} at commit {env.get('git_commit')}"
        f"{' (core had uncommitted changes)' if env.get('core_dirty') else ''}; run started "
        f"{env.get('started_at')}, took {env.get('duration_s')} s",
        "- peers: "
        + ", ".join(
            f"{k} {v.get(k)}"
            for k in (
                "failcore",
                "agentledger-runtime",
                "agent-governance-toolkit-core",
                "agent-governance-toolkit-integrations",
            )
        ),
        "- frameworks: "
        + ", ".join(
            f"{k} {v.get(k)}"
            for k in ("langchain-core", "langgraph", "langgraph-prebuilt", "llama-index-core")
        ),
        "- machine-readable: `bench/results/latest.json` (same run)",
        "",
        "## Targets",
        "",
        "| target | goal | this run | verdict | detail |",
        "|---|---|---|---|---|",
    ]
    for t in doc["targets"]:
        out.append(
            f"| {_md_cell(t['target'])} | {_md_cell(t['goal'])} | {_md_cell(t['shown'])} | "
            f"**{_verdict(t)}** | {_md_cell(t['detail'])} |"
        )
    out.append("")
    for t in doc["tables"]:
        if t["id"] in (
            "profile-variants",
            "profile-components",
            "profile-call",
        ) and "## Where" not in "\n".join(out):
            out += [
                "## Where calltape's time goes",
                "",
                "From the same run: the call through calltape's variants (interleaved), the call "
                "timed piece by piece, and cProfile of calltape's own paths (self time per "
                "operation). All times in microseconds (us).",
                "",
            ]
        level = "###" if t["id"].startswith("profile") or t["id"] == "w1-fsync" else "##"
        out.append(f"{level} {t['title']}")
        out.append("")
        out.append("| " + " | ".join(_md_cell(c) for c in t["columns"]) + " |")
        out.append("|" + "---|" * len(t["columns"]))
        for row in t["rows"]:
            out.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
        out.append("")
        for n in t["notes"]:
            out.append(f"- {n}")
        if t["notes"]:
            out.append("")
    closing = gaps(doc)
    if closing:
        out += [
            "## Missed targets: where the time goes, what would close the gap",
            "",
            *closing,
            "",
        ]
    out += [
        "## Method",
        "",
        "- Per-call numbers: `time.perf_counter_ns()` around each call; median and p99 over all "
        "timed calls. Batch mean: one timer around the whole loop (no per-call timer cost). The "
        f"timer pair itself costs about {_timer_ns(doc)} ns, "
        "included in every per-call sample, the raw floor's too.",
        "- Each row is its own subprocess (`bench/worker.py JOB`) in a fresh temp dir; the garbage "
        "collector stays on. Peers run in their default durable mode. A peer whose calls cost "
        "milliseconds is timed on fewer calls within a fixed time budget (said under its table) "
        "so the suite ends in minutes.",
        "- Every system's records are counted on disk after its run, and a kill -9 test "
        "(`os._exit` after the 50th call returned) counts what survives a crash.",
        "- Workload code: `bench/jobs.py`; tables and verdicts: `bench/report.py`.",
        "",
    ]
    return "\n".join(out)
