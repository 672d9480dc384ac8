"""Timing and measurement helpers shared by the bench jobs (no calltape imports here)."""

from __future__ import annotations

import gc
import os
import resource
import time
from collections.abc import Callable
from typing import Any

ns = time.perf_counter_ns


def summarize(samples: list[int], *, batch_mean_ns: float | None = None) -> dict[str, Any]:
    """Median, p99 and mean (microseconds) of per-call samples in nanoseconds."""
    if not samples:
        return {"n": 0}
    s = sorted(samples)
    n = len(s)
    out: dict[str, Any] = {
        "n": n,
        "median_us": s[n // 2] / 1000 if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2000,
        "p99_us": s[min(n - 1, int(n * 0.99))] / 1000,
        "mean_us": sum(s) / n / 1000,
        "min_us": s[0] / 1000,
    }
    if batch_mean_ns is not None:
        out["batch_mean_us"] = batch_mean_ns / 1000
    return out


def per_call(fn: Callable[[int], Any], n: int, budget_s: float | None = None) -> list[int]:
    """Time each of up to ``n`` calls ``fn(i)`` separately; stop early past ``budget_s``."""
    out: list[int] = []
    append = out.append
    deadline = ns() + int(budget_s * 1e9) if budget_s else None
    for i in range(n):
        t0 = ns()
        fn(i)
        append(ns() - t0)
        if deadline is not None and (i & 15) == 15 and ns() > deadline:
            break
    return out


def batch(fn: Callable[[int], Any], n: int, budget_s: float | None = None) -> tuple[float, int]:
    """Mean ns per call over a loop timed as a whole (chunks of 100 when a budget is set)."""
    if budget_s is None:
        t0 = ns()
        for i in range(n):
            fn(i)
        return (ns() - t0) / max(n, 1), n
    deadline = ns() + int(budget_s * 1e9)
    done = 0
    total = 0
    while done < n:
        k = min(100, n - done)
        t0 = ns()
        for i in range(done, done + k):
            fn(i)
        total += ns() - t0
        done += k
        if ns() > deadline:
            break
    return total / max(done, 1), done


def timer_overhead_ns() -> float:
    """Median cost of one perf_counter_ns pair (included in every per-call sample)."""
    s = []
    for _ in range(20000):
        t0 = ns()
        s.append(ns() - t0)
    s.sort()
    return float(s[len(s) // 2])


def rss_mb() -> float:
    """Current resident set size (MB) from /proc, falling back to the peak."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        return peak_rss_mb()


def peak_rss_mb() -> float:
    """Peak resident set size of this process (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6  # KiB on Linux


def count_lines(path: str | os.PathLike[str]) -> int:
    with open(path, "rb") as f:
        return sum(1 for _ in f)


def count_matching(path: str | os.PathLike[str], needle: bytes) -> int:
    with open(path, "rb") as f:
        return sum(1 for line in f if needle in line)


def read_lines(path: str | os.PathLike[str], needle: bytes = b"") -> list[bytes]:
    with open(path, "rb") as f:
        return [line for line in f if needle in line]


class QuietGC:
    """Collect before a timed section; leave the collector on (real programs have it on)."""

    def __enter__(self) -> None:
        gc.collect()

    def __exit__(self, *exc: Any) -> None:
        return None
