"""Commit: the append-only JSONL trace.

One file per run. Every line is one JSON object (a *record*) ending in ``\\n``:

* ``run_start``: the header, first line of the file (format version, run id, calltape version).
* ``attempt_start``: reopening an existing trace appends a new attempt to the same run.
* ``call_start``: written and handed to the OS *before* the tool runs (write-ahead).
* ``call_end``: the outcome (status, output, error, decision, duration, replayed).
* ``run_end``: the run (attempt) finished: ``completed`` or ``failed``.

The pydantic models below define the format (``docs/trace-format.md`` holds their JSON Schema);
the reader validates with them, the writer's hot path does not (it builds the records itself).

Every reader streams in constant memory and tolerates a torn last line (a record cut short
by a crash): the intact records are returned and the torn one is reported. Anything else
malformed raises :class:`~calltape.errors.TraceCorrupt` naming file and line.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import hmac
import io
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from calltape.errors import TraceCorrupt, TraceError

__all__ = [
    "FORMAT_VERSION",
    "Approval",
    "AttemptStart",
    "CallEnd",
    "CallStart",
    "DecisionRecord",
    "ErrorRecord",
    "Kill",
    "Record",
    "Resolution",
    "RunEnd",
    "RunStart",
    "RunStateChange",
    "TraceIndex",
    "TraceReadResult",
    "TraceWriter",
    "iter_raw",
    "iter_records",
    "read_trace",
]

FORMAT_VERSION = 1


class _Rec(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)
    ts: float = Field(description="Unix time (seconds) when the record was written.")
    h: str | None = Field(
        None,
        description="Chain hash: sha256 (HMAC-SHA256 with a trace key) of the previous "
        "record's h and this record's JSON without h. Always the last key.",
    )


class RunStart(_Rec):
    """Header: the first record of every trace."""

    type: Literal["run_start"]
    format: int = Field(description="Trace format version; this reader understands 1.")
    run_id: str
    calltape: str = Field(description="calltape version that created the trace.")
    created_at: str = Field(description="ISO 8601 UTC creation time.")
    attempt: int = 1
    pid: int | None = None
    keyed: bool = Field(
        False, description="The chain is an HMAC (Session(trace_key=...)): verify needs the key."
    )


class AttemptStart(_Rec):
    """A later process reopened the trace to continue (resume) the same run."""

    type: Literal["attempt_start"]
    run_id: str
    attempt: int
    calltape: str
    pid: int | None = None
    replay: str | None = None
    closes: list[int] = Field(
        default_factory=list,
        description="earlier attempts this one took over: their processes had died without "
        "a run_end (written only by a process that owns the trace alone)",
    )


class CallStart(_Rec):
    """Write-ahead record: the call was decided and is about to execute (or be replayed)."""

    type: Literal["call_start"]
    seq: int = Field(description="Call number in the run, unique and increasing across attempts.")
    attempt: int
    tool: str
    fp: str = Field(description="Fingerprint: sha256 of the JCS canonical JSON of tool and args.")
    occ: int = Field(description="Occurrence: how many earlier calls in this attempt had this fp.")
    ikey: str | None = Field(
        None,
        description="Idempotency key of the logical call (run id + fp + occ), as the running "
        "tool sees it in calltape.current_call().idempotency_key; the same on every resume.",
    )
    args: dict[str, Any] = Field(description="Arguments as recorded (after redaction).")
    side_effect: str = "unknown"
    call_id: str | None = Field(None, description="The framework's own tool-call id, if any.")
    framework: str | None = None
    try_: int | None = Field(None, alias="try", description="Attempt number of a retried call.")
    retry_of: int | None = Field(None, description="seq of the first attempt of this call.")
    fallback_for: int | None = Field(None, description="seq of the call this one replaces.")
    approval: dict[str, Any] | None = Field(None, description="Who approved/denied, and why.")
    cost_usd: float | None = None


class DecisionRecord(BaseModel):
    """The gate's decision."""

    model_config = ConfigDict(extra="allow", frozen=True)
    action: Literal["allow", "deny", "ask"]
    rule: str
    reason: str


