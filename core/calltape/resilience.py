"""Retries, timeouts and fallbacks for tools.

* **Timeouts** work off the main thread and in async code (no signals): a sync tool runs in a
  daemon worker thread and the caller stops waiting after ``timeout`` seconds; an async tool is
  awaited with :func:`asyncio.wait_for`. A timed-out sync tool may still be running in its
  thread (Python cannot kill a thread): the call is recorded as a ``ToolTimeout`` error.
* **Retries** with exponential backoff and full jitter, only for errors the tool declares
  retryable and only for tools that are safe to repeat (``side_effect="read"`` or
  ``idempotent=True``). Every attempt is its own pair of records, linked to the first by
  ``retry_of``.
* **Fallbacks**: when a tool fails or is blocked, the registered tool named by ``fallback`` is
  called with the same arguments; its records carry ``fallback_for``.

The backoff is four lines; a retry library's control flow would hide the per-attempt records
that are the point here, so none is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from calltape.errors import CalltapeError

__all__ = ["Retry", "ToolTimeout"]


class ToolTimeout(CalltapeError, TimeoutError):
    """A tool did not finish within its timeout."""


@dataclass(frozen=True)
class Retry:
    """How to retry a failing tool.

    Attributes:
        attempts: Total attempts, the first included.
        backoff: Base delay in seconds; attempt n waits up to ``backoff * 2**(n-1)``.
        max_backoff: Cap on one delay.
        jitter: Full jitter (a random delay up to the cap), so retries do not synchronize.
        on: Exception types that are retryable (a timeout is a ``TimeoutError``).
    """

    attempts: int = 3
    backoff: float = 0.1
    max_backoff: float = 5.0
    jitter: bool = True
    on: tuple[type[BaseException], ...] = (TimeoutError, ConnectionError)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("Retry(attempts=...) must be at least 1")

    def delay(self, attempt: int) -> float:
        cap = min(self.max_backoff, self.backoff * (2 ** (attempt - 1)))
        return random.uniform(0, cap) if self.jitter else cap

    def retryable(self, exc: BaseException | None) -> bool:
        return exc is not None and isinstance(exc, self.on)


def call_with_timeout(invoke: Callable[[], Any], timeout: float, tool: str) -> Any:
    """Run ``invoke`` in a daemon thread; raise :class:`ToolTimeout` after ``timeout`` s."""
    ctx = contextvars.copy_context()
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            box["out"] = ctx.run(invoke)
        except BaseException as exc:
            box["exc"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=target, name=f"calltape-{tool}", daemon=True)
    worker.start()
    if not done.wait(timeout):
        raise ToolTimeout(
            f"tool {tool!r} did not finish within {timeout:g}s (it may still be running in a "
            "worker thread; calltape stopped waiting)"
        )
    if "exc" in box:
        raise box["exc"]
    return box.get("out")


def in_daemon_thread(fn: Callable[..., Any], /, **kwargs: Any) -> asyncio.Future[Any]:
    """Run a sync ``fn(**kwargs)`` in a new daemon thread (in a copy of this context) and
    return a future of this loop for its result.

    For sync tools with a timeout in async code: ``asyncio.to_thread`` would run them in the
    loop's default executor, whose threads ``asyncio.run`` joins at exit, so a tool that hangs
    after its timeout would keep the program from ever exiting. A daemon thread does not.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    ctx = contextvars.copy_context()

    def settle(exc: BaseException | None, out: Any) -> None:
        if future.done():
            return  # cancelled: the caller stopped waiting (a timeout)
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(out)

    def target() -> None:
        try:
            out, exc = ctx.run(fn, **kwargs), None
        except BaseException as error:
            out, exc = None, error
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, exc, out)

    name = getattr(fn, "__name__", "tool")
    threading.Thread(target=target, name=f"calltape-{name}", daemon=True).start()
    return future


async def acall_with_timeout(awaitable: Awaitable[Any], timeout: float, tool: str) -> Any:
    """Await with a timeout; raise :class:`ToolTimeout` when it expires."""
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError:
        raise ToolTimeout(f"tool {tool!r} did not finish within {timeout:g}s") from None
