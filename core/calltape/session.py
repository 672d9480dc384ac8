"""The Session: every tool call goes Resolve → Validate → Execute (or replay) → Commit.

:meth:`Session.run_tool` / :meth:`Session.arun_tool` are the one seam every integration uses;
:meth:`Session.call` / :meth:`Session.acall` call tools registered on the session through it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import difflib
import enum
import hashlib
import inspect
import logging
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar, cast, overload

import orjson

from calltape import control
from calltape._version import __version__
from calltape.approval import ApprovalRequest, Approver, ask_callback, ask_terminal
from calltape.context import _CURRENT, CallContext, idempotency_key
from calltape.contracts import check_contract
from calltape.errors import ReplayMiss, RunStateError, ToolNotFound, TraceError
from calltape.fingerprint import fingerprint_canonical, to_jsonable
from calltape.limits import Budget, RateLimit, RateWindow
from calltape.markers import declared_args
from calltape.policy import SIDE_EFFECTS, Decision, Policy, ToolCall
from calltape.policy.presets import AllowAll, allow_all
from calltape.redact import make_redactor
from calltape.resilience import Retry, acall_with_timeout, call_with_timeout, in_daemon_thread
from calltape.result import CallResult, ErrorInfo, Status, make_result
from calltape.trace import (
    FORMAT_VERSION,
    ChainState,
    RecordedCall,
    TraceIndex,
    TraceWriter,
    check_key,
    cut_torn_tail,
)
from calltape.trace import trace_key as trace_key_bytes

__all__ = ["ReplayMode", "RunState", "Session", "Summary", "ToolSpec"]

log = logging.getLogger("calltape")

F = TypeVar("F", bound=Callable[..., Any])

_now = time.time
_perf = time.perf_counter


class ReplayMode(str, enum.Enum):
    """How a session uses results already in its trace.

    * ``resume`` (default): a call whose fingerprint and occurrence already has an ``ok``
      result is answered from the trace without running; everything else runs.
    * ``strict``: offline; nothing executes. A call with no recorded result raises
      :class:`~calltape.errors.ReplayMiss`. The trace is not written.
    * ``off``: always execute (still recorded).
    """

    RESUME = "resume"
    STRICT = "strict"
    OFF = "off"


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool as the session knows it.

    Attributes:
        name: The tool's name (what the model calls).
        fn: The Python callable, or None for a tool only declared (e.g. a framework tool).
        description: Human/model-facing description (defaults to the docstring).
        side_effect: One of ``read``, ``write``, ``network``, ``exec``, ``unknown``.
        idempotent: Safe to run twice with the same arguments.
        paths: Parameters whose values are filesystem paths (for sandbox policies).
        urls: Parameters whose values are URLs or hosts (for network policies).
        reconcile: ``reconcile(idempotency_key) -> "done" | "not_done" | "unknown"``: asked on
            resume when the process died inside this tool, before deciding to run it again.
        timeout: Seconds before the call is abandoned and recorded as ``ToolTimeout``.
        retry: :class:`~calltape.resilience.Retry` settings (only for tools safe to repeat).
        fallback: Name of a registered tool to call with the same arguments when this one
            fails or is blocked.
        output: Output contract (pydantic model, JSON schema dict, ``"json"`` or ``"text"``).
        on_drift: ``"warn"`` or ``"block"`` when the output breaks its contract.
    """

    name: str
    fn: Callable[..., Any] | None = None
    description: str | None = None
    side_effect: str = "unknown"
    idempotent: bool = False
    paths: tuple[str, ...] = ()
    urls: tuple[str, ...] = ()
    reconcile: Callable[[str], str] | None = None
    timeout: float | None = None
    retry: Retry | None = None
    fallback: str | None = None
    output: Any = None
    on_drift: str = "warn"
    #: ``fn`` is a coroutine function (worked out once, not per call)
    is_async: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        is_async = self.fn is not None and inspect.iscoroutinefunction(self.fn)
        object.__setattr__(self, "is_async", is_async)


@dataclass
class Summary:
    """Counts for a session (this process's calls)."""

    calls: int = 0
    ok: int = 0
    errors: int = 0
    blocked: int = 0
    replayed: int = 0
    time_saved_s: float = 0.0
    tool_time_s: float = 0.0
    blocked_by_rule: dict[str, int] = field(default_factory=dict)
    cost_usd: float = 0.0
    tokens: int = 0
    state: str = "running"

    @property
    def time_saved(self) -> float:
        """Seconds of tool time that replay saved (alias of ``time_saved_s``)."""
        return self.time_saved_s

    def __getitem__(self, key: str) -> Any:
        """Mapping access, e.g. ``summary["blocked"]``."""
        return self.as_dict()[key]

    def as_dict(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "ok": self.ok,
            "errors": self.errors,
            "blocked": self.blocked,
            "replayed": self.replayed,
            "time_saved_s": round(self.time_saved_s, 6),
            "tool_time_s": round(self.tool_time_s, 6),
            "blocked_by_rule": dict(self.blocked_by_rule),
            "cost_usd": round(self.cost_usd, 6),
            "tokens": self.tokens,
            "state": self.state,
        }


# (session id, tool name) of the call running in this context: a second wrapper layer of the
# same session around the same tool passes straight through instead of recording twice.
_ACTIVE: ContextVar[tuple[int, str] | None] = ContextVar("calltape_active", default=None)


@dataclass(slots=True)
class _Pending:
    """A call that was decided and must now execute."""

    tool: str
    seq: int
    fp: str
    occ: int
    decision: Decision
    call_id: str | None
    start: dict[str, Any]
    secrets: list[str]  # argument values masked by key name: scrubbed from output and error too


class RunState(str, enum.Enum):
    """CREATED → RUNNING → PAUSED → COMPLETED / KILLED / FAILED (recorded in the trace)."""

    CREATED = "created"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    KILLED = "killed"
    FAILED = "failed"


_TRANSITIONS: dict[RunState, frozenset[RunState]] = {
    RunState.CREATED: frozenset({RunState.RUNNING, RunState.FAILED}),
    RunState.RUNNING: frozenset(
        {RunState.PAUSED, RunState.COMPLETED, RunState.KILLED, RunState.FAILED}
    ),
    RunState.PAUSED: frozenset(
        {RunState.RUNNING, RunState.COMPLETED, RunState.KILLED, RunState.FAILED}
    ),
    RunState.COMPLETED: frozenset(),
    RunState.KILLED: frozenset(),
    RunState.FAILED: frozenset(),
}
_POLL_S = 0.01
#: In the recorded reason of a call waiting for approval: the call's own seq (the record's
#: ``seq``; the writer numbers the record as it appends it). The returned decision has the number.
_SEQ = "<seq>"


