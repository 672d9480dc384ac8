"""calltape's exceptions: one tree, every message says what was wrong and what to do.

::

    CalltapeError                      base of everything calltape raises on purpose
    ├── FingerprintError               an argument has no faithful JSON form (the tool did not run)
    ├── ReplayMiss                     strict replay: no recorded result for this call (nothing ran)
    ├── TraceError                     the trace cannot be read or written
    │   └── TraceCorrupt               a record is malformed (file and line are named)
    ├── PolicyError                    a policy is invalid (unknown preset, bad rule, ...)
    │   └── PolicyFileError            a policy file is invalid: ``file:line: what; expected``
    ├── ToolNotFound                   ``session.call`` of a name that was never registered
    ├── ToolBlocked                    ``CallResult.unwrap()`` on a blocked call; an ``Exception``,
    │                                  so a model shown ``str(e)`` sees rule and reason
    ├── RunStateError                  an illegal run-state transition (e.g. a closed session)
    └── IntegrationError               an integration was misused
        └── MissingFrameworkError      (also an ``ImportError``) the framework is not installed

Tool exceptions are never wrapped: ``CallResult.exception`` holds the tool's own exception.
"""

from __future__ import annotations

from typing import Any


class CalltapeError(Exception):
    """Base class of every error calltape raises on purpose.

    Every calltape error pickles (thread and process pools, multiprocessing, agent frameworks
    that move exceptions between workers) with its message and attributes intact.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.args, self.__dict__)


def _rebuild(cls: type[CalltapeError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class FingerprintError(CalltapeError, TypeError):
    """An argument cannot be encoded as canonical JSON, so the call cannot be fingerprinted.

    Attributes:
        path: Where the value sits in the arguments, e.g. ``args.files[2]``.
        type_name: The Python type that has no faithful JSON form.
    """

    def __init__(self, path: str, type_name: str, detail: str = "") -> None:
        self.path = path
        self.type_name = type_name
        hint = detail or (
            "pass a JSON-able value (str, int, float, bool, None, list, dict), a pydantic model, "
            "a dataclass, or one of the types in docs/concepts.md#normalization"
        )
        super().__init__(f"argument {path} of type {type_name} has no faithful JSON form: {hint}")


class ReplayMiss(CalltapeError):
    """Strict replay found no recorded result for a call; nothing was executed.

    Attributes:
        tool: The tool called.
        arguments: The call's arguments (the message shows them redacted).
        nearest: The nearest recorded calls, as ``tool(args)`` previews.
    """

    def __init__(
        self, tool: str, args: Any, nearest: list[str], trace: str, *, shown: Any = None
    ) -> None:
        self.tool = tool
        self.arguments = args
        self.nearest = nearest
        # the message shows the redacted arguments (``shown``): messages end up in logs
        preview = _preview(args if shown is None else shown)
        lines = [f"no recorded result for {tool}({preview}) in {trace} (replay='strict')."]
        if nearest:
            lines.append("Nearest recorded calls:")
            lines.extend(f"  - {n}" for n in nearest)
        else:
            lines.append("The trace holds no successful calls to replay.")
        lines.append("Record it first with replay='resume' (or 'off'), or fix the arguments.")
        super().__init__("\n".join(lines))


class TraceError(CalltapeError):
    """The trace store cannot be read or written."""


class TraceCorrupt(TraceError):
    """A record in the trace is malformed.

    Attributes:
        path: The trace file.
        line: 1-based line number of the bad record.
    """

    def __init__(self, path: str, line: int, problem: str) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        super().__init__(f"{path}:{line}: {problem}")


class PolicyError(CalltapeError):
    """A policy is invalid or cannot be loaded."""


class ToolNotFound(CalltapeError, KeyError):
    """A tool name that was never registered on the session."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        known_txt = ", ".join(sorted(known)) or "none registered yet"
        super().__init__(
            f"unknown tool {name!r} (registered: {known_txt}); "
            "register it with session.register(...) or @session.tool"
        )

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0])


class ToolBlocked(CalltapeError):
    """A call was blocked by the gate. The message names the rule and the reason."""

    def __init__(self, message: str, *, tool: str = "", rule: str = "", reason: str = "") -> None:
        self.tool = tool
        self.rule = rule
        self.reason = reason
        super().__init__(message)


class RunStateError(CalltapeError):
    """An operation that the run's current state does not allow."""


class IntegrationError(CalltapeError):
    """An integration was misused."""


class MissingFrameworkError(IntegrationError, ImportError):
    """The framework an integration needs is not installed."""

    def __init__(self, framework: str, distribution: str) -> None:
        super().__init__(
            f"{framework} is not installed; run: pip install {distribution}  "
            f"(it installs {framework} with the versions calltape supports)"
        )


def _preview(args: Any, limit: int = 120) -> str:
    if isinstance(args, dict):
        text = ", ".join(f"{k}={v!r}" for k, v in args.items())
    else:
        text = repr(args)
    return text if len(text) <= limit else text[: limit - 1] + "…"