class ErrorRecord(BaseModel):
    """An exception, by type name and message."""

    model_config = ConfigDict(extra="allow", frozen=True)
    type: str
    message: str


class CallEnd(_Rec):
    """The outcome of a call."""

    type: Literal["call_end"]
    seq: int
    status: Literal["ok", "error", "blocked", "pending_approval"]
    output: Any = None
    output_lossy: bool = Field(False, description="True when the output had no JSON form.")
    error: ErrorRecord | None = None
    decision: DecisionRecord
    contract_drift: dict[str, Any] | None = None
    replayed: bool = False
    replay_of: int | None = Field(None, description="seq of the recorded call that was replayed.")
    duration_s: float = Field(description="Wall time of the tool (for replays: of the original).")


class RunEnd(_Rec):
    """The attempt ended."""

    type: Literal["run_end"]
    attempt: int
    status: Literal["completed", "failed", "killed", "paused"]
    reason: str | None = Field(None, description="Why, for a failed run (redacted).")
    summary: dict[str, Any] | None = Field(
        None, description="session.summary() of this attempt: calls, ok, errors, blocked..."
    )
    records: int | None = Field(None, description="Records in the file before this one.")
    head: str | None = Field(None, description="h of the record before this one.")
    closes: list[int] = Field(
        default_factory=list,
        description="attempts of writers that died without a run_end, closed by the last "
        "writer of a shared run",
    )


class Approval(_Rec):
    """A human approved or denied a call waiting for approval (``calltape approve/deny``)."""

    type: Literal["approval"]
    seq: int
    approved: bool
    by: str | None = None
    reason: str | None = None
    id: str | None = None


class Kill(_Rec):
    """``calltape kill``: stop the run."""

    type: Literal["kill"]
    reason: str | None = None
    by: str | None = None
    id: str | None = None


class RunStateChange(_Rec):
    """The run changed state (paused, killed, running again)."""

    type: Literal["run_state"]
    state: Literal["running", "paused", "killed"]
    reason: str | None = None


class Resolution(_Rec):
    """A human decided the outcome of a call whose process died inside it."""

    type: Literal["resolution"]
    seq: int
    outcome: Literal["done", "redo"]
    by: str | None = None
    reason: str | None = None
    id: str | None = None


Record = Annotated[
    RunStart
    | AttemptStart
    | CallStart
    | CallEnd
    | RunEnd
    | Resolution
    | Approval
    | Kill
    | RunStateChange,
    Field(discriminator="type"),
]
_RECORD_ADAPTER: TypeAdapter[Any] = TypeAdapter(Record)


# --------------------------------------------------------------------------- reading


@dataclass
class TraceReadResult:
    """What a full read of a trace found."""

    path: str
    records: list[Any] = field(default_factory=list)
    torn_line: int | None = None
    torn_bytes: int = 0

    @property
    def warning(self) -> str | None:
        if self.torn_line is None:
            return None
        return (
            f"{self.path}:{self.torn_line}: torn last record ({self.torn_bytes} bytes, probably "
            "cut short by a crash) was ignored; every record before it is intact. "
            f"Run 'calltape repair {self.path}' to remove it."
        )


@dataclass
class Torn:
    """Marker yielded by :func:`iter_raw` for a torn last line."""

    line: int
    nbytes: int


def open_trace(p: str) -> io.BufferedReader:
    """Open a trace for reading; a clear :class:`TraceError` for anything that is not one.

    Raises:
        TraceError: missing, a directory, a pipe or device, or unreadable.
    """
    try:
        # a FIFO, a socket or a device would block or never end: only regular files are traces
        if os.path.exists(p) and not os.path.isdir(p) and not os.path.isfile(p):
            raise TraceError(f"{p}: not a regular file (a pipe or a device), so not a trace")
        return open(p, "rb")
    except FileNotFoundError:
        raise TraceError(f"{p}: no such trace file") from None
    except IsADirectoryError:
        raise TraceError(f"{p}: is a directory, not a trace file") from None
    except OSError as exc:
        raise TraceError(f"{p}: cannot open trace: {exc.strerror or exc}") from None