class Session:
    """A recorded, gated run of tool calls.

    Args:
        trace: Path of the JSONL trace. Created if missing; an existing trace is resumed (a new
            attempt of the same run). Default: ``runs/<run_id>.jsonl``.
        policy: The gate (see :mod:`calltape.policy`): a policy object, or the path of a TOML
            policy file (loaded with :func:`calltape.policy.load_policy`, so a bad file raises
            ``PolicyFileError`` here, before any call). Default: allow everything, record all.
        replay: ``"resume"`` (default), ``"strict"`` or ``"off"``; see :class:`ReplayMode`.
        durability: ``"os"`` (default): each record is handed to the OS before the call
            proceeds, so a killed process loses nothing; ``"fsync"``: also fsync each record.
        run_id: Run id for a new trace (default: a random uuid). Ignored when resuming.
        raise_on_error: When True, :meth:`call`/:meth:`acall` raise the tool's exception (and
            :class:`~calltape.errors.ToolBlocked` for blocks) instead of returning the result.
        trace_key: Makes the record chain an HMAC (default: the ``CALLTAPE_TRACE_KEY``
            environment variable), so a rewritten record fails ``calltape verify --key``.
        shared: Start in the shared protocol at once. Without it a session alone on its trace
            appends without cross-process locking, and switches to the shared protocol when
            another process opens the same trace (several processes, one run).
        redact: Secrets are masked in recorded arguments, outputs and errors before they touch
            disk (default on; see :mod:`calltape.redact`). A list adds key names or callables
            ``fn(path, value) -> value``; ``False`` turns it off.
        blob_threshold: Outputs whose JSON is larger than this many bytes are stored in
            content-addressed files under ``<trace>.blobs/`` so the trace stays small and
            streamable; replay restores them.
        approver: Who answers ``ask`` decisions: a callable, ``"terminal"`` or ``"durable"``
            (see :mod:`calltape.approval`). Default: none, so ``ask`` blocks.
        approval_timeout: Seconds without an answer that decide deny.
        budget: Limits on executed calls, cost and tokens (:class:`~calltape.limits.Budget`).
        rate_limits: Per-tool :class:`~calltape.limits.RateLimit`.

    Raises:
        TraceError: the trace cannot be opened or written, or ``replay="strict"`` without one.
        TraceCorrupt: the existing trace is malformed (file and line named).
    """

    def __init__(
        self,
        trace: str | os.PathLike[str] | None = None,
        *,
        policy: Policy | str | os.PathLike[str] | None = None,
        replay: ReplayMode | str = "resume",
        durability: str = "os",
        run_id: str | None = None,
        raise_on_error: bool = False,
        trace_key: bytes | str | None = None,
        shared: bool = False,
        redact: bool | Sequence[str | Callable[[str, Any], Any]] = True,
        blob_threshold: int = 64 * 1024,
        approver: Approver | str | None = None,
        approval_timeout: float | None = None,
        budget: Budget | None = None,
        rate_limits: Mapping[str, RateLimit] | None = None,
    ) -> None:
        try:
            self.replay = ReplayMode(replay)
        except ValueError:
            raise ValueError(
                f"replay must be one of 'resume', 'strict', 'off', not {replay!r}"
            ) from None
        if policy is None:
            policy = allow_all()
        elif isinstance(policy, str | os.PathLike):
            from calltape.policy.file import load_policy

            policy = load_policy(policy)
        if not callable(getattr(policy, "decide", None)):
            raise TypeError(
                "policy must be a policy object (with a decide(call) method) or the path of a "
                f"policy file, got {type(policy).__name__}"
            )
        self.policy: Policy = policy
        self._fast_allow = isinstance(policy, AllowAll)
        self.raise_on_error = raise_on_error
        self._lock = threading.RLock()
        self._specs: dict[str, ToolSpec] = {}
        self._occ: dict[str, int] = {}
        self._summary = Summary()
        self._blocked_rules: Counter[str] = Counter()
        self._closed = False
        self.state = RunState.CREATED
        self._writer: TraceWriter | None = None
        if isinstance(approver, str) and approver not in ("terminal", "durable"):
            raise ValueError(
                f"approver must be a callable, 'terminal' or 'durable', not {approver!r}"
            )
        self._approver = approver
        self._approval_timeout = approval_timeout
        self._approvals: dict[str, list[list[Any]]] = {}
        self._budget = budget
        self._executed = 0
        self._per_tool: Counter[str] = Counter()
        self._spent = 0.0
        self._tokens = 0
        self._rates = {n: RateWindow(r) for n, r in (rate_limits or {}).items()}
        self._kill_reason: str | None = None
        self._next_poll = 0.0
        self._gated = budget is not None or bool(self._rates)

        new_id = run_id or uuid.uuid4().hex
        path = Path(trace) if trace is not None else Path("runs") / f"{new_id}.jsonl"
        self.trace_path = path
        self._key = trace_key_bytes(trace_key)
        self._redactor = make_redactor(redact)
        self._blob_threshold = blob_threshold
        self._seq = 0
        self._unknown: dict[tuple[str, int], int] = {}
        if self.replay is ReplayMode.STRICT:
            # strict replay is read-only: the recording stays exactly as it was
            if not (path.exists() and path.stat().st_size > 0):
                raise TraceError(
                    f"{path}: no trace to replay (replay='strict' needs a recorded trace); "
                    "record one first with replay='resume'"
                )
            self._index = TraceIndex.build(path)
            self.run_id, self.attempt = self._index.run_id, self._index.attempts + 1
            self._seq = self._index.last_seq
            self._replay_ok = self._index.ok
            return
        self._writer = writer = TraceWriter(path, durability, key=self._key, shared=shared)
        try:
            with writer.locked():
                if writer.size() > 0:
                    self._index = TraceIndex.build(path)
                    if self._index.torn is not None:
                        backup = cut_torn_tail(path, self._index.torn.nbytes)
                        log.warning(
                            "%s: a torn last record (%d bytes) from a crashed process was "
                            "moved to %s%s",
                            path,
                            self._index.torn.nbytes,
                            backup,
                            ""
                            if self._index.records
                            else "; nothing else was recorded, so the run starts afresh",
                        )
                if writer.size() > 0:
                    check_key(path, self._key, self._index.keyed)
                    idx = self._index
                    writer.state = ChainState(idx.head, idx.last_seq, idx.records, writer.size())
                    self.run_id, self.attempt = idx.run_id, idx.attempts + 1
                    header: dict[str, Any] = {
                        "type": "attempt_start",
                        "ts": _now(),
                        "run_id": self.run_id,
                        "attempt": self.attempt,
                        "calltape": __version__,
                        "pid": os.getpid(),
                        "replay": self.replay.value,
                    }
                    if not writer.shared and idx.open_attempts:
                        # we own the trace alone, so the attempts left open died with their
                        # processes: say so, and verify knows no tail was cut
                        header["closes"] = sorted(idx.open_attempts)
                else:
                    self._index = TraceIndex(path=str(path))
                    writer.state = ChainState()
                    self.run_id, self.attempt = new_id, 1
                    header = {
                        "type": "run_start",
                        "ts": _now(),
                        "format": FORMAT_VERSION,
                        "run_id": self.run_id,
                        "calltape": __version__,
                        "created_at": datetime.now(UTC).isoformat(),
                        "attempt": 1,
                        "pid": os.getpid(),
                        "keyed": self._key is not None,
                    }
                writer.append([header])
        except BaseException:
            writer.close()
            raise
        self._replay_ok = self._index.ok if self.replay is not ReplayMode.OFF else {}
        self._unknown = self._unknown_calls()
        self.state = RunState.RUNNING
        if self._index.ended == "paused" and self._writer is not None:
            # the trace shows the way out of PAUSED, as it shows the way in
            self._append(
                [
                    {
                        "type": "run_state",
                        "ts": _now(),
                        "state": RunState.RUNNING.value,
                        "reason": f"attempt {self.attempt} resumes the run paused for approval",
                    }
                ]
            )
        self._load_approvals()
        self._apply_inbox()

    # ------------------------------------------------------------------ run control

    def _transition(self, new: RunState, reason: str | None = None) -> None:
        with self._lock:
            if new is self.state:
                return
            if new not in _TRANSITIONS[self.state]:
                raise RunStateError(
                    f"run {self.run_id}: cannot go from {self.state.value} to {new.value}"
                )
            self.state = new
            if new in (RunState.PAUSED, RunState.KILLED, RunState.RUNNING):
                rec: dict[str, Any] = {"type": "run_state", "ts": _now(), "state": new.value}
                if reason:
                    rec["reason"] = self._redact_text(reason)
                self._append([rec])

    def _redact_text(self, text: str) -> str:
        """Free text bound for the trace (a reason, often an exception's message), redacted."""
        return text if self._redactor is None else self._redactor.text(text)

    def kill(self, reason: str = "killed") -> None:
        """Stop the run from any thread: the next call is blocked with rule ``killed``.

        A call already running finishes and is recorded. ``calltape kill TRACE`` does the
        same from another process.
        """
        with self._lock:
            if self._kill_reason is None and not self._closed:
                self._kill_reason = self._redact_text(reason)
                self._transition(RunState.KILLED, reason)

    def add_tokens(self, n: int) -> None:
        """Report tokens used (by the model); counted against ``Budget.max_tokens``."""
        with self._lock:
            self._tokens += int(n)

    def _poll(self) -> None:
        self._next_poll = _perf() + _POLL_S
        if self._writer is not None:
            self._writer.yield_if_asked()
        if self._writer is not None and control.pending(self.trace_path):
            self._apply_inbox()

    def _apply_inbox(self) -> None:
        if self._writer is None:
            return
        with self._lock:
            messages = [
                m for m in control.drain(self.trace_path) if m.get("id") not in self._index.seen
            ]
            if not messages:
                return
            records = []
            for m in messages:
                kind = m["type"]
                rec = {k: v for k, v in m.items() if k not in ("type", "ts")}
                records.append({"type": kind, "ts": m.get("ts", _now()), **rec})
            self._append(records)
            for m in messages:
                self._index.seen.add(m.get("id"))
                kind = m["type"]
                if kind == "kill":
                    self.kill(str(m.get("reason") or f"killed by {m.get('by')}"))
                elif kind == "resolution":
                    self._index.resolutions[int(m["seq"])] = str(m["outcome"])
                elif kind == "approval":
                    self._index.approvals[int(m["seq"])] = m
                    self._load_approvals()

    def _load_approvals(self) -> None:
        approvals: dict[str, list[list[Any]]] = {}
        for seq, rec in self._index.approvals.items():
            where = self._index.pending.get(seq)
            if where is not None:
                approvals.setdefault(where[0], []).append([where[1], rec, False])
        self._approvals = approvals

    def _take_approval(self, fp: str, occ: int) -> dict[str, Any] | None:
        entries = self._approvals.get(fp)
        if not entries:
            return None
        exact = [e for e in entries if e[0] == occ]
        for e in exact or [e for e in entries if not e[2]]:
            e[2] = True
            rec: dict[str, Any] = e[1]
            return rec
        return None

    def _ask(
        self, start: dict[str, Any], args: Mapping[str, Any], decision: Decision
    ) -> tuple[Decision, bool]:
        """Resolve an ``ask``: returns the decision and whether the call is now pending."""
        rule = decision.rule
        rec = self._take_approval(start["fp"], start["occ"])
        if rec is not None:
            by, why = rec.get("by", "?"), rec.get("reason") or ""
            start["approval"] = {"approved": bool(rec.get("approved")), "by": by, "reason": why}
            if rec.get("approved"):
                return Decision.allow(
                    rule, f"approved by {by}" + (f": {why}" if why else "")
                ), False
            return Decision.deny(rule, f"denied by {by}" + (f": {why}" if why else "")), False
        approver = self._approver
        if approver is None:
            return (
                Decision(
                    "ask",
                    rule,
                    f"{decision.reason} (needs human approval and no approver is configured: "
                    "blocked)",
                ),
                False,
            )
        if approver == "durable":
            return (
                Decision(
                    "ask",
                    rule,
                    f"{decision.reason}; waiting for human approval: run 'calltape approve "
                    f"{self.trace_path} {_SEQ}' or 'calltape deny {self.trace_path} {_SEQ} "
                    '--reason "..."\', then rerun the agent',
                ),
                True,
            )
        request = ApprovalRequest(start["tool"], args, rule, decision.reason, self.run_id)
        if approver == "terminal":
            ok, why, by = ask_terminal(request, self._approval_timeout)
        else:
            ok, why, by = ask_callback(approver, request, self._approval_timeout)  # type: ignore[arg-type]
        start["approval"] = {"approved": ok, "by": by, "reason": why, "ts": _now()}
        if ok:
            return Decision.allow(rule, f"approved by {by}: {why}"), False
        return Decision.deny(rule, f"denied by {by}: {why}"), False

    def _gate(self, name: str, args: Mapping[str, Any], start: dict[str, Any]) -> Decision | None:
        """Budgets and rate limits, for a call about to execute."""
        b = self._budget
        if b is not None:
            if b.max_calls is not None and self._executed >= b.max_calls:
                return Decision.deny(
                    "budget.max_calls",
                    f"budget max_calls exhausted: {self._executed} of {b.max_calls} calls used",
                )
            cap = b.max_calls_per_tool.get(name)
            if cap is not None and self._per_tool[name] >= cap:
                return Decision.deny(
                    f"budget.max_calls_per_tool.{name}",
                    f"budget for {name!r} exhausted: {self._per_tool[name]} of {cap} calls used",
                )
            if b.max_tokens is not None and self._tokens >= b.max_tokens:
                return Decision.deny(
                    "budget.max_tokens",
                    f"token budget exhausted: {self._tokens} of {b.max_tokens} tokens used",
                )
            price = b.price(name, args)
            if b.max_cost_usd is not None and self._spent + price > b.max_cost_usd + 1e-12:
                return Decision.deny(
                    "budget.max_cost_usd",
                    f"cost budget: this call costs ${price:.4f} and ${self._spent:.4f} of "
                    f"${b.max_cost_usd:.4f} is spent",
                )
            if price:
                start["cost_usd"] = price
        window = self._rates.get(name)
        if window is not None and window.limit.mode == "block":  # "wait" claimed its slot
            if window.wait_time() > 0:
                lim = window.limit
                return Decision.deny(
                    f"rate_limit.{name}",
                    f"rate limit for {name!r}: at most {lim.calls} calls per {lim.per:g}s",
                )
            window.take()
        if b is not None:
            self._executed += 1
            self._per_tool[name] += 1
            self._spent += float(start.get("cost_usd", 0.0))
        return None

    def _unknown_calls(self) -> dict[tuple[str, int], int]:
        """Calls that started and never ended (the process died), by (fingerprint, occurrence)."""
        out: dict[tuple[str, int], int] = {}
        for seq, rec in self._index.unfinished.items():
            out.setdefault((rec["fp"], rec["occ"]), seq)
        return out

    # ------------------------------------------------------------------ registration

    @overload
    def tool(self, fn: F, /) -> F: ...

    @overload
    def tool(
        self,
        fn: None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        side_effect: str = "unknown",
        idempotent: bool = False,
        paths: Sequence[str] = (),
        urls: Sequence[str] = (),
        reconcile: Callable[[str], str] | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        fallback: str | None = None,
        output: Any = None,
        on_drift: str = "warn",
    ) -> Callable[[F], F]: ...

    def tool(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        description: str | None = None,
        side_effect: str = "unknown",
        idempotent: bool = False,
        paths: Sequence[str] = (),
        urls: Sequence[str] = (),
        reconcile: Callable[[str], str] | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        fallback: str | None = None,
        output: Any = None,
        on_drift: str = "warn",
    ) -> Any:
        """Register a function as a tool; usable as ``@session.tool`` or ``@session.tool(...)``.

        Returns the function unchanged (call it through :meth:`call` to record it).

        Raises:
            ValueError: unknown side effect, or the name is taken by another function.
        """

        def deco(f: F) -> F:
            self.register(
                f,
                name=name,
                description=description,
                side_effect=side_effect,
                idempotent=idempotent,
                paths=paths,
                urls=urls,
                reconcile=reconcile,
                timeout=timeout,
                retry=retry,
                fallback=fallback,
                output=output,
                on_drift=on_drift,
            )
            return f

        return deco(fn) if fn is not None else deco

    def register(
        self,
        name_or_fn: str | Callable[..., Any],
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        description: str | None = None,
        side_effect: str = "unknown",
        idempotent: bool = False,
        paths: Sequence[str] = (),
        urls: Sequence[str] = (),
        reconcile: Callable[[str], str] | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        fallback: str | None = None,
        output: Any = None,
        on_drift: str = "warn",
    ) -> ToolSpec:
        """Register a callable as a tool: ``register(fn, ...)`` or ``register("name", fn, ...)``.

        Raises:
            TypeError: no callable given.
            ValueError: unknown side effect, or the name is taken by another function.
        """
        if isinstance(name_or_fn, str):
            if fn is None or not callable(fn):
                raise TypeError(
                    f"register({name_or_fn!r}, fn): fn must be a callable, got {type(fn).__name__}"
                )
            tool_name = name_or_fn
        else:
            if not callable(name_or_fn):
                raise TypeError(
                    f"register() needs a callable or a name and a callable, "
                    f"got {type(name_or_fn).__name__}"
                )
            fn = name_or_fn
            tool_name = name or getattr(fn, "__name__", None) or type(fn).__name__
            if tool_name == "<lambda>":
                raise ValueError("a lambda has no name: use session.register('name', fn)")
        if description is None:
            doc = inspect.getdoc(fn)
            description = doc.strip() if doc else None
        marked_paths, marked_urls = declared_args(fn)
        _check_declared_names(tool_name, fn, paths, urls)
        spec = ToolSpec(
            tool_name,
            fn,
            description,
            _check_side_effect(side_effect),
            idempotent,
            _merge(marked_paths, paths),
            _merge(marked_urls, urls),
            reconcile,
            *_run_options(timeout, retry, fallback, output, on_drift),
        )
        with self._lock:
            old = self._specs.get(tool_name)
            if old is not None and old.fn is not None and old.fn is not fn:
                raise ValueError(
                    f"tool name {tool_name!r} is already registered to {old.fn!r}; "
                    "pick another name with name=..."
                )
            self._specs[tool_name] = spec
        return spec

    def declare(
        self,
        name: str,
        *,
        side_effect: str = "unknown",
        idempotent: bool = False,
        description: str | None = None,
        paths: Sequence[str] = (),
        urls: Sequence[str] = (),
        reconcile: Callable[[str], str] | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        fallback: str | None = None,
        output: Any = None,
        on_drift: str = "warn",
    ) -> ToolSpec:
        """Declare metadata (side effect, idempotency) for a tool the session does not call
        itself, e.g. a third-party framework tool you wrap with an integration.

        Raises:
            ValueError: unknown side effect.
        """
        with self._lock:
            old = self._specs.get(name)
            spec = ToolSpec(
                name,
                old.fn if old else None,
                description if description is not None else (old.description if old else None),
                _check_side_effect(side_effect),
                idempotent,
                _merge(old.paths if old else (), paths),
                _merge(old.urls if old else (), urls),
                reconcile if reconcile is not None else (old.reconcile if old else None),
                *_run_options(timeout, retry, fallback, output, on_drift),
            )
            self._specs[name] = spec
        return spec

    @property
    def tools(self) -> Mapping[str, ToolSpec]:
        """Registered tools that have a Python callable, in registration order."""
        return {n: s for n, s in self._specs.items() if s.fn is not None}

    def spec_for(self, name: str) -> ToolSpec:
        """The registered or declared spec for ``name``; else an ``unknown`` side-effect spec."""
        spec = self._specs.get(name)
        return spec if spec is not None else ToolSpec(name)

    # ------------------------------------------------------------------ the lifecycle

    def run_tool(
        self,
        name: str,
        args: Mapping[str, Any],
        invoke: Callable[[], Any],
        *,
        call_id: str | None = None,
        framework: str | None = None,
    ) -> CallResult:
        """Run one call through the lifecycle; the seam every integration uses.

        Args:
            name: The tool's name.
            args: The arguments the tool receives (after the framework's validation; only
                the tool's schema keys). Fingerprinted and recorded.
            invoke: Performs the real call. Called at most once, only if the call is allowed
                and not replayed.
            call_id: The framework's tool-call id, stored in the record.
            framework: The integration's name, stored in the record.

        Returns:
            The :class:`CallResult`. Tool exceptions do not raise: status ``"error"``.

        Raises:
            FingerprintError: ``args`` has no faithful JSON form; nothing ran.
            ReplayMiss: ``replay="strict"`` and no recorded result; nothing ran.
            TraceError: the trace cannot be written; the tool did not run.
            RunStateError: the session is closed.
        """
        if _ACTIVE.get() == (id(self), name):
            return _passthrough(name, invoke, call_id)
        return self._run(name, args, invoke, call_id, framework, None)

    def _run(
        self,
        name: str,
        args: Mapping[str, Any],
        invoke: Callable[[], Any],
        call_id: str | None,
        framework: str | None,
        link: dict[str, Any] | None,
    ) -> CallResult:
        window = self._rates.get(name) if self._rates else None
        claimed = None
        if window is not None and window.limit.mode == "wait":
            while claimed is None:  # wait for a slot, then hold it (other threads wait on)
                wait, claimed = window.claim()
                if claimed is None:
                    time.sleep(wait)
        begun = self._begin_holding(window, claimed, name, args, call_id, framework, link)
        spec = self._specs.get(name)
        if isinstance(begun, CallResult):
            return self._fallback(begun, spec, args, call_id, framework)
        tries = 1
        while True:
            result = self._execute(begun, invoke, spec)
            retry = spec.retry if spec is not None else None
            if retry is not None and self._should_retry(result, spec, retry, tries):
                time.sleep(retry.delay(tries))
                tries += 1
                begun = self._begin_retry(begun, tries)
                continue
            return self._fallback(result, spec, args, call_id, framework)

    def _begin_holding(
        self,
        window: RateWindow | None,
        claimed: float | None,
        name: str,
        args: Mapping[str, Any],
        call_id: str | None,
        framework: str | None,
        link: dict[str, Any] | None,
    ) -> _Pending | CallResult:
        """:meth:`_begin`, giving back the rate-limit slot claimed for a call that does not
        execute (blocked, replayed, or an error before it could run)."""
        try:
            begun = self._begin(name, args, call_id, framework, link)
        except BaseException:
            if window is not None and claimed is not None:
                window.release(claimed)
            raise
        if isinstance(begun, CallResult) and window is not None and claimed is not None:
            window.release(claimed)
        return begun

    def _execute(
        self, begun: _Pending, invoke: Callable[[], Any], spec: ToolSpec | None
    ) -> CallResult:
        name = begun.tool
        tok = _ACTIVE.set((id(self), name))
        ctok = _CURRENT.set((self.run_id, begun.seq, name, begun.fp, begun.occ, self.attempt))
        t0 = _perf()
        try:
            if spec is not None and spec.timeout is not None:
                out = call_with_timeout(invoke, spec.timeout, name)
            else:
                out = invoke()
        except Exception as exc:
            return self._end(begun, None, exc, _perf() - t0)
        except BaseException as exc:  # KeyboardInterrupt, SystemExit: record, then let it go
            self._end(begun, None, exc, _perf() - t0)
            raise
        finally:
            _CURRENT.reset(ctok)
            _ACTIVE.reset(tok)
        return self._end(begun, out, None, _perf() - t0)

    @staticmethod
    def _should_retry(result: CallResult, spec: ToolSpec | None, retry: Retry, tries: int) -> bool:
        return (
            result.status == "error"
            and tries < retry.attempts
            and retry.retryable(result.exception)
            and spec is not None
            and (spec.side_effect == "read" or spec.idempotent)
        )

    def _fallback_target(self, result: CallResult, spec: ToolSpec | None) -> ToolSpec | None:
        """The registered tool to fall back to after ``result``, if any."""
        if result.status == "ok" or spec is None or spec.fallback is None:
            return None
        if result.decision.rule == "killed":
            return None  # a killed run runs nothing, fallbacks included
        return self._specs.get(spec.fallback)

    def _fallback(
        self,
        result: CallResult,
        spec: ToolSpec | None,
        args: Mapping[str, Any],
        call_id: str | None,
        framework: str | None,
    ) -> CallResult:
        fb = self._fallback_target(result, spec)
        if fb is None or fb.fn is None:
            return result
        fn = fb.fn
        kwargs = dict(args)

        def invoke() -> Any:
            out = fn(**kwargs)
            return _run_coroutine_sync(out) if fb.is_async else out

        return self._run(fb.name, kwargs, invoke, call_id, framework, {"fallback_for": result.seq})

    async def arun_tool(
        self,
        name: str,
        args: Mapping[str, Any],
        invoke: Callable[[], Awaitable[Any] | Any],
        *,
        call_id: str | None = None,
        framework: str | None = None,
    ) -> CallResult:
        """Async twin of :meth:`run_tool`: ``invoke()`` may return an awaitable.

        Raises:
            FingerprintError: ``args`` has no faithful JSON form; nothing ran.
            ReplayMiss: ``replay="strict"`` and no recorded result; nothing ran.
            TraceError: the trace cannot be written; the tool did not run.
            RunStateError: the session is closed.
        """
        if _ACTIVE.get() == (id(self), name):
            return await _apassthrough(name, invoke, call_id)
        return await self._arun(name, args, invoke, call_id, framework, None)

    async def _arun(
        self,
        name: str,
        args: Mapping[str, Any],
        invoke: Callable[[], Awaitable[Any] | Any],
        call_id: str | None,
        framework: str | None,
        link: dict[str, Any] | None,
    ) -> CallResult:
        window = self._rates.get(name) if self._rates else None
        claimed = None
        if window is not None and window.limit.mode == "wait":
            while claimed is None:  # wait for a slot, then hold it (other tasks wait on)
                wait, claimed = window.claim()
                if claimed is None:
                    await asyncio.sleep(wait)
        begun = self._begin_holding(window, claimed, name, args, call_id, framework, link)
        spec = self._specs.get(name)
        if isinstance(begun, CallResult):
            return await self._afallback(begun, spec, args, call_id, framework)
        tries = 1
        while True:
            result = await self._aexecute(begun, invoke, spec)
            retry = spec.retry if spec is not None else None
            if retry is not None and self._should_retry(result, spec, retry, tries):
                await asyncio.sleep(retry.delay(tries))
                tries += 1
                begun = self._begin_retry(begun, tries)
                continue
            return await self._afallback(result, spec, args, call_id, framework)

    async def _aexecute(
        self, begun: _Pending, invoke: Callable[[], Awaitable[Any] | Any], spec: ToolSpec | None
    ) -> CallResult:
        name = begun.tool
        tok = _ACTIVE.set((id(self), name))
        ctok = _CURRENT.set((self.run_id, begun.seq, name, begun.fp, begun.occ, self.attempt))
        t0 = _perf()
        try:
            out = invoke()
            if inspect.isawaitable(out):
                if spec is not None and spec.timeout is not None:
                    out = await acall_with_timeout(out, spec.timeout, name)
                else:
                    out = await out
        except Exception as exc:
            return self._end(begun, None, exc, _perf() - t0)
        except BaseException as exc:  # CancelledError included: record, then propagate
            self._end(begun, None, exc, _perf() - t0)
            raise
        finally:
            _CURRENT.reset(ctok)
            _ACTIVE.reset(tok)
        return self._end(begun, out, None, _perf() - t0)

    async def _afallback(
        self,
        result: CallResult,
        spec: ToolSpec | None,
        args: Mapping[str, Any],
        call_id: str | None,
        framework: str | None,
    ) -> CallResult:
        fb = self._fallback_target(result, spec)
        if fb is None or fb.fn is None:
            return result
        kwargs = dict(args)
        link = {"fallback_for": result.seq}
        return await self._arun(
            fb.name, kwargs, lambda: _start_async(fb, kwargs), call_id, framework, link
        )

    def _begin(
        self,
        name: str,
        args: Mapping[str, Any],
        call_id: str | None,
        framework: str | None,
        link: dict[str, Any] | None = None,
    ) -> _Pending | CallResult:
        if self._closed:
            raise RunStateError(
                f"session for {self.trace_path} is closed; open a new Session to continue the run"
            )
        if _perf() >= self._next_poll:
            self._poll()
        spec = self._specs.get(name)
        side_effect = spec.side_effect if spec is not None else "unknown"
        fp, rec_args, canon = fingerprint_canonical(name, args)  # FingerprintError: nothing runs
        secrets: list[str] = []
        if self._redactor is not None and self._writer is not None:
            # the fingerprint used the real args; the canonical bytes hold every arg string
            # (strict replay writes nothing: it redacts only what a ReplayMiss shows)
            rec_args = self._redactor(rec_args, "args", canon, secrets)
        with self._lock:
            occ = self._occ.get(fp, 0)
            self._occ[fp] = occ + 1
        start = {
            "type": "call_start",
            "ts": _now(),
            "seq": 0,
            "attempt": self.attempt,
            "tool": name,
            "fp": fp,
            "occ": occ,
            "ikey": idempotency_key(self.run_id, fp, occ),
            "args": rec_args,
            "side_effect": side_effect,
            "call_id": call_id,
            "framework": framework,
        }
        if link:
            start.update(link)
        pending = False
        if self._kill_reason is not None:
            decision = Decision.deny("killed", f"the run was killed: {self._kill_reason}")
        else:
            decision = self._decide(name, args, spec, side_effect, fp)
            if decision.action == "ask":
                decision, pending = self._ask(start, args, decision)
        with self._lock:
            if decision.action != "allow":
                return self._finish_blocked(start, decision, pending=pending)
            hit = self._replay_ok.get((fp, occ))
            if hit is not None:
                return self._finish_replayed(start, decision, hit)
            if self.replay is ReplayMode.STRICT:
                if self._redactor is not None and self._writer is None:
                    rec_args = self._redactor(rec_args, "args", canon)
                raise ReplayMiss(
                    name,
                    dict(args),
                    self._nearest(name, rec_args),
                    str(self.trace_path),
                    shown=rec_args,
                )
            if self._unknown:
                settled = self._settle_unknown(start, spec, decision)
                if settled is not None:
                    return settled
            if self._gated:
                gate = self._gate(name, args, start)
                if gate is not None:
                    return self._finish_blocked(start, gate)
            seq = self._append([start], new_seq=True)
        return _Pending(name, seq, fp, occ, decision, call_id, start, secrets)

    def _begin_retry(self, p: _Pending, attempt: int) -> _Pending:
        start = dict(p.start)
        start.update({"ts": _now(), "try": attempt, "retry_of": p.start.get("retry_of", p.seq)})
        with self._lock:
            seq = self._append([start], new_seq=True)
        return _Pending(p.tool, seq, p.fp, p.occ, p.decision, p.call_id, start, p.secrets)

    def _settle_unknown(
        self, start: dict[str, Any], spec: ToolSpec | None, decision: Decision
    ) -> CallResult | None:
        """A call whose earlier process died inside it: run again only when that is safe."""
        key = (start["fp"], start["occ"])
        seq = self._unknown.get(key)
        if seq is None:
            return None
        name = start["tool"]
        resolution = self._index.resolutions.get(seq)
        if resolution == "redo":
            return None
        if resolution == "done":
            done = RecordedCall(seq, name, start["args"], None, 0.0)
            return self._finish_replayed(
                start, Decision.allow("unknown_outcome.resolved", "resolved as done"), done
            )
        if spec is not None and (spec.side_effect == "read" or spec.idempotent):
            return None  # safe to repeat
        if spec is not None and spec.reconcile is not None:
            ctx = CallContext(self.run_id, seq, name, start["fp"], start["occ"], self.attempt)
            try:
                answer = spec.reconcile(ctx.idempotency_key)
            except Exception as exc:
                answer = f"unknown ({type(exc).__name__}: {exc})"
            if answer == "not_done":
                return None
            if answer == "done":
                done = RecordedCall(seq, name, start["args"], None, 0.0)
                return self._finish_replayed(
                    start, Decision.allow("unknown_outcome.reconciled", "reconcile: done"), done
                )
            why = f"its reconcile hook answered {answer!r}"
        else:
            why = f"{name!r} is not declared idempotent and has no reconcile hook"
        return self._finish_blocked(
            start,
            Decision.deny(
                "unknown_outcome",
                f"an earlier process died during this call (seq {seq}) so its outcome is unknown "
                f"and {why}. Check whether it took effect, then run: calltape resolve "
                f"{self.trace_path} {seq} --done (it happened) or --redo (run it again)",
            ),
        )

    def _decide(
        self, name: str, args: Mapping[str, Any], spec: ToolSpec | None, side_effect: str, fp: str
    ) -> Decision:
        if self._fast_allow:
            return _ALLOW_ALL
        call = ToolCall(name, args, side_effect, spec or ToolSpec(name), fp, self.run_id)
        try:
            decision = self.policy.decide(call)
            if not isinstance(decision, Decision):
                raise TypeError(
                    f"{type(self.policy).__name__}.decide() returned "
                    f"{type(decision).__name__}, not a Decision"
                )
        except Exception as exc:
            return Decision.deny(
                "policy_error",
                f"the policy could not be evaluated ({type(exc).__name__}: {exc}); "
                "the call was blocked (fail closed)",
            )
        return decision

    def _append(self, records: list[dict[str, Any]], *, new_seq: bool = False) -> int:
        if self._writer is not None:
            return self._writer.append(records, new_seq=new_seq)
        if new_seq:  # strict replay writes nothing; numbers stay unique in memory
            self._seq += 1
            for rec in records:
                rec["seq"] = self._seq
            return self._seq
        return 0

    def _finish_blocked(
        self, start: dict[str, Any], decision: Decision, *, pending: bool = False
    ) -> CallResult:
        end = {
            "type": "call_end",
            "ts": start["ts"],
            "seq": 0,
            "status": "pending_approval" if pending else "blocked",
            "output": None,
            "error": None,
            "decision": decision.as_record(),
            "replayed": False,
            "duration_s": 0.0,
        }
        seq = self._append([start, end], new_seq=True)
        s = self._summary
        s.calls += 1
        s.blocked += 1
        self._blocked_rules[decision.rule] += 1
        if pending:
            decision = Decision("ask", decision.rule, decision.reason.replace(_SEQ, str(seq)))
            self._index.pending[seq] = (start["fp"], start["occ"], start["ts"])
            if self.state is RunState.RUNNING:
                self._transition(RunState.PAUSED, f"seq {seq} is waiting for approval")
        return make_result(
            start["tool"],
            "blocked",
            None,
            None,
            decision,
            False,
            start["fp"],
            start["seq"],
            0.0,
            start["call_id"],
        )

    def _finish_replayed(
        self, start: dict[str, Any], decision: Decision, hit: RecordedCall
    ) -> CallResult:
        end = {
            "type": "call_end",
            "ts": start["ts"],
            "seq": 0,
            "status": "ok",
            "output": None,
            "error": None,
            "decision": decision.as_record(),
            "replayed": True,
            "replay_of": hit.seq,
            "duration_s": hit.duration_s,
        }
        self._append([start, end], new_seq=True)
        s = self._summary
        s.calls += 1
        s.ok += 1
        s.replayed += 1
        s.time_saved_s += hit.duration_s
        output = hit.output
        if type(output) is dict and BLOB_KEY in output:
            output = self._load_blob(output)
        return make_result(
            start["tool"],
            "ok",
            output,
            None,
            decision,
            True,
            start["fp"],
            start["seq"],
            hit.duration_s,
            start["call_id"],
        )

    def _end(self, p: _Pending, out: Any, exc: BaseException | None, duration: float) -> CallResult:
        status: Status
        redactor = self._redactor
        rec_err: dict[str, str] | None = None
        if exc is None:
            value, lossless = to_jsonable(out)
            t = type(value)
            large = False
            if t is dict or t is list or t is tuple:
                encoded = _dumps(value)
                if redactor is not None:
                    value = redactor(value, "output", encoded)
                large = len(encoded) > self._blob_threshold
            elif t is str:
                if redactor is not None:
                    value = redactor(value, "output")
                large = len(value) * 4 > self._blob_threshold
            if p.secrets and redactor is not None:
                value = redactor.scrub(value, p.secrets)
            if large:
                value = self._store_blob(value)
            err = None
            spec = self._specs.get(p.tool)
            if spec is not None and spec.output is not None:
                drift = check_contract(spec.output, out)
                if drift is not None:
                    return self._drift(p, value, lossless, duration, drift, spec)
            status = "ok"
        else:
            value, lossless = None, True
            err = ErrorInfo(type(exc).__qualname__, _exc_message(exc))
            msg = err.message
            if redactor is not None:
                msg = redactor.scrub(redactor.text(msg), p.secrets)
            rec_err = {"type": err.type, "message": msg}
            status = "error"
        end: dict[str, Any] = {
            "type": "call_end",
            "ts": _now(),
            "seq": p.seq,
            "status": status,
            "output": value,
            "error": rec_err,
            "decision": p.decision.as_record(),
            "replayed": False,
            "duration_s": duration,
        }
        if not lossless:
            end["output_lossy"] = True
        with self._lock:
            try:
                self._append([end])
            except TypeError:  # pragma: no cover - to_jsonable guarantees JSON; keep the record
                end["output"] = str(value)
                self._append([end])
            s = self._summary
            s.calls += 1
            s.tool_time_s += duration
            if err is None:
                s.ok += 1
            else:
                s.errors += 1
        return make_result(
            p.tool,
            status,
            out,
            err,
            p.decision,
            False,
            p.fp,
            p.seq,
            duration,
            p.call_id,
            exc,
        )

    def _drift(
        self,
        p: _Pending,
        value: Any,
        lossless: bool,
        duration: float,
        drift: dict[str, Any],
        spec: ToolSpec,
    ) -> CallResult:
        block = spec.on_drift == "block"
        decision = (
            Decision.deny("contract_drift", f"output broke its contract: {drift['detail']}")
            if block
            else p.decision
        )
        if not block:
            log.warning("%s: output contract drift (seq %d): %s", p.tool, p.seq, drift["detail"])
        end: dict[str, Any] = {
            "type": "call_end",
            "ts": _now(),
            "seq": p.seq,
            "status": "blocked" if block else "ok",
            "output": None if block else value,
            "error": None,
            "decision": decision.as_record(),
            "replayed": False,
            "duration_s": duration,
            "contract_drift": drift,
        }
        if not lossless:
            end["output_lossy"] = True
        with self._lock:
            self._append([end])
            s = self._summary
            s.calls += 1
            s.tool_time_s += duration
            if block:
                s.blocked += 1
                self._blocked_rules["contract_drift"] += 1
            else:
                s.ok += 1
        return make_result(
            p.tool,
            "blocked" if block else "ok",
            None if block else value,
            None,
            decision,
            False,
            p.fp,
            p.seq,
            duration,
            p.call_id,
        )

    def _store_blob(self, value: Any) -> Any:
        data = orjson.dumps(value)
        if len(data) <= self._blob_threshold or self._writer is None:
            return value
        digest = hashlib.sha256(data).hexdigest()
        folder = self.trace_path.with_name(self.trace_path.name + ".blobs")
        target = folder / f"{digest}.json"
        if not target.exists():
            try:
                folder.mkdir(exist_ok=True)
                tmp = folder / f".{digest}.{os.getpid()}.tmp"
                tmp.write_bytes(data)
                if self._writer.fsync:
                    with open(tmp, "rb+") as f:
                        os.fsync(f.fileno())
                os.replace(tmp, target)
            except OSError as exc:
                raise TraceError(
                    f"{target}: cannot store a large output ({exc.strerror or exc})"
                ) from None
        return {BLOB_KEY: digest, "bytes": len(data)}

    def _load_blob(self, ref: dict[str, Any]) -> Any:
        digest = ref[BLOB_KEY]
        target = self.trace_path.with_name(self.trace_path.name + ".blobs") / f"{digest}.json"
        try:
            data = target.read_bytes()
        except OSError as exc:
            raise TraceError(
                f"{target}: the recorded output of this call is missing ({exc.strerror}); "
                "restore the .blobs folder next to the trace, or resume with replay='off'"
            ) from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise TraceError(f"{target}: blob content does not match its hash (altered)")
        return orjson.loads(data)

    def _nearest(self, name: str, args: Any, limit: int = 3) -> list[str]:
        target = orjson.dumps(args, option=orjson.OPT_SORT_KEYS).decode()
        scored = []
        for rc in self._index.ok.values():
            text = orjson.dumps(rc.args, option=orjson.OPT_SORT_KEYS).decode()
            score = difflib.SequenceMatcher(None, target, text).ratio() + (rc.tool == name)
            scored.append((score, rc))
        scored.sort(key=lambda t: -t[0])
        return [f"seq {rc.seq}: {rc.tool}({_args_preview(rc.args)})" for _, rc in scored[:limit]]

    # ------------------------------------------------------------------ calling registered tools

    def _spec_or_raise(self, name: str) -> ToolSpec:
        spec = self._specs.get(name)
        if spec is None or spec.fn is None:
            raise ToolNotFound(name, list(self.tools))
        return spec

    def call(self, name: str, /, **kwargs: Any) -> CallResult:
        """Call a registered tool through the lifecycle.

        Returns:
            The :class:`CallResult`; tool errors and blocks are statuses, not exceptions
            (unless the session was created with ``raise_on_error=True``).

        Raises:
            ToolNotFound: ``name`` was never registered.
            FingerprintError: an argument has no faithful JSON form; the tool did not run.
            ReplayMiss: strict replay and no recorded result.
            TraceError: the trace cannot be written; the tool did not run.
        """
        spec = self._spec_or_raise(name)
        fn = spec.fn
        assert fn is not None
        if spec.is_async:

            def invoke() -> Any:
                return _run_coroutine_sync(fn(**kwargs))

        else:

            def invoke() -> Any:
                return fn(**kwargs)

        result = self.run_tool(name, kwargs, invoke)
        if self.raise_on_error and not result.ok:
            result.unwrap()
        return result

    async def acall(self, name: str, /, **kwargs: Any) -> CallResult:
        """Async :meth:`call`. Sync tools run in a worker thread so the event loop stays free.

        Raises:
            ToolNotFound: ``name`` was never registered.
            FingerprintError: an argument has no faithful JSON form; the tool did not run.
            ReplayMiss: strict replay and no recorded result.
            TraceError: the trace cannot be written; the tool did not run.
        """
        spec = self._spec_or_raise(name)
        result = await self.arun_tool(name, kwargs, lambda: _start_async(spec, kwargs))
        if self.raise_on_error and not result.ok:
            result.unwrap()
        return result

    # ------------------------------------------------------------------ run control

    def summary(self) -> Summary:
        """Counts of this session's calls, and the time replay saved."""
        with self._lock:
            s = self._summary
            return Summary(
                s.calls,
                s.ok,
                s.errors,
                s.blocked,
                s.replayed,
                s.time_saved_s,
                s.tool_time_s,
                dict(self._blocked_rules),
                self._spent,
                self._tokens,
                self.state.value,
            )

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, status: str = "completed", reason: str | None = None) -> None:
        """End this attempt: write a ``run_end`` record and release the trace. Idempotent.

        Args:
            status: ``"completed"`` or ``"failed"``.
            reason: Why, for a failed run.
        """
        if status not in ("completed", "failed"):
            raise ValueError(f"close(status=...) takes 'completed' or 'failed', not {status!r}")
        with self._lock:
            if self._closed:
                return
            self._closed = True
            # a killed or paused run ends as such, whatever the block around it did
            final = self.state.value if self.state in (RunState.KILLED, RunState.PAUSED) else status
            if self.state not in (RunState.KILLED, RunState.PAUSED):
                self.state = RunState(status)
            if self._writer is not None:
                rec: dict[str, Any] = {
                    "type": "run_end",
                    "ts": _now(),
                    "attempt": self.attempt,
                    "status": final,
                    "summary": self.summary().as_dict(),
                }
                if reason:
                    rec["reason"] = self._redact_text(reason)
                try:
                    # the last writer of a shared run closes the attempts of writers that died
                    orphans = self._writer.orphaned_attempts(self.attempt)
                    if orphans:
                        rec["closes"] = orphans
                    self._writer.append([rec])
                finally:
                    self._writer.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is None:
            self.close("completed")
        else:
            self.close("failed", f"{type(exc).__qualname__}: {_exc_message(exc)}")

    def __repr__(self) -> str:
        return (
            f"Session(trace={str(self.trace_path)!r}, run_id={self.run_id!r}, "
            f"attempt={self.attempt}, replay={self.replay.value!r})"
        )

    def __del__(self) -> None:  # pragma: no cover - best effort release
        with contextlib.suppress(Exception):
            if not self._closed and self._writer is not None:
                self._writer.close()


