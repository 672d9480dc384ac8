"""Human approval for calls the policy answers with ``ask``.

``Session(approver=...)`` takes:

* a callable ``fn(request: ApprovalRequest) -> bool | Decision | tuple[bool, str]`` (sync or
  async): called before the tool runs; its answer is recorded with who and when;
* ``"terminal"``: a y/N prompt on the controlling terminal (deny when none is attached);
* ``"durable"``: the call is recorded as ``pending_approval``, the run is PAUSED and the call
  returns blocked. ``calltape approve TRACE SEQ`` / ``calltape deny TRACE SEQ --reason ...``
  from another shell decides it; rerunning the agent then executes an approved call exactly
  once (and replays it afterwards) and blocks a denied one.

With no approver, ``ask`` blocks (fail closed). ``approval_timeout`` seconds without an answer
decide deny.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import select
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TextIO

from calltape.policy import Decision

__all__ = ["ApprovalRequest", "Approver", "ask_callback", "ask_terminal"]


@dataclass(frozen=True)
class ApprovalRequest:
    """What an approver is asked about."""

    tool: str
    args: Mapping[str, Any]
    rule: str
    reason: str
    run_id: str


Approver = Callable[[ApprovalRequest], Any]


def ask_callback(
    fn: Approver, request: ApprovalRequest, timeout: float | None
) -> tuple[bool, str, str]:
    """Call an approver (sync or async) with a timeout. Returns ``(approved, reason, by)``.

    An approver that raises, times out or answers nonsense denies (fail closed).
    """
    by = getattr(fn, "__name__", type(fn).__name__)
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            answer = fn(request)
            if inspect.isawaitable(answer):
                answer = asyncio.run(_await(answer))
            box["answer"] = answer
        except BaseException as exc:
            box["exc"] = exc
        finally:
            done.set()

    # A worker thread, so an async approver works from sync code and from inside a running
    # event loop alike, and a timeout needs no signals.
    threading.Thread(target=target, name="calltape-approver", daemon=True).start()
    if not done.wait(timeout):
        return False, f"no answer from the approver within {timeout:g}s (timeout: deny)", by
    if "exc" in box:
        exc = box["exc"]
        return False, f"the approver failed ({type(exc).__name__}: {exc}): deny", by
    answer = box.get("answer")
    if isinstance(answer, Decision):
        return answer.action == "allow", answer.reason, by
    if isinstance(answer, tuple) and len(answer) == 2 and isinstance(answer[0], bool):
        return answer[0], str(answer[1]), by
    if isinstance(answer, bool):
        return answer, "approved" if answer else "denied", by
    return False, f"the approver answered {answer!r}, not True/False: deny", by


async def _await(aw: Any) -> Any:
    return await aw


def ask_terminal(request: ApprovalRequest, timeout: float | None) -> tuple[bool, str, str]:
    """Prompt y/N on the controlling terminal; deny when none is attached or on timeout."""
    tty_in: TextIO
    tty_out: TextIO
    try:
        tty_in = open("/dev/tty")  # noqa: SIM115 - closed below
        tty_out = open("/dev/tty", "w")  # noqa: SIM115
    except OSError:
        if not sys.stdin.isatty():
            return False, "approval needed but no terminal is attached: deny", "terminal"
        tty_in, tty_out = sys.stdin, sys.stdout
    try:
        args = ", ".join(f"{k}={v!r}" for k, v in request.args.items())
        tty_out.write(
            f"\ncalltape: {request.tool}({args}) needs approval ({request.rule}: "
            f"{request.reason}). Allow? [y/N] "
        )
        tty_out.flush()
        ready, _, _ = select.select([tty_in], [], [], timeout)
        if not ready:
            return False, f"no answer within {timeout:g}s (timeout: deny)", "terminal"
        answer = tty_in.readline().strip().lower()
        who = os.environ.get("USER", "terminal")
        return answer in ("y", "yes"), f"answered {answer or 'no'!r} at the terminal", who
    finally:
        if tty_in is not sys.stdin:
            tty_in.close()
            tty_out.close()
