"""``current_call()``: the context of the call in progress, for the running tool to read.

A :class:`contextvars.ContextVar`, so it is correct in threads (``asyncio.to_thread`` and
executors copy it) and in concurrent async tasks.
"""

from __future__ import annotations

import hashlib
from contextvars import ContextVar
from dataclasses import dataclass

__all__ = ["CallContext", "current_call", "idempotency_key"]


@dataclass(frozen=True, slots=True)
class CallContext:
    """The call being executed right now."""

    run_id: str
    seq: int
    tool: str
    fingerprint: str
    occurrence: int
    attempt: int

    @property
    def idempotency_key(self) -> str:
        """Deterministic per logical call: the same on every resume of the same run.

        Derived from run id, fingerprint and occurrence; pass it to payment/email APIs so they
        deduplicate a call that a crash forced to run again. Never part of the fingerprint.
        """
        return idempotency_key(self.run_id, self.fingerprint, self.occurrence)


def idempotency_key(run_id: str, fingerprint: str, occurrence: int) -> str:
    """The idempotency key of the ``occurrence``-th call with ``fingerprint`` in ``run_id``."""
    raw = f"{run_id}:{fingerprint}:{occurrence}".encode()
    return "ct-" + hashlib.sha256(raw).hexdigest()[:32]


# Holds the CallContext fields as a tuple: building the dataclass only when a tool asks for it
# keeps the per-call cost down.
_CURRENT: ContextVar[tuple[str, int, str, str, int, int] | None] = ContextVar(
    "calltape_current_call", default=None
)


def current_call() -> CallContext | None:
    """The context of the tool call running in this thread/task, or None outside a call."""
    fields = _CURRENT.get()
    return None if fields is None else CallContext(*fields)