_ALLOW_ALL = Decision.allow("allow_all", "every call is allowed (allow_all)")


BLOB_KEY = "$calltape_blob"
_dumps = orjson.dumps


def _run_options(
    timeout: float | None, retry: Retry | None, fallback: str | None, output: Any, on_drift: str
) -> tuple[float | None, Retry | None, str | None, Any, str]:
    if timeout is not None and timeout <= 0:
        raise ValueError(f"timeout must be a positive number of seconds, not {timeout!r}")
    if retry is not None and not isinstance(retry, Retry):
        raise TypeError("retry= takes calltape.resilience.Retry(...)")
    if on_drift not in ("warn", "block"):
        raise ValueError(f"on_drift must be 'warn' or 'block', not {on_drift!r}")
    return timeout, retry, fallback, output, on_drift


def _merge(a: Sequence[str], b: Sequence[str] | str) -> tuple[str, ...]:
    if isinstance(b, str):
        raise TypeError(f"paths/urls take a list of parameter names, not the string {b!r}")
    return tuple(dict.fromkeys([*a, *b]))


def _check_declared_names(
    tool: str, fn: Callable[..., Any], paths: Sequence[str], urls: Sequence[str]
) -> None:
    """Refuse ``paths=``/``urls=`` names that are not parameters of ``fn``: a stale name (a
    renamed parameter, a typo) would leave the real argument unchecked by the sandbox presets.

    Raises:
        ValueError: a declared name is not a parameter of ``fn``.
    """
    if isinstance(paths, str) or isinstance(urls, str) or not (paths or urls):
        return  # _merge reports a bare string
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return  # no signature to check against (some builtins)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # takes any keyword: every name is possible
    unknown = [name for name in (*paths, *urls) if name not in params]
    if unknown:
        raise ValueError(
            f"register({tool!r}): {', '.join(map(repr, unknown))} in paths=/urls= is not a "
            f"parameter of {tool}({', '.join(params)}); a name that does not match would leave "
            "the real argument unchecked"
        )