def iter_raw(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]] | Torn]:
    """Stream ``(line_number, record_dict)`` pairs, constant memory, no validation.

    A malformed *last* line (cut short by a crash) is yielded as a :class:`Torn` marker
    instead of raising; so is a lone first line cut short while its header was written. The
    first line must be a ``run_start`` header.

    Raises:
        TraceError: the file cannot be opened.
        TraceCorrupt: a malformed line that is not the last one, or no header.
    """
    p = os.fspath(path)
    f = open_trace(p)
    try:
        pending: tuple[int, bytes] | None = None
        lineno = 0
        for raw in f:
            lineno += 1
            if pending is not None:
                yield _parse_line(p, *pending, last=False)
            pending = (lineno, raw)
        if pending is not None:
            ln, raw = pending
            try:
                yield _parse_line(p, ln, raw, last=True)
            except TraceCorrupt:
                if ln == 1 and not _is_torn_header(raw):
                    raise
                yield Torn(ln, len(raw))
        elif lineno == 0:
            raise TraceCorrupt(p, 1, "empty file: not a calltape trace")
    finally:
        f.close()


_HEADER_PREFIX = b'{"type":"run_start",'


def _is_torn_header(raw: bytes) -> bool:
    """A first line cut short while a calltape process wrote it (killed mid-write): it starts
    like a header and has no newline. It holds nothing recorded."""
    return not raw.endswith(b"\n") and raw[: len(_HEADER_PREFIX)] == _HEADER_PREFIX[: len(raw)]


