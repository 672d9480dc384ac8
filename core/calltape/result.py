"""What a call through calltape returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from calltape.errors import ToolBlocked
from calltape.policy import Decision

__all__ = ["CallResult", "ErrorInfo", "Status"]

Status = Literal["ok", "error", "blocked"]


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An exception by type name and message (as recorded in the trace)."""

    type: str
    message: str

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


@dataclass(frozen=True, slots=True)
class CallResult:
    """The outcome of one tool call.

    Attributes:
        tool: The tool's name.
        status: ``"ok"``, ``"error"`` (the tool raised) or ``"blocked"`` (the gate said no;
            the tool did not run).
        output: Live: exactly what the tool returned. Replayed: the recorded JSON value.
        error: Type and message of the tool's exception, or None.
        decision: The gate's decision (action, rule, reason).
        replayed: True when the result came from the trace and the tool did not run.
        fingerprint: sha256 of the canonical tool name and arguments.
        seq: The call's number in the run's trace.
        duration_s: Wall time of the tool; for a replay, the recorded duration of the original.
        call_id: The framework's own tool-call id, if one was given.
        exception: The live exception object when the tool raised in this process.
    """

    tool: str
    status: Status
    output: Any
    error: ErrorInfo | None
    decision: Decision
    replayed: bool
    fingerprint: str
    seq: int
    duration_s: float
    call_id: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def blocked(self) -> bool:
        return self.status == "blocked"

    @property
    def block_message(self) -> str:
        """A sentence for the model and for humans naming the rule and the reason."""
        d = self.decision
        return f"calltape blocked tool {self.tool!r} (rule {d.rule}): {d.reason}"

    def unwrap(self) -> Any:
        """Return the output, or raise what went wrong.

        Raises:
            ToolBlocked: the call was blocked (message names rule and reason).
            Exception: the tool's own exception when it raised.
        """
        if self.status == "ok":
            return self.output
        if self.status == "blocked":
            d = self.decision
            raise ToolBlocked(self.block_message, tool=self.tool, rule=d.rule, reason=d.reason)
        if self.exception is not None:
            raise self.exception
        err = self.error or ErrorInfo("Error", "unknown error")
        raise RuntimeError(f"tool {self.tool!r} failed: {err}")


def _fast_constructor() -> Callable[..., CallResult]:
    """Build frozen ``CallResult``s without the frozen dataclass ``__init__`` (which goes
    through ``object.__setattr__`` once per field: ~2 µs of a ~10 µs budget). Slot descriptors
    set the same fields directly; the instance is as frozen as one built by ``__init__``."""
    names = [f.name for f in fields(CallResult)]
    setters = tuple(getattr(CallResult, n).__set__ for n in names)
    s0, s1, s2, s3, s4, s5, s6, s7, s8, s9, s10 = setters
    new = object.__new__

    def make(
        tool: str,
        status: Status,
        output: Any,
        error: ErrorInfo | None,
        decision: Decision,
        replayed: bool,
        fingerprint: str,
        seq: int,
        duration_s: float,
        call_id: str | None = None,
        exception: BaseException | None = None,
    ) -> CallResult:
        r: CallResult = new(CallResult)
        s0(r, tool)
        s1(r, status)
        s2(r, output)
        s3(r, error)
        s4(r, decision)
        s5(r, replayed)
        s6(r, fingerprint)
        s7(r, seq)
        s8(r, duration_s)
        s9(r, call_id)
        s10(r, exception)
        return r

    return make


#: ``make_result(tool, status, output, error, decision, replayed, fingerprint, seq, duration_s,
#: call_id=None, exception=None)``: a ``CallResult``, fast (the lifecycle's hot path).
make_result = _fast_constructor()
