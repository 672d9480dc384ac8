"""Tamper evidence and repair: ``calltape verify``, ``calltape repair``, ``calltape resolve``.

Every record carries ``h`` = sha256 (HMAC-SHA256 with a trace key) of the previous record's
``h`` and its own JSON without ``h``, so editing, deleting, inserting or reordering any record
breaks the chain at that line. A session that closes writes ``run_end`` with the number of
records before it and the chain head, so records cut from before it are caught; a trace whose
last record is not a ``run_end`` is reported as never closed (the process died, or its tail was
cut). With a key, an attacker who rewrites a record and recomputes the chain without the key
is caught too.

Every attempt started in the file must be closed by its own ``run_end`` (or taken over by a
later attempt that found its process dead), so cutting the file back to an earlier writer's
genuine ``run_end`` is caught too. What a chain cannot catch: cutting off whole trailing attempts
*including* their ``attempt_start``. Keep the head ``verify`` prints somewhere else (a log, a
ticket) when you need that guarantee.
"""

from __future__ import annotations

import fcntl
import getpass
import os
import shutil
import time
from dataclasses import dataclass, field

import orjson

from calltape import control
from calltape.errors import TraceCorrupt, TraceError
from calltape.trace import (
    TraceIndex,
    chain_digest,
    iter_raw,
    open_trace,
    split_chained,
    trace_key,
)

__all__ = ["VerifyReport", "decide_approval", "kill", "repair", "resolve", "verify"]


@dataclass
class VerifyReport:
    """What ``verify`` found."""

    path: str
    records: int = 0
    head: str = ""
    closed: bool = False
    keyed: bool = False
    problem: str | None = None
    line: int | None = None
    notes: list[str] = field(default_factory=list)
    #: attempts started in this file and never closed (their process died, or the tail that
    #: held their ``run_end`` was cut)
    open_attempts: set[int] = field(default_factory=set)

    @property
    def intact(self) -> bool:
        return self.problem is None


def verify(path: str | os.PathLike[str], key: bytes | str | None = None) -> VerifyReport:
    """Check the hash chain and the closing record of a trace (streaming, constant memory).

    Raises:
        TraceError: the file cannot be opened.
        TraceCorrupt: the file is not a calltape trace at all.
    """
    p = os.fspath(path)
    k = trace_key(key)
    report = VerifyReport(path=p)
    prev = b""
    last_type = ""
    f = open_trace(p)  # TraceError: missing, a directory, a pipe, unreadable
    with f:
        for lineno, raw in enumerate(f, start=1):
            if not raw.endswith(b"\n"):
                report.problem, report.line = (
                    f"torn last record ({len(raw)} bytes, cut short by a crash); "
                    f"'calltape repair {p}' removes it",
                    lineno,
                )
                return report
            parts = split_chained(raw)
            if parts is None:
                if lineno == 1:
                    _check_header(p, raw)
                report.problem, report.line = "record has no chain hash (h)", lineno
                return report
            body, h = parts
            try:
                rec = orjson.loads(body)
            except orjson.JSONDecodeError:
                if lineno == 1:
                    raise TraceCorrupt(p, 1, "not a calltape trace") from None
                report.problem, report.line = "record is not valid JSON", lineno
                return report
            if lineno == 1:
                _check_header(p, raw)
                report.keyed = bool(rec.get("keyed"))
                if report.keyed and k is None:
                    raise TraceError(
                        f"{p}: this trace is keyed (HMAC chain); pass --key or set "
                        "CALLTAPE_TRACE_KEY to verify it"
                    )
                if not report.keyed and k is not None and chain_digest(prev, body, k) != h:
                    # a user who passed a key to an unkeyed trace, or a forger who rewrote a
                    # keyed trace as unkeyed: both fail, and the message names both
                    report.problem, report.line = (
                        "the trace says it was recorded without a key, but a key was given: "
                        "if it was recorded unkeyed, verify it without --key (and with "
                        "CALLTAPE_TRACE_KEY unset); otherwise it was rewritten to drop its key",
                        lineno,
                    )
                    return report
            if chain_digest(prev, body, k) != h:
                keyed = " (or the key is wrong)" if k is not None else ""
                report.problem, report.line = (
                    "chain broken: this record was altered, or a record before it was "
                    f"deleted, inserted or reordered{keyed}",
                    lineno,
                )
                return report
            if rec.get("type") == "run_end" and (
                rec.get("records") != report.records or rec.get("head") != prev.decode()
            ):
                report.problem, report.line = (
                    f"run_end says {rec.get('records')} records came before it, the file "
                    f"has {report.records}: records were removed or added",
                    lineno,
                )
                return report
            prev = h
            last_type = str(rec.get("type"))
            _track_attempts(rec, last_type, report.open_attempts)
            report.records += 1
    if report.records == 0:
        raise TraceCorrupt(p, 1, "empty file: not a calltape trace")
    report.head = prev.decode()
    report.closed = last_type == "run_end" and not report.open_attempts
    return report