def _check_side_effect(side_effect: str) -> str:
    if side_effect not in SIDE_EFFECTS:
        raise ValueError(
            f"unknown side_effect {side_effect!r}; use one of {', '.join(SIDE_EFFECTS)}"
        )
    return side_effect


def _exc_message(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:
        return f"<unprintable {type(exc).__qualname__}>"


def _args_preview(args: Any, limit: int = 80) -> str:
    if isinstance(args, dict):
        text = ", ".join(f"{k}={v!r}" for k, v in args.items())
    else:
        text = repr(args)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _passthrough(name: str, invoke: Callable[[], Any], call_id: str | None) -> CallResult:
    t0 = _perf()
    try:
        out = invoke()
    except Exception as exc:
        return CallResult(
            name,
            "error",
            None,
            ErrorInfo(type(exc).__qualname__, _exc_message(exc)),
            _PASS,
            False,
            "",
            -1,
            _perf() - t0,
            call_id,
            exc,
        )
    return CallResult(name, "ok", out, None, _PASS, False, "", -1, _perf() - t0, call_id)


async def _apassthrough(
    name: str, invoke: Callable[[], Awaitable[Any] | Any], call_id: str | None
) -> CallResult:
    async def run() -> Any:
        out = invoke()
        return await out if inspect.isawaitable(out) else out

    t0 = _perf()
    try:
        out = await run()
    except Exception as exc:
        return CallResult(
            name,
            "error",
            None,
            ErrorInfo(type(exc).__qualname__, _exc_message(exc)),
            _PASS,
            False,
            "",
            -1,
            _perf() - t0,
            call_id,
            exc,
        )
    return CallResult(name, "ok", out, None, _PASS, False, "", -1, _perf() - t0, call_id)


_PASS = Decision.allow("reentrant", "inner layer of a tool already being recorded")


def _start_async(spec: ToolSpec, kwargs: Mapping[str, Any]) -> Awaitable[Any]:
    """Start a registered tool for async code: an async tool's coroutine, or a sync tool on a
    worker thread (a daemon thread when it has a timeout: a hung tool must not block exit, and
    ``asyncio.run`` waits for the default executor's threads)."""
    fn = spec.fn
    assert fn is not None
    if spec.is_async:
        return cast(Awaitable[Any], fn(**kwargs))
    if spec.timeout is not None:
        return in_daemon_thread(fn, **kwargs)
    return asyncio.to_thread(fn, **kwargs)


def _run_coroutine_sync(coro: Any) -> Any:
    """Run an async tool's coroutine to completion for a sync caller.

    Without a running loop in this thread: ``asyncio.run``. Inside one (a sync callback running
    on the loop's thread), the coroutine runs on a worker thread with its own loop, in a copy
    of this context (``current_call()`` works), while the caller waits, as any sync call makes
    it wait; ``await session.acall(...)`` is the non-blocking way.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    ctx = contextvars.copy_context()
    with concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="calltape-sync") as pool:
        return pool.submit(ctx.run, asyncio.run, coro).result()