def _parse_line(path: str, lineno: int, raw: bytes, *, last: bool) -> tuple[int, dict[str, Any]]:
    if not raw.endswith(b"\n") and last:
        # every record is written whole with its newline: a missing newline means a torn write
        if lineno == 1:
            raise TraceCorrupt(path, 1, "not a calltape trace (no complete header record)")
        raise TraceCorrupt(path, lineno, "record is cut short (no newline)")
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        preview = raw[:60].decode("utf-8", "replace").strip()
        what = "not a calltape trace" if lineno == 1 else "malformed record"
        if "\ufffd" in preview or not preview.isprintable():
            raise TraceCorrupt(path, lineno, f"{what} (binary data, not JSON)") from None
        raise TraceCorrupt(path, lineno, f"{what} (not JSON): {preview!r}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("type"), str):
        what = "not a calltape trace" if lineno == 1 else "malformed record"
        raise TraceCorrupt(path, lineno, f"{what}: expected a JSON object with a 'type'")
    if lineno == 1 and obj["type"] != "run_start":
        raise TraceCorrupt(path, 1, "not a calltape trace: the first record is not 'run_start'")
    if lineno == 1 and obj.get("format") != FORMAT_VERSION:
        raise TraceCorrupt(
            path,
            1,
            f"trace format {obj.get('format')!r} is not supported by this calltape "
            f"(understands {FORMAT_VERSION}); upgrade calltape",
        )
    return lineno, obj


def iter_records(path: str | os.PathLike[str]) -> Iterator[tuple[int, Any] | Torn]:
    """Stream validated records as ``(line_number, model)``; a torn tail yields :class:`Torn`.

    Raises:
        TraceError: the file cannot be opened.
        TraceCorrupt: a record does not match the format (file and line named).
    """
    p = os.fspath(path)
    for item in iter_raw(p):
        if isinstance(item, Torn):
            yield item
            continue
        lineno, obj = item
        try:
            yield lineno, _RECORD_ADAPTER.validate_python(obj)
        except ValidationError as exc:
            err = exc.errors()[0]
            parts = list(err["loc"])
            if parts and parts[0] == obj.get("type"):  # drop the discriminator tag
                parts = parts[1:]
            loc = ".".join(str(x) for x in parts)
            raise TraceCorrupt(
                p, lineno, f"invalid {obj.get('type')!r} record: {loc}: {err['msg']}"
            ) from None


def read_trace(path: str | os.PathLike[str]) -> TraceReadResult:
    """Read and validate a whole trace into memory (use :func:`iter_records` to stream).

    Raises:
        TraceError: the file cannot be opened.
        TraceCorrupt: a record does not match the format.
    """
    result = TraceReadResult(path=os.fspath(path))
    for item in iter_records(path):
        if isinstance(item, Torn):
            result.torn_line, result.torn_bytes = item.line, item.nbytes
        else:
            result.records.append(item[1])
    return result


@dataclass(slots=True)
class RecordedCall:
    """A successful call that can be replayed."""

    seq: int
    tool: str
    args: dict[str, Any]
    output: Any
    duration_s: float


_NUM = (int, float)
_JSON_NAMES = {
    "NoneType": "null",
    "str": "a string",
    "int": "an integer",
    "float": "a number",
    "bool": "a boolean",
    "list": "an array",
    "dict": "an object",
}
#: the fields (and their JSON types) the index relies on, per record type
_NEEDS: dict[str, tuple[tuple[str, tuple[type, ...], bool], ...]] = {
    "call_start": (
        ("seq", (int,), True),
        ("fp", (str,), True),
        ("occ", (int,), True),
        ("tool", (str,), True),
        ("args", (dict,), True),
        ("ts", _NUM, True),
    ),
    "call_end": (("seq", (int,), True), ("status", (str,), True), ("duration_s", _NUM, False)),
    "run_start": (("run_id", (str,), True), ("attempt", (int,), False)),
    "attempt_start": (("attempt", (int,), True), ("closes", (list,), False)),
    "run_end": (("status", (str,), True), ("closes", (list,), False)),
    "resolution": (("seq", (int,), True), ("outcome", (str,), True)),
    "approval": (("seq", (int,), True),),
}


def _diagnose(path: str, lineno: int, kind: str, rec: dict[str, Any]) -> TraceCorrupt:
    """Say which field of a record the index cannot use (called only when one is wrong)."""
    for name, types, required in _NEEDS.get(kind, ()):
        if name not in rec:
            if required:
                return TraceCorrupt(path, lineno, f"malformed {kind!r} record: no {name!r} field")
            continue
        v = rec[name]
        if type(v) not in types:
            got = _JSON_NAMES.get(type(v).__name__, type(v).__name__)
            want = " or ".join(_JSON_NAMES[t.__name__] for t in types)
            return TraceCorrupt(
                path, lineno, f"malformed {kind!r} record: {name!r} must be {want}, not {got}"
            )
    return TraceCorrupt(path, lineno, f"malformed {kind!r} record")


@dataclass
class TraceIndex:
    """What a session needs from an existing trace: built in one streaming pass."""

    path: str
    run_id: str = ""
    attempts: int = 0
    last_seq: int = 0
    records: int = 0
    ok: dict[tuple[str, int], RecordedCall] = field(default_factory=dict)
    unfinished: dict[int, dict[str, Any]] = field(default_factory=dict)
    torn: Torn | None = None
    ended: str | None = None
    head: bytes = b""
    resolutions: dict[int, str] = field(default_factory=dict)
    approvals: dict[int, dict[str, Any]] = field(default_factory=dict)
    pending: dict[int, tuple[str, int, float]] = field(default_factory=dict)
    seen: set[Any] = field(default_factory=set)
    #: attempts started and neither closed by their own ``run_end`` nor taken over
    open_attempts: set[int] = field(default_factory=set)
    keyed: bool = False

    @classmethod
    def build(cls, path: str | os.PathLike[str]) -> TraceIndex:
        """Index a trace: replayable results by ``(fingerprint, occurrence)``.

        Raises:
            TraceError: unreadable file.
            TraceCorrupt: malformed record other than a torn tail.
        """
        idx = cls(path=os.fspath(path))
        starts: dict[int, dict[str, Any]] = {}
        ok = idx.ok
        p = idx.path
        loads = orjson.loads
        last: dict[str, Any] = {}
        lineno = records = last_seq = 0
        with open_trace(p) as f:
            # the hot loop of opening a trace: one orjson.loads per line and nothing else
            # unless the line is odd (first, torn or malformed), which takes the careful path
            for raw in f:
                lineno += 1
                try:
                    rec = loads(raw)
                    kind = rec["type"]
                    fast = lineno > 1 and type(kind) is str and raw[-1] == 10  # b"\n"
                except (orjson.JSONDecodeError, TypeError, KeyError, IndexError):
                    fast = False
                if not fast:
                    try:
                        lineno, rec = _parse_line(p, lineno, raw, last=not f.peek(1))
                    except TraceCorrupt:
                        if f.peek(1) or (lineno == 1 and not _is_torn_header(raw)):
                            raise
                        idx.torn = Torn(lineno, len(raw))
                        break
                    kind = rec["type"]
                records += 1
                last = rec
                try:
                    if kind == "call_start":
                        seq = rec["seq"]
                        if (
                            type(seq) is not int
                            or type(rec["fp"]) is not str
                            or type(rec["occ"]) is not int
                            or type(rec["tool"]) is not str
                            or type(rec["args"]) is not dict
                            or type(rec["ts"]) not in _NUM
                        ):
                            raise TypeError
                        starts[seq] = rec
                        if seq > last_seq:  # noqa: PLR1730 - no max() call per record
                            last_seq = seq
                    elif kind == "call_end":
                        seq = rec["seq"]
                        status = rec["status"]
                        if type(seq) is not int or type(status) is not str:
                            raise TypeError
                        start = starts.pop(seq, None)
                        if start is None:
                            raise TraceCorrupt(idx.path, lineno, f"call_end for unknown seq {seq}")
                        if status == "ok" and not rec.get("replayed"):
                            key = (start["fp"], start["occ"])
                            if key not in ok:
                                duration = rec.get("duration_s", 0.0)
                                if type(duration) not in _NUM:
                                    raise TypeError
                                ok[key] = RecordedCall(
                                    seq, start["tool"], start["args"], rec.get("output"), duration
                                )
                        elif status == "pending_approval":
                            idx.pending[seq] = (start["fp"], start["occ"], start["ts"])
                    else:
                        _index_control(idx, kind, rec)
                except (KeyError, TypeError):
                    raise _diagnose(idx.path, lineno, kind, rec) from None
        if lineno == 0:
            raise TraceCorrupt(p, 1, "empty file: not a calltape trace")
        h = last.get("h")
        idx.head = h.encode() if type(h) is str else b""
        idx.records, idx.last_seq = records, last_seq
        idx.unfinished = starts
        return idx


def _index_control(idx: TraceIndex, kind: str, rec: dict[str, Any]) -> None:
    """The records other than calls (rare: a few per attempt)."""
    for name, types, required in _NEEDS.get(kind, ()):
        if (required or name in rec) and type(rec[name]) not in types:
            raise TypeError
    if kind == "run_start":
        idx.run_id = rec["run_id"]
        attempt = rec.get("attempt", 1)
        idx.attempts = max(idx.attempts, attempt)
        idx.open_attempts.add(attempt)
        idx.keyed = bool(rec.get("keyed"))
        idx.ended = None
    elif kind == "attempt_start":
        attempt = rec["attempt"]
        idx.attempts = max(idx.attempts, attempt)
        idx.open_attempts.add(attempt)
        idx.open_attempts.difference_update(rec.get("closes") or ())
        idx.ended = None
    elif kind == "run_end":
        idx.ended = rec["status"]
        idx.open_attempts.discard(rec.get("attempt"))
        idx.open_attempts.difference_update(rec.get("closes") or ())
    elif kind == "resolution":
        idx.resolutions[rec["seq"]] = rec["outcome"]
        idx.seen.add(rec.get("id"))
    elif kind == "approval":
        idx.approvals[rec["seq"]] = rec
        idx.seen.add(rec.get("id"))
    elif kind == "kill":
        idx.seen.add(rec.get("id"))


# --------------------------------------------------------------------------- writing


_dumps = orjson.dumps
_sha256 = hashlib.sha256
_H_PREFIX = b',"h":"'
_H_SUFFIX_LEN = len(_H_PREFIX) + 64 + 3  # ,"h":"<64 hex>"}\n


def chain_digest(prev: bytes, body: bytes, key: bytes | None) -> bytes:
    """The ``h`` of a record: sha256 (or HMAC-SHA256 with ``key``) of the previous ``h`` and
    this record's JSON without its ``h`` field."""
    if key is None:
        return hashlib.sha256(prev + b"\n" + body).hexdigest().encode()
    return hmac.new(key, prev + b"\n" + body, hashlib.sha256).hexdigest().encode()


def split_chained(line: bytes) -> tuple[bytes, bytes] | None:
    """Split a record line into (body without ``h``, ``h``); None if it carries no ``h``."""
    if len(line) < _H_SUFFIX_LEN + 2 or not line.endswith(b'"}\n'):
        return None
    cut = len(line) - _H_SUFFIX_LEN
    if line[cut : cut + len(_H_PREFIX)] != _H_PREFIX:
        return None
    h = line[cut + len(_H_PREFIX) : -3]
    return line[:cut] + b"}", h


def trace_key(key: bytes | str | None) -> bytes | None:
    """Normalize a trace key argument (falls back to the CALLTAPE_TRACE_KEY variable)."""
    if key is None:
        key = os.environ.get("CALLTAPE_TRACE_KEY") or None
    if key is None:
        return None
    return key.encode() if isinstance(key, str) else bytes(key)


@dataclass
class ChainState:
    """Where the trace ends: what the next record chains from."""

    head: bytes = b""
    last_seq: int = 0
    records: int = 0
    size: int = 0


class TraceWriter:
    """Appends whole, hash-chained records to a trace file.

    Each ``append`` hands its records to the OS in one ``write`` on an ``O_APPEND`` descriptor
    before the caller proceeds (durability ``"os"``: survives the process being killed); with
    ``durability="fsync"`` the write is followed by ``fsync`` (survives power loss).

    Every record carries ``h``, chaining it to the record before (see :func:`chain_digest`).

    One process owns a trace (an exclusive ``flock`` lease on it) unless ``shared=True``: then
    several processes append to the same run, each append serialized by an exclusive lock on
    ``<trace>.lock``, which also holds the chain head so the chain never forks.

    A failed write (disk full, permission, file removed) raises :class:`TraceError` and rolls
    back any partial bytes, so the records already written stay intact.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        durability: str = "os",
        *,
        key: bytes | None = None,
        shared: bool = False,
        join_timeout: float = 60.0,
    ) -> None:
        if durability not in ("os", "fsync"):
            raise ValueError(f"durability must be 'os' or 'fsync', not {durability!r}")
        self.path = os.fspath(path)
        self.fsync = durability == "fsync"
        self.key = key
        self.shared = shared
        self.lock = threading.RLock()
        self.state = ChainState()
        self._lock_fd: int | None = None
        self.closed = True
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise TraceError(
                f"{self.path}: cannot open the trace for writing: {exc.strerror or exc}"
            ) from None
        self._share_marker = self.path + ".share"
        try:
            self._take_lease(shared, join_timeout)
        except BaseException:
            os.close(self._fd)
            raise
        self.closed = False
        self._depth = 0

    def _take_lease(self, shared: bool, join_timeout: float) -> None:
        """Own the trace alone (fast path) or join the writers already on it.

        A session alone on a trace holds an exclusive ``flock`` and appends without any
        cross-process locking. When another process opens the same trace, it leaves a
        ``<trace>.share`` marker and waits; the owner notices within ~10 ms (see
        :meth:`yield_if_asked`), switches to the shared protocol and downgrades its lease, and
        from then on every writer serializes its appends on ``<trace>.lock``.
        """
        fd = self._fd
        if not shared:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except OSError:
                pass
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # other writers already share it
        except OSError:
            # one process owns it exclusively: ask it to share, then wait for it to do so
            with open(self._share_marker, "a"):
                pass
            deadline = time.monotonic() + join_timeout
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise TraceError(
                            f"{self.path}: another process holds this trace and did not share "
                            f"it within {join_timeout:g}s (it makes no calls); wait for it to "
                            "finish, or open every session with shared=True"
                        ) from None
                    time.sleep(0.005)
        self.shared = True
        self._lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)

    def yield_if_asked(self) -> None:
        """Owner side of joining: switch to the shared protocol when another process asks."""
        if self.shared or self.closed or not os.path.exists(self._share_marker):
            return
        with self.lock:
            lock_fd = os.open(self.path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            try:
                self._lock_fd = lock_fd
                self.state.size = os.fstat(self._fd).st_size
                self._save_shared_state()
                self.shared = True
                fcntl.flock(self._fd, fcntl.LOCK_SH)  # downgrade: joiners may take it now
                with contextlib.suppress(OSError):
                    os.unlink(self._share_marker)
            finally:
                fcntl.flock(lock_fd, fcntl.LOCK_UN)

    def orphaned_attempts(self, own: int) -> list[int]:
        """In a shared run, the attempts of writers that died without closing, if this writer
        is the last one alive (it can take the lease exclusively); else nothing."""
        if not self.shared or self.closed:
            return []
        # Under <trace>.lock, so no other writer is converting its lease at the same moment:
        # the other live writers keep their shared locks, and nobody can take the trace
        # exclusively in the instant the conversion below holds no lock.
        with self.locked():
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                # other writers are alive: they close their own attempts. A failed conversion
                # drops the lock held before it (flock(2)): take the shared lease back.
                with contextlib.suppress(OSError):
                    fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return []
            idx = TraceIndex.build(self.path)
        return sorted(idx.open_attempts - {own})

    # -- locking ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[ChainState]:
        """Hold the writer (threads, and in shared mode other processes) and sync the state."""
        with self.lock:
            if self._lock_fd is None or self._depth:
                self._depth += 1
                try:
                    yield self.state
                finally:
                    self._depth -= 1
                return
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
            self._depth += 1
            try:
                self._sync_shared_state()
                yield self.state
                self._save_shared_state()
            finally:
                self._depth -= 1
                fcntl.flock(self._lock_fd, fcntl.LOCK_UN)

    def _sync_shared_state(self) -> None:
        assert self._lock_fd is not None
        size = os.fstat(self._fd).st_size
        if size == self.state.size:
            return  # nobody else wrote since our last append
        raw = os.pread(self._lock_fd, 256, 0).split()
        if len(raw) == 4 and int(raw[0]) == size:
            self.state = ChainState(
                raw[3] if raw[3] != b"-" else b"", int(raw[1]), int(raw[2]), size
            )
            return
        self.state = self.scan_state()  # a writer died between its append and the state update

    def _save_shared_state(self) -> None:
        assert self._lock_fd is not None
        st = self.state
        line = b"%d %d %d %s\n" % (st.size, st.last_seq, st.records, st.head or b"-")
        os.pwrite(self._lock_fd, line.ljust(255) + b"\n", 0)

    def scan_state(self) -> ChainState:
        """Rebuild the chain state from the file (cutting a torn tail aside first)."""
        idx = TraceIndex.build(self.path) if os.path.getsize(self.path) else None
        if idx is not None and idx.torn is not None:
            cut_torn_tail(self.path, idx.torn.nbytes)
        size = os.fstat(self._fd).st_size
        if idx is None:
            return ChainState(size=size)
        return ChainState(idx.head, idx.last_seq, idx.records, size)

    # -- appending -------------------------------------------------------------------------

    def append(self, records: list[dict[str, Any]], *, new_seq: bool = False) -> int:
        """Chain and append ``records`` in one write. With ``new_seq``, give them the next seq.

        Returns:
            The seq given (0 without ``new_seq``).

        Raises:
            TraceError: the write failed; the state and the file are as before.
        """
        if self.closed:
            raise TraceError(f"{self.path}: trace is closed")
        if new_seq and self._unlinked():
            # a new call is about to be written ahead of running: never run a tool whose
            # record would go to a file nobody can open any more
            raise TraceError(
                f"{self.path}: the trace file was removed while the session was running; "
                "the call was not executed. Its records so far are lost with the file; "
                "start a new session (or restore the file and resume)"
            )
        if self._lock_fd is None:  # one owner: the thread lock is enough (the hot path)
            with self.lock:
                return self._append(self.state, records, new_seq)
        with self.locked() as st:
            return self._append(st, records, new_seq)

    def _unlinked(self) -> bool:
        try:
            return os.fstat(self._fd).st_nlink == 0
        except OSError:
            return False  # the write that follows reports what is wrong with the descriptor

    def _append(self, st: ChainState, records: list[dict[str, Any]], new_seq: bool) -> int:
        seq = st.last_seq + 1 if new_seq else 0
        head = st.head
        count = st.records
        key = self.key
        parts = []
        for rec in records:
            if new_seq:
                rec["seq"] = seq
            if rec["type"] == "run_end":
                rec["records"] = count
                rec["head"] = head.decode()
            body = _dumps(rec)
            if key is None:
                head = _sha256(head + b"\n" + body).hexdigest().encode()
            else:
                head = chain_digest(head, body, key)
            parts.append(body[:-1] + _H_PREFIX + head + b'"}\n')
            count += 1
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._write(data)
        st.head, st.records, st.size = head, count, st.size + len(data)
        if new_seq:
            st.last_seq = seq
        return seq

    def _write(self, data: bytes) -> None:
        fd = self._fd
        try:
            n = os.write(fd, data)
            if n != len(data):
                self._finish_partial(data, n)
            if self.fsync:
                os.fsync(fd)
        except OSError as exc:
            raise TraceError(
                f"{self.path}: cannot write to the trace ({exc.strerror or exc}); "
                "the call was not executed. Free disk space or fix permissions, then resume."
            ) from None

    def _finish_partial(self, data: bytes, n: int) -> None:
        written = n
        try:
            while written < len(data):
                written += os.write(self._fd, data[written:])
        except OSError:
            # roll back our partial bytes so the file ends at a record boundary
            with contextlib.suppress(OSError):
                size = os.fstat(self._fd).st_size
                os.ftruncate(self._fd, size - written)
            raise

    def size(self) -> int:
        return os.fstat(self._fd).st_size

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                os.close(self._fd)  # releases the lease
            if self._lock_fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._lock_fd)

    def __del__(self) -> None:  # pragma: no cover - best effort
        with contextlib.suppress(Exception):
            self.close()


def check_key(path: str | os.PathLike[str], key: bytes | None, keyed: bool) -> None:
    """Refuse to append to a trace with another key (or none) than the one it was begun with:
    the chain would break where the new records start, and no key would verify it.

    Raises:
        TraceError: the key does not match the trace.
    """
    p = os.fspath(path)
    if keyed and key is None:
        raise TraceError(
            f"{p}: this trace is keyed (HMAC chain); resume it with the same trace_key= "
            "(or CALLTAPE_TRACE_KEY), or record a new trace"
        )
    if not keyed and key is not None:
        raise TraceError(
            f"{p}: this trace was recorded without a trace key; resume it without trace_key= "
            "(unset CALLTAPE_TRACE_KEY), or record a new trace to use a key"
        )
    if key is None:
        return
    with open(p, "rb") as f:
        first = f.readline()
    parts = split_chained(first)
    if parts is None or chain_digest(b"", parts[0], key) != parts[1]:
        raise TraceError(
            f"{p}: the trace key does not match the key this trace was recorded with; "
            "resume it with that key, or record a new trace"
        )


def cut_torn_tail(path: str | os.PathLike[str], nbytes: int) -> Path:
    """Move the last ``nbytes`` (a torn record) of ``path`` to ``<path>.torn-<time>``."""
    p = Path(path)
    backup = p.with_name(f"{p.name}.torn-{time.time_ns()}")
    size = p.stat().st_size
    with open(p, "r+b") as f:
        f.seek(size - nbytes)
        backup.write_bytes(f.read())
        f.truncate(size - nbytes)
    return backup