def _track_attempts(rec: dict[str, object], kind: str, open_attempts: set[int]) -> None:
    """Attempts started and not yet closed: by their own ``run_end``, or by a later attempt
    that owned the trace alone and took them over (their processes had died)."""
    attempt = rec.get("attempt", 1 if kind == "run_start" else None)
    if kind in ("run_start", "attempt_start") and isinstance(attempt, int):
        open_attempts.add(attempt)
    elif kind == "run_end" and isinstance(attempt, int):
        open_attempts.discard(attempt)
    if kind in ("attempt_start", "run_end"):
        closes = rec.get("closes")
        if isinstance(closes, list):
            open_attempts.difference_update(c for c in closes if isinstance(c, int))


def _check_header(path: str, raw: bytes) -> None:
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise TraceCorrupt(path, 1, "not a calltape trace") from None
    if not isinstance(rec, dict) or rec.get("type") != "run_start":
        raise TraceCorrupt(path, 1, "not a calltape trace: the first record is not 'run_start'")


def repair(path: str | os.PathLike[str]) -> str:
    """Truncate a torn last record, keeping a full backup ``<trace>.bak-<time>``.

    Returns:
        A sentence saying what was done.

    Raises:
        TraceError: unreadable file. TraceCorrupt: damage that truncation cannot fix.
    """
    p = os.fspath(path)
    torn = None
    for item in iter_raw(p):
        if not isinstance(item, tuple):
            torn = item
    if torn is None:
        return f"{p}: nothing to repair (every record is intact)"
    if not os.access(p, os.W_OK):
        raise TraceError(f"{p}: cannot repair: the file is not writable (check its permissions)")
    backup = _new_backup(p)
    shutil.copy2(p, backup)
    size = os.path.getsize(p)
    with open(p, "r+b") as f:
        f.truncate(size - torn.nbytes)
    return (
        f"{p}: removed the torn last record (line {torn.line}, {torn.nbytes} bytes); "
        f"backup of the original at {backup}"
    )


def _new_backup(p: str) -> str:
    """A backup name that no earlier backup has: ``<trace>.bak-<time>[-n]``."""
    stamp = f"{p}.bak-{time.strftime('%Y%m%dT%H%M%S')}"
    backup, n = stamp, 1
    while os.path.exists(backup):
        n += 1
        backup = f"{stamp}-{n}"
    return backup


def resolve(
    path: str | os.PathLike[str],
    seq: int,
    outcome: str,
    *,
    reason: str | None = None,
) -> str:
    """Decide a call left in unknown state by a crash: ``done`` (it happened) or ``redo``.

    The decision goes to the trace's control inbox; the session running the trace (or the
    next one to resume it) records and applies it.

    Raises:
        TraceError: unreadable trace, or the call is not in unknown state.
    """
    if outcome not in ("done", "redo"):
        raise ValueError("outcome must be 'done' or 'redo'")
    idx = TraceIndex.build(path)
    start = idx.unfinished.get(seq)
    if start is None:
        raise TraceError(
            f"{path}: seq {seq} is not a call in unknown state (it has an outcome, or no such "
            "call); 'calltape show' lists the unfinished calls"
        )
    if seq in idx.resolutions:
        raise TraceError(
            f"{path}: seq {seq} was already resolved as {idx.resolutions[seq]}; a decision is final"
        )
    control.post(
        path,
        {"type": "resolution", "seq": seq, "outcome": outcome, "reason": reason},
        once_per_seq=True,
    )
    what = "answered without running" if outcome == "done" else "run again"
    return f"{path}: seq {seq} ({start['tool']}) resolved as {outcome}: on resume it will be {what}"


def decide_approval(
    path: str | os.PathLike[str], seq: int, approved: bool, *, reason: str | None = None
) -> str:
    """Approve or deny a call waiting for approval (``calltape approve/deny``).

    Raises:
        TraceError: unreadable trace, or the call is not waiting for approval.
    """
    idx = TraceIndex.build(path)
    if seq not in idx.pending:
        raise TraceError(
            f"{path}: seq {seq} is not waiting for approval; 'calltape show' marks the calls "
            "that are (status pending_approval)"
        )
    if seq in idx.approvals:
        prev = "approved" if idx.approvals[seq].get("approved") else "denied"
        raise TraceError(f"{path}: seq {seq} was already {prev}")
    control.post(
        path,
        {"type": "approval", "seq": seq, "approved": approved, "reason": reason},
        once_per_seq=True,
    )
    verb = "approved" if approved else "denied"
    then = "runs once" if approved else "stays blocked"
    return f"{path}: seq {seq} {verb}; when the agent runs again the call {then}"


def kill(path: str | os.PathLike[str], reason: str | None = None) -> str:
    """Stop the run from another process: its next call is blocked with rule ``killed``.

    Raises:
        TraceError: not a readable trace, or its run already ended and no session holds it.
    """
    idx = TraceIndex.build(path)  # a trace, not any file
    running = _held_by_a_session(path)
    if not running and idx.ended in ("completed", "failed", "killed"):
        raise TraceError(
            f"{path}: the run already ended ({idx.ended}) and no session is running it; "
            "there is nothing to stop"
        )
    control.post(path, {"type": "kill", "reason": reason or "killed from the command line"})
    if running:
        return f"{path}: kill requested; the running session blocks its next call (within ~10 ms)"
    return (
        f"{path}: kill recorded; no session is running this trace now, so the next one that "
        "resumes it is stopped before its first call"
    )


def _held_by_a_session(path: str | os.PathLike[str]) -> bool:
    """True while a session has the trace open (it holds a lease on the file)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"
