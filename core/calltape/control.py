"""Run control from outside the agent's process: kill, approve, deny, resolve.

A running session holds its trace exclusively, so other processes never write the trace
itself. They append a small JSON message to ``<trace>.inbox`` (``flock``-serialized); the
session drains the inbox when it opens the trace and every few milliseconds while it runs,
copies each message into the trace as a record (so the audit trail holds who decided what, and
when), and applies it. A message is applied once: its ``id`` is remembered in the trace.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from calltape.errors import TraceError

__all__ = ["drain", "inbox_path", "peek", "post"]


def inbox_path(trace: str | os.PathLike[str]) -> Path:
    p = Path(trace)
    return p.with_name(p.name + ".inbox")


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def post(
    trace: str | os.PathLike[str], message: dict[str, Any], *, once_per_seq: bool = False
) -> dict[str, Any]:
    """Append a control message for the session running (or next resuming) ``trace``.

    With ``once_per_seq``, refuse the message when the inbox already holds one of the same
    type for the same seq (a decision about a call is final: approving then denying it, or
    resolving it both ways, must not both pass).

    Raises:
        TraceError: the trace does not exist, the inbox cannot be written, or (with
            ``once_per_seq``) the call already has a decision waiting in the inbox.
    """
    if not Path(trace).is_file():
        raise TraceError(f"{trace}: no such trace file")
    msg = {"id": uuid.uuid4().hex, "ts": time.time(), "by": _user(), **message}
    data = orjson.dumps(msg, option=orjson.OPT_APPEND_NEWLINE)
    path = inbox_path(trace)
    try:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as exc:
        raise TraceError(f"{path}: cannot write the control message: {exc.strerror}") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        if once_per_seq:
            earlier = next(
                (
                    m
                    for m in _messages(_read_all(fd))
                    if m["type"] == message["type"] and m.get("seq") == message["seq"]
                ),
                None,
            )
            if earlier is not None:
                raise TraceError(
                    f"{trace}: seq {message['seq']} already has a {message['type']} waiting to be "
                    f"applied ({_describe(earlier)}, by {earlier.get('by')}); a decision is final"
                )
        os.write(fd, data)
    except OSError as exc:
        raise TraceError(f"{path}: cannot write the control message: {exc.strerror}") from None
    finally:
        os.close(fd)
    return msg


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        b = os.pread(fd, 65536, offset)
        if not b:
            return b"".join(chunks)
        chunks.append(b)
        offset += len(b)


def _messages(data: bytes) -> list[dict[str, Any]]:
    """The well-formed control messages in inbox bytes (a torn or foreign line is skipped)."""
    out: list[dict[str, Any]] = []
    for line in data.splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            msg = orjson.loads(line)
            if isinstance(msg, dict) and isinstance(msg.get("type"), str):
                out.append(msg)
    return out


def _describe(msg: dict[str, Any]) -> str:
    if msg.get("type") == "approval":
        return "approved" if msg.get("approved") else "denied"
    return f"resolved as {msg.get('outcome')}"


def drain(trace: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Take every pending control message (the inbox is emptied)."""
    path = inbox_path(trace)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        out = _messages(_read_all(fd))
        os.ftruncate(fd, 0)
    finally:
        os.close(fd)
    return out


def peek(trace: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The pending control messages, left in the inbox (for tools that only look)."""
    try:
        with open(inbox_path(trace), "rb") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_SH)
            data = f.read()
    except OSError:
        return []
    return _messages(data)


def pending(trace: str | os.PathLike[str]) -> bool:
    """True when the inbox holds messages (one ``stat``)."""
    try:
        return os.stat(inbox_path(trace)).st_size > 0
    except OSError:
        return False
