"""Budgets and rate limits, enforced before a tool runs.

Budgets count what *executes* (replays are free: nothing runs and nothing is spent). A call that
would go over a budget is blocked with a message naming the budget and its numbers.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Budget", "RateLimit"]

Price = float | Callable[[Mapping[str, Any]], float]


@dataclass
class Budget:
    """Limits for one session (this process's run).

    Attributes:
        max_calls: Executed calls in total.
        max_calls_per_tool: Executed calls per tool name.
        max_cost_usd: Spend limit. A call is blocked when ``spent + its price`` would exceed it.
        cost_usd: Price per tool: a number, or ``fn(args) -> float``.
        max_tokens: Tokens reported with :meth:`Session.add_tokens` (by you or an integration).
    """

    max_calls: int | None = None
    max_calls_per_tool: Mapping[str, int] = field(default_factory=dict)
    max_cost_usd: float | None = None
    cost_usd: Mapping[str, Price] = field(default_factory=dict)
    max_tokens: int | None = None

    def price(self, tool: str, args: Mapping[str, Any]) -> float:
        p = self.cost_usd.get(tool, 0.0)
        return float(p(args)) if callable(p) else float(p)


@dataclass
class RateLimit:
    """At most ``calls`` executions of a tool per ``per`` seconds.

    Attributes:
        mode: ``"block"`` (default) blocks the call over the limit; ``"wait"`` waits for a slot.
    """

    calls: int
    per: float = 1.0
    mode: Literal["block", "wait"] = "block"

    def __post_init__(self) -> None:
        if self.calls < 1 or self.per <= 0:
            raise ValueError("RateLimit needs calls >= 1 and per > 0 seconds")
        if self.mode not in ("block", "wait"):
            raise ValueError(f"RateLimit mode must be 'block' or 'wait', not {self.mode!r}")


class RateWindow:
    """Sliding window of recent executions of one tool."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self.times: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()

    def claim(self) -> tuple[float, float | None]:
        """For ``mode="wait"``: take a slot if one is free now.

        Returns:
            ``(0.0, stamp)`` with the slot taken (give ``stamp`` to :meth:`release` if the call
            does not execute after all), or ``(seconds to wait, None)``.
        """
        with self._lock:
            wait = self.wait_time()
            if wait > 0:
                return wait, None
            stamp = time.monotonic()
            self.times.append(stamp)
            return 0.0, stamp

    def release(self, stamp: float) -> None:
        """Give back a slot taken by :meth:`claim` for a call that did not execute."""
        with self._lock, contextlib.suppress(ValueError):
            self.times.remove(stamp)

    def wait_time(self, now: float | None = None) -> float:
        """Seconds until a slot is free (0 when one is free now)."""
        now = time.monotonic() if now is None else now
        times, lim = self.times, self.limit
        while times and now - times[0] >= lim.per:
            times.popleft()
        if len(times) < lim.calls:
            return 0.0
        return lim.per - (now - times[0])

    def take(self) -> None:
        self.times.append(time.monotonic())
