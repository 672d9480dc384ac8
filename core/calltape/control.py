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


def post(trace: str | os.PathLike[str], message: dict[str, Any]) -> dict[str, Any]:
    """Append a control message for the session running (or next resuming) ``trace``.

    Raises:
        TraceError: the trace does not exist or the inbox cannot be written.
    """
    if not Path(trace).is_file():
        raise TraceError(f"{trace}: no such trace file")
    msg = {"id": uuid.uuid4().hex, "ts": time.time(), "by": _user(), **message}
    data = orjson.dumps(msg, option=orjson.OPT_APPEND_NEWLINE)
    path = inbox_path(trace)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as exc:
        raise TraceError(f"{path}: cannot write the control message: {exc.strerror}") from None
    return msg


def drain(trace: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Take every pending control message (the inbox is emptied)."""
    path = inbox_path(trace)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return []
    out: list[dict[str, Any]] = []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        chunks = []
        while True:
            b = os.read(fd, 65536)
            if not b:
                break
            chunks.append(b)
        for line in b"".join(chunks).splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                msg = orjson.loads(line)
                if isinstance(msg, dict) and isinstance(msg.get("type"), str):
                    out.append(msg)
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
    out: list[dict[str, Any]] = []
    for line in data.splitlines():
        with contextlib.suppress(orjson.JSONDecodeError):
            msg = orjson.loads(line)
            if isinstance(msg, dict) and isinstance(msg.get("type"), str):
                out.append(msg)
    return out


def pending(trace: str | os.PathLike[str]) -> bool:
    """True when the inbox holds messages (one ``stat``)."""
    try:
        return os.stat(inbox_path(trace)).st_size > 0
    except OSError:
        return False
