"""The ``calltape`` command line.

Every problem is printed as one line (``calltape: error: ...``) with a non-zero exit: never a
traceback. A torn last record is a warning (exit 0): every intact record is still shown.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import orjson

from calltape import control
from calltape._version import __version__
from calltape.errors import CalltapeError, TraceError
from calltape.trace import Torn, iter_records

__all__ = ["main"]

EXIT_OK = 0
EXIT_DIFFERENT = 1
EXIT_ERROR = 2


@dataclass
class CallRow:
    """A call_start merged with its call_end (if any)."""

    seq: int
    tool: str
    args: dict[str, Any]
    fp: str
    occ: int
    attempt: int
    call_id: str | None
    side_effect: str
    status: str = "unfinished"
    output: Any = None
    error: dict[str, Any] | None = None
    decision: dict[str, Any] | None = None
    replayed: bool = False
    replay_of: int | None = None
    duration_s: float = 0.0
    note: str = ""
    cost_usd: float = 0.0
    line: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "line"}


@dataclass
class RunView:
    """A trace read for display."""

    path: str
    run_id: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    calls: list[CallRow] = field(default_factory=list)
    torn: Torn | None = None
    end: dict[str, Any] | None = None
    #: decisions by seq (``calltape resolve`` / ``approve`` / ``deny``), recorded in the trace
    resolutions: dict[int, str] = field(default_factory=dict)
    approvals: dict[int, dict[str, Any]] = field(default_factory=dict)


def load_run(path: str) -> RunView:
    """Read a trace into calls (validated records).

    Raises:
        TraceError: unreadable file. TraceCorrupt: malformed record (file and line).
    """
    view = RunView(path=path)
    open_calls: dict[int, CallRow] = {}
    done: dict[int, CallRow] = {}
    for item in iter_records(path):
        if isinstance(item, Torn):
            view.torn = item
            continue
        line, rec = item
        kind = rec.type
        if kind == "run_start":
            view.run_id = rec.run_id
            view.attempts.append({"attempt": rec.attempt, "ts": rec.ts})
        elif kind == "attempt_start":
            view.attempts.append({"attempt": rec.attempt, "ts": rec.ts})
            view.end = None
        elif kind == "call_start":
            row = CallRow(
                rec.seq,
                rec.tool,
                rec.args,
                rec.fp,
                rec.occ,
                rec.attempt,
                rec.call_id,
                rec.side_effect,
                line=line,
            )
            row.note = _note(rec)
            row.cost_usd = rec.cost_usd or 0.0
            open_calls[rec.seq] = row
            view.calls.append(row)
        elif kind == "call_end":
            ended = open_calls.pop(rec.seq, None)
            if ended is None:
                from calltape.errors import TraceCorrupt

                raise TraceCorrupt(path, line, f"call_end for seq {rec.seq} has no call_start")
            ended.status = rec.status
            ended.output = rec.output
            if rec.replayed and rec.replay_of is not None and rec.replay_of in done:
                # a replay record holds no output of its own: it returned its original's
                ended.output = done[rec.replay_of].output
            ended.error = rec.error.model_dump() if rec.error else None
            ended.decision = rec.decision.model_dump()
            ended.replayed = rec.replayed
            ended.replay_of = rec.replay_of
            ended.duration_s = rec.duration_s
            if rec.contract_drift:
                ended.note = _join(ended.note, f"contract drift: {rec.contract_drift['detail']}")
            done[rec.seq] = ended
        elif kind == "run_end":
            view.end = {"status": rec.status, "attempt": rec.attempt, "reason": rec.reason}
        elif kind == "resolution":
            view.resolutions[rec.seq] = rec.outcome
        elif kind == "approval":
            view.approvals[rec.seq] = {"approved": rec.approved, "by": rec.by}
    return view


# ------------------------------------------------------------------ formatting helpers


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def _note(rec: Any) -> str:
    note = ""
    if rec.retry_of is not None:
        note = f"retry {rec.try_} of #{rec.retry_of}"
    if rec.fallback_for is not None:
        note = _join(note, f"fallback for #{rec.fallback_for}")
    if rec.approval:
        verb = "approved" if rec.approval.get("approved") else "denied"
        note = _join(note, f"{verb} by {rec.approval.get('by')}")
    return note


def _preview(value: Any, limit: int = 48) -> str:
    if isinstance(value, dict):
        text = ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    else:
        text = _short(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(v: Any) -> str:
    if isinstance(v, str):
        return repr(v)
    return orjson.dumps(v).decode() if not isinstance(v, float) else f"{v:g}"


def _table(rows: list[list[str]], headers: list[str], out: TextIO) -> None:
    widths = [len(h) for h in headers]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r, strict=True)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    out.write(fmt.format(*headers).rstrip() + "\n")
    out.write(fmt.format(*("-" * w for w in widths)).rstrip() + "\n")
    for r in rows:
        out.write(fmt.format(*r).rstrip() + "\n")


def _duration(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f}µs"
    if s < 1:
        return f"{s * 1e3:.1f}ms"
    return f"{s:.2f}s"


def _warn_torn(view: RunView, err: TextIO) -> None:
    if view.torn is not None:
        err.write(
            f"calltape: warning: {view.path}:{view.torn.line}: torn last record "
            f"({view.torn.nbytes} bytes, cut short by a crash) ignored; every record before it "
            f"is intact (run 'calltape repair {view.path}' to remove it)\n"
        )


def _summary_counts(calls: Sequence[CallRow]) -> dict[str, Any]:
    counts: dict[str, Any] = {
        "calls": len(calls),
        "ok": 0,
        "error": 0,
        "blocked": 0,
        "unfinished": 0,
        "replayed": 0,
    }
    by_rule: dict[str, int] = {}
    duration = 0.0
    saved = 0.0
    cost = 0.0
    for c in calls:
        counts[c.status] = counts.get(c.status, 0) + 1
        cost += c.cost_usd
        if c.replayed:
            counts["replayed"] += 1
            saved += c.duration_s
        else:
            duration += c.duration_s
        if c.status == "blocked" and c.decision:
            by_rule[c.decision["rule"]] = by_rule.get(c.decision["rule"], 0) + 1
    counts["errors"] = counts.pop("error")
    counts["blocked_by_rule"] = by_rule
    counts["tool_time_s"] = round(duration, 6)
    counts["time_saved_s"] = round(saved, 6)
    counts["cost_usd"] = round(cost, 6)
    return counts


# ------------------------------------------------------------------ commands


def cmd_show(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    view = load_run(args.trace)
    if args.json:
        for c in view.calls:
            out.write(orjson.dumps(c.as_dict()).decode() + "\n")
        _warn_torn(view, err)
        return EXIT_OK
    status = view.end["status"] if view.end else "not closed (running, or the process died)"
    out.write(
        f"run {view.run_id}  {view.path}\n"
        f"attempts: {len(view.attempts)}  calls: {len(view.calls)}  last status: {status}\n\n"
    )
    rows = []
    for c in view.calls:
        decision = (c.decision or {}).get("rule", "-")
        rows.append(
            [
                str(c.seq),
                str(c.attempt),
                c.tool,
                c.status,
                decision,
                "yes" if c.replayed else "",
                _duration(c.duration_s) if c.status != "unfinished" else "-",
                _preview(c.args),
                c.note,
            ]
        )
    _table(
        rows,
        ["seq", "att", "tool", "status", "decision", "replayed", "duration", "args", "note"],
        out,
    )
    if args.summary:
        s = _summary_counts(view.calls)
        out.write(
            f"\nsummary: {s['calls']} calls, {s['ok']} ok, {s['errors']} errors, "
            f"{s['blocked']} blocked, {s.get('pending_approval', 0)} waiting for approval, "
            f"{s['replayed']} replayed, {s['unfinished']} unfinished; "
            f"tool time {_duration(s['tool_time_s'])}, saved by replay "
            f"{_duration(s['time_saved_s'])}, cost ${s['cost_usd']:.4f}\n"
        )
        for rule, n in sorted(s["blocked_by_rule"].items()):
            out.write(f"  blocked by {rule}: {n}\n")
    _warn_torn(view, err)
    return EXIT_OK


def _iter_traces(directory: Path) -> Iterator[Path]:
    yield from sorted(directory.rglob("*.jsonl"))


def cmd_list(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if not args.dir:
        raise TraceError("list needs a directory (the default is runs/)")
    directory = Path(args.dir)
    if not directory.is_dir():
        raise TraceError(f"{directory}: no such directory (traces are written to runs/ by default)")
    rows = []
    for p in _iter_traces(directory):
        try:
            view = load_run(str(p))
        except CalltapeError as exc:
            rows.append([str(p), "-", "-", "-", "-", "-", "-", f"unreadable: {exc}"])
            continue
        s = _summary_counts(view.calls)
        status = view.end["status"] if view.end else "open"
        if view.torn is not None:
            status += " (torn tail)"
        rows.append(
            [
                str(p),
                view.run_id[:12],
                str(len(view.attempts)),
                str(s["calls"]),
                str(s["ok"]),
                str(s["errors"]),
                str(s["blocked"]),
                status,
            ]
        )
    if not rows:
        out.write(f"no traces (*.jsonl) under {directory}\n")
        return EXIT_OK
    _table(rows, ["trace", "run", "attempts", "calls", "ok", "errors", "blocked", "status"], out)
    return EXIT_OK


def cmd_replay(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    view = load_run(args.trace)
    # decisions still in the control inbox reach the trace when a session next opens it
    for msg in control.peek(args.trace):
        with contextlib.suppress(KeyError, TypeError, ValueError):
            if msg["type"] == "resolution":
                view.resolutions[int(msg["seq"])] = str(msg["outcome"])
            elif msg["type"] == "approval":
                view.approvals[int(msg["seq"])] = {
                    "approved": bool(msg["approved"]),
                    "by": msg.get("by"),
                }
    # one row per logical call (fingerprint, occurrence), in the order the run first made it
    first: dict[tuple[str, int], CallRow] = {}
    ok: dict[tuple[str, int], CallRow] = {}
    for c in view.calls:
        key = (c.fp, c.occ)
        first.setdefault(key, c)
        if c.status == "ok" and not c.replayed and key not in ok:
            ok[key] = c
    rows = []
    counts = {"replay": 0, "run": 0, "held": 0}
    why = {"error": "it failed", "blocked": "it was blocked"}
    for key, c in first.items():
        hit = ok.get(key)
        if hit is not None:
            kind, action = "replay", f"replay seq {hit.seq} (recorded ok)"
        else:
            history = [x for x in view.calls if (x.fp, x.occ) == key]
            kind, action = _resume_action(view, history, why)
        counts[kind] += 1
        rows.append([str(c.seq), c.tool, action, _preview(c.args)])
    out.write(f"a resume of {view.path} would:\n\n")
    _table(rows, ["seq", "tool", "on resume", "args"], out)
    out.write(
        f"\n{counts['replay']} calls answered from the trace, {counts['run']} decided and run "
        f"again, {counts['held']} held (waiting for a human, or blocked until one decides)\n"
    )
    _warn_torn(view, err)
    return EXIT_OK


def _resume_action(view: RunView, history: list[CallRow], why: dict[str, str]) -> tuple[str, str]:
    """What a resume does with a logical call that has no success, from its records so far."""
    trace, last = view.path, history[-1]
    # a decision about any record of this logical call applies to it
    outcome = next((view.resolutions[x.seq] for x in history if x.seq in view.resolutions), None)
    decided = next(
        (view.approvals[x.seq] for x in reversed(history) if x.seq in view.approvals), None
    )
    if last.status == "unfinished":  # the process died inside the call
        if outcome == "done":
            return "replay", "answer from the trace without running (resolved: done)"
        if outcome == "redo":
            return "run", "run again (resolved: redo)"
        if last.side_effect == "read":
            return "run", "run again (outcome unknown; a read is safe to repeat)"
        return "held", (
            "outcome unknown: run again if the tool is idempotent, else its reconcile hook "
            f"decides, else blocked until 'calltape resolve {trace} {last.seq} --done|--redo'"
        )
    if last.status == "pending_approval":
        if decided is None:
            return "held", f"wait for approval ('calltape approve {trace} {last.seq}')"
        if decided["approved"]:
            return "run", f"run (approved by {decided['by']})"
        return "held", f"block (denied by {decided['by']})"
    return "run", f"decide and run again ({why.get(last.status, last.status)})"


def _logical(view: RunView) -> list[CallRow]:
    """One row per logical call (fingerprint, occurrence), in the order the run first made it,
    with its last outcome: a crashed run that was resumed compares equal to a clean run of the
    same calls (its replays, re-runs and retries are the same logical calls)."""
    latest: dict[tuple[str, int], CallRow] = {}
    for c in view.calls:
        latest[(c.fp, c.occ)] = c  # a dict keeps the first position, the value is the last
    return list(latest.values())


def cmd_diff(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    a, b = load_run(args.a), load_run(args.b)
    ca, cb = _logical(a), _logical(b)
    for i, (x, y) in enumerate(zip(ca, cb, strict=False)):
        diffs = []
        if x.tool != y.tool:
            diffs.append(f"tool: {x.tool!r} vs {y.tool!r}")
        else:
            if x.args != y.args:
                keys = sorted(set(x.args) | set(y.args))
                for k in keys:
                    if x.args.get(k) != y.args.get(k):
                        diffs.append(
                            f"args.{k}: {_short(x.args.get(k))} vs {_short(y.args.get(k))}"
                        )
            if x.status != y.status:
                diffs.append(f"status: {x.status} vs {y.status}")
            elif x.output != y.output:
                diffs.append(f"output: {_preview(x.output, 60)} vs {_preview(y.output, 60)}")
        if diffs:
            out.write(
                f"first divergence at call #{i + 1} (seq {x.seq} in A, seq {y.seq} in B), "
                f"tool {x.tool!r}:\n"
            )
            for d in diffs:
                out.write(f"  {d}\n")
            return EXIT_DIFFERENT
    if len(ca) != len(cb):
        longer, name = (ca, "A") if len(ca) > len(cb) else (cb, "B")
        extra = longer[min(len(ca), len(cb))]
        out.write(
            f"first divergence at call #{min(len(ca), len(cb)) + 1}: only {name} has more calls "
            f"({len(ca)} vs {len(cb)}), next is seq {extra.seq} "
            f"{extra.tool}({_preview(extra.args)})\n"
        )
        return EXIT_DIFFERENT
    out.write(f"no divergence: {len(ca)} calls with the same tools, arguments and outcomes\n")
    return EXIT_OK


def cmd_verify(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from calltape.integrity import verify

    report = verify(args.trace, args.key)
    if report.problem is not None:
        out.write(f"{report.path}:{report.line}: {report.problem}\n")
        return EXIT_DIFFERENT
    keyed = "HMAC" if report.keyed else "sha256"
    if not report.closed:
        which = ", ".join(str(a) for a in sorted(report.open_attempts))
        out.write(
            f"{report.path}: {report.records} records, {keyed} chain intact, but the run was "
            f"never closed (no run_end for attempt {which or '?'}): its process died, is "
            "still running, or the tail was cut\n"
        )
        return EXIT_OK if args.allow_open else EXIT_DIFFERENT
    out.write(
        f"ok: {report.records} records, {keyed} chain intact, run closed (head {report.head})\n"
    )
    return EXIT_OK


def cmd_repair(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from calltape.integrity import repair

    out.write(repair(args.trace) + "\n")
    return EXIT_OK


def cmd_resolve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from calltape.integrity import resolve

    outcome = "done" if args.done else "redo"
    out.write(resolve(args.trace, args.seq, outcome, reason=args.reason) + "\n")
    return EXIT_OK


def cmd_approve(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from calltape.integrity import decide_approval

    approved = args.command == "approve"
    if not approved and not (args.reason or "").strip():
        raise TraceError('deny needs a reason (--reason "..."): it is recorded in the trace')
    out.write(decide_approval(args.trace, args.seq, approved, reason=args.reason) + "\n")
    return EXIT_OK


def cmd_kill(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from calltape.integrity import kill

    out.write(kill(args.trace, args.reason) + "\n")
    return EXIT_OK


def cmd_demo(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from calltape.demo import run_demo

    return run_demo(Path(args.dir), out)


# ------------------------------------------------------------------ entry point


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line + usage, exit 2, no traceback
        self.print_usage(sys.stderr)
        sys.stderr.write(f"calltape: error: {message}\n")
        raise SystemExit(EXIT_ERROR)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="calltape", description="Inspect, replay and compare calltape traces.")
    p.add_argument("--version", action="version", version=f"calltape {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    s = sub.add_parser("show", help="show a trace as a table")
    s.add_argument("trace")
    s.add_argument("--json", action="store_true", help="one JSON object per call")
    s.add_argument("--summary", action="store_true", help="counts by status and rule")
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("list", help="list the runs under a directory")
    s.add_argument("dir", nargs="?", default="runs")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser(
        "replay", help="what a resume of this trace would replay and what it would run"
    )
    s.add_argument("trace")
    s.set_defaults(func=cmd_replay)

    s = sub.add_parser("diff", help="first divergence between two traces")
    s.add_argument("a")
    s.add_argument("b")
    s.set_defaults(func=cmd_diff)

    s = sub.add_parser("verify", help="check the hash chain and that the run was closed")
    s.add_argument("trace")
    s.add_argument("--key", help="HMAC key of a keyed trace (default: $CALLTAPE_TRACE_KEY)")
    s.add_argument(
        "--allow-open", action="store_true", help="exit 0 for an intact run that is still open"
    )
    s.set_defaults(func=cmd_verify)

    s = sub.add_parser("repair", help="remove a torn last record (keeps a backup)")
    s.add_argument("trace")
    s.set_defaults(func=cmd_repair)

    s = sub.add_parser("resolve", help="decide a call whose process died inside it")
    s.add_argument("trace")
    s.add_argument("seq", type=int)
    g = s.add_mutually_exclusive_group(required=True)
    g.add_argument("--done", action="store_true", help="it happened: answer it without running")
    g.add_argument("--redo", action="store_true", help="it did not happen: run it again")
    s.add_argument("--reason")
    s.set_defaults(func=cmd_resolve)

    for verb in ("approve", "deny"):
        s = sub.add_parser(verb, help=f"{verb} a call waiting for human approval")
        s.add_argument("trace")
        s.add_argument("seq", type=int)
        s.add_argument("--reason", required=verb == "deny", help="why (recorded in the trace)")
        s.set_defaults(func=cmd_approve)

    s = sub.add_parser("kill", help="stop a running agent: its next call is blocked")
    s.add_argument("trace")
    s.add_argument("--reason")
    s.set_defaults(func=cmd_kill)

    s = sub.add_parser("demo", help="run the offline demo (record, block, crash, resume)")
    s.add_argument(
        "--dir", default="calltape-demo", help="where the demo writes (default: ./calltape-demo)"
    )
    s.set_defaults(func=cmd_demo)

    import calltape.policy.cli  # noqa: F401  (registers `calltape policy`)

    for register in _EXTRA_COMMANDS:
        register(sub)
    return p


#: Other modules (policy, integrity) add subcommands here.
_EXTRA_COMMANDS: list[Callable[[Any], None]] = []


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI. Returns the exit code (0 ok, 1 difference found, 2 error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    out, err = sys.stdout, sys.stderr
    try:
        return int(args.func(args, out, err))
    except CalltapeError as exc:
        err.write(f"calltape: error: {_one_line(str(exc))}\n")
        return EXIT_ERROR
    except BrokenPipeError:  # e.g. piped into head
        with contextlib.suppress(Exception):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        return EXIT_OK
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        err.write(f"calltape: error: {where}{exc.strerror or exc}\n")
        return EXIT_ERROR
    except KeyboardInterrupt:
        err.write("calltape: interrupted\n")
        return 130
    except RecursionError:
        err.write("calltape: error: the input is nested too deeply to handle\n")
        return EXIT_ERROR
    except Exception as exc:  # never a traceback: say what happened and where to report it
        err.write(
            f"calltape: internal error: {type(exc).__name__}: {_one_line(str(exc))} "
            "(please report this with the command you ran)\n"
        )
        return EXIT_ERROR


def _one_line(text: str) -> str:
    return " ".join(part.strip() for part in text.splitlines() if part.strip())


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
