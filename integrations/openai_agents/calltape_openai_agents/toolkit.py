"""Gate the OpenAI Agents SDK's function tools through a calltape :class:`~calltape.Session`.

How the gate is attached: the SDK's runner picks tools with ``isinstance(tool, FunctionTool)``
and runs one with ``await tool.on_invoke_tool(ctx, arguments_json)``. A gated tool is a
``copy.copy`` of the original ``FunctionTool`` whose ``on_invoke_tool`` is a guard closure
around the original invoker. Everything else (name, description, ``params_json_schema``,
``strict_json_schema``, guardrails, approval settings ...) is the original's own, so the model
sees the same tool. ``FunctionTool`` is a dataclass, so the guard, being a field value,
survives ``copy.copy``, ``copy.deepcopy`` and ``dataclasses.replace``. (A ``wrapt`` proxy does
not work here: openai-agents 0.24 checks the invoker's identity during approval evaluation.)

The guard's first parameter is deliberately left unannotated: the SDK inspects that annotation
and hands a wrapper annotated ``RunContextWrapper`` a stripped context without
``tool_call_id``.

What the guard does per call: parse the JSON arguments, keep the keys of the tool's schema
(the fingerprint), pass ``ToolContext.tool_call_id`` as ``call_id``, and let
:meth:`calltape.Session.arun_tool` decide. The original invoker runs only when the session
allows the call and has no recording to replay. A blocked call returns a string naming the
rule and the reason; the model receives it as the function output and the run continues.
The guard never raises for a block: raising aborts the run (or, from 0.23, shows the model only
generic text).

Tool exceptions keep the SDK's behaviour: the invoker built by ``@function_tool`` turns them
into text with its ``failure_error_function`` and the model sees that text, while calltape
records the exception itself (status ``"error"``, so a resumed run runs the call again instead
of replaying the error text as a success). For the tools this module builds from the session's
functions the function reports its exception; for a ``FunctionTool`` the user made with
``@function_tool``, the gated copy's invoker reports the exception it hands to its formatter
(see :func:`_reporting_invoker`). A hand-built invoker that turns exceptions into text itself
is opaque: its text is recorded as an ``ok`` output (see ``docs/integrations/openai_agents.md``).
"""

from __future__ import annotations

import copy
import functools
import inspect
import json
import types
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, get_args

from calltape.errors import MissingFrameworkError

try:
    from agents import Agent, FunctionTool, function_tool
    from agents.tool import Tool
except ImportError as exc:  # pragma: no cover - exercised only without the framework
    raise MissingFrameworkError("openai-agents", "calltape-openai-agents") from exc

if TYPE_CHECKING:
    from calltape import Session
    from calltape.result import CallResult

__all__ = ["create_openai_agents_toolkit", "wrap_tool"]

FRAMEWORK = "openai_agents"

# Set on the guard so that a tool is recognised as gated, and by which session.
_SESSION_ATTR = "_calltape_session"
_ORIGINAL_ATTR = "_calltape_original"
_TOOL_ATTR = "_calltape_tool"  # the ungated FunctionTool the guard was made for
# Newer openai-agents mark the invoker of a sync function and use the mark only to refuse
# ``timeout_seconds`` (a sync function cannot be timed out); the guard carries it over.
_SYNC_MARKER = "__agents_sync_function_tool__"

Invoker = Callable[[Any, str], Awaitable[Any]]

# The SDK's other tool types (hosted ones, and local ones run by its own executors).
_NOT_GATEABLE: tuple[type, ...] = tuple(
    t for t in get_args(Tool) if isinstance(t, type) and t is not FunctionTool
)


@dataclass
class _Attempt:
    """Shared between the guard and the session function it built (one per call)."""

    error: Exception | None = None
    """What the session function raised."""
    handled: bool = False
    """The SDK's invoker turned ``error`` into ``output`` instead of letting it escape."""
    output: Any = None
    """What the SDK made of that exception (its ``failure_error_function`` text)."""


_ATTEMPT: ContextVar[_Attempt | None] = ContextVar("calltape_openai_agents_attempt", default=None)


def create_openai_agents_toolkit(
    session: Session, tools: Iterable[FunctionTool] | None = None
) -> list[FunctionTool]:
    """Build gated ``FunctionTool`` objects for an ``agents.Agent``.

    Args:
        session: The calltape session that records, gates and replays the calls.
        tools: ``None`` to build one ``FunctionTool`` per function registered on the session
            (in registration order), exactly as ``function_tool(fn)`` would, with the session's
            tool name and description. Otherwise existing ``FunctionTool`` objects to gate.

    Returns:
        ``FunctionTool`` objects to pass to ``Agent(tools=...)``.

    Raises:
        TypeError: ``tools`` holds something that is not a ``FunctionTool`` (hosted tools such
            as ``WebSearchTool`` run on OpenAI's servers and cannot be gated).
    """
    _check_session(session)
    if tools is None:
        return [_build_session_tool(session, spec) for spec in session.tools.values()]
    if isinstance(tools, FunctionTool):
        raise TypeError(
            "tools must be a list of FunctionTool objects, not a single FunctionTool; "
            "use wrap_tool(session, tool) for one tool"
        )
    return [wrap_tool(session, tool) for tool in tools]


def wrap_tool(session: Session, tool: FunctionTool) -> FunctionTool:
    """Return a gated copy of ``tool``; the original is left untouched.

    The copy is a ``FunctionTool`` with the same name, description and schema. Wrapping a tool
    that is already gated by the same session returns it unchanged, so a call is recorded once.

    Args:
        session: The calltape session that records, gates and replays the calls.
        tool: A ``FunctionTool`` (``@function_tool``, ``Agent.as_tool()``, or hand-built).

    Returns:
        The gated ``FunctionTool``.

    Raises:
        TypeError: ``tool`` is not a ``FunctionTool``.
    """
    _check_session(session)
    if not isinstance(tool, FunctionTool):
        raise TypeError(_not_a_function_tool(tool))
    if getattr(tool.on_invoke_tool, _SESSION_ATTR, None) is session:
        return tool
    return _gate(session, unwrap_tool(tool))  # gated by another session: re-gate the original


def is_wrapped(tool: object) -> bool:
    """Tell whether ``tool`` is a ``FunctionTool`` gated by a calltape session."""
    return isinstance(tool, FunctionTool) and hasattr(tool.on_invoke_tool, _SESSION_ATTR)


def unwrap_tool(tool: FunctionTool) -> FunctionTool:
    """Return the ungated ``FunctionTool`` a gated one was made from (``tool`` if not gated)."""
    if not is_wrapped(tool):
        return tool
    original: FunctionTool = getattr(tool.on_invoke_tool, _TOOL_ATTR)
    return original


def _check_session(session: object) -> None:
    from calltape import Session

    if not isinstance(session, Session):
        raise TypeError(f"session must be a calltape.Session, got {type(session).__name__}")


def _not_a_function_tool(obj: object) -> str:
    kind = type(obj)
    name = f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(obj, _NOT_GATEABLE):
        return (
            f"calltape can gate only agents.FunctionTool, got {kind.__name__}: hosted and built-in "
            "tools (WebSearchTool, FileSearchTool, CodeInterpreterTool, HostedMCPTool, "
            "ComputerTool, ...) are run by OpenAI or by the SDK's own executors, never through "
            "FunctionTool.on_invoke_tool, so calltape cannot record or block them. Pass them to "
            "Agent(tools=...) next to the gated ones, e.g. "
            "tools=create_openai_agents_toolkit(session, [...]) + [WebSearchTool()]"
        )
    if isinstance(obj, Agent):
        hint = "; gate an agent used as a tool with wrap_tool(session, agent.as_tool(...))"
    elif callable(obj):
        hint = (
            "; decorate the function with @agents.function_tool, or register it with "
            "@session.tool and call create_openai_agents_toolkit(session)"
        )
    else:
        hint = ""
    return f"expected agents.FunctionTool, got {name} ({obj!r:.80}){hint}"


def _build_session_tool(session: Session, spec: Any) -> FunctionTool:
    """``function_tool(spec.fn)`` with the session's name and description, then gated."""
    fn = spec.fn
    name = spec.name if spec.name != getattr(fn, "__name__", None) else None
    # The session defaults a description to the whole docstring; only one given explicitly at
    # registration overrides what function_tool derives from the docstring.
    doc = inspect.getdoc(fn)
    default = doc.strip() if doc else None
    description = spec.description if spec.description != default else None
    # The SDK's own invoker runs a *reporting* copy of the function: it tells the guard about
    # an exception before the SDK turns it into text, so the trace can record the error while
    # the model sees exactly what plain ``function_tool(fn)`` would show it.
    built = function_tool(_reporting(fn), name_override=name, description_override=description)
    return _gate(session, built, session_name=spec.name)


def _reporting(fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` with the same signature and docs that reports its exception to the guard."""
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def reporting_async(*args: Any, **kwargs: Any) -> Any:
            attempt = _ATTEMPT.get()
            try:
                return await fn(*args, **kwargs)
            except Exception as exc:
                if attempt is not None:
                    attempt.error = exc
                raise

        return reporting_async

    @functools.wraps(fn)
    def reporting(*args: Any, **kwargs: Any) -> Any:
        # The SDK may run a sync function in a worker thread; the ContextVar is copied into it
        # and the _Attempt object is shared, so the guard still sees what happened.
        attempt = _ATTEMPT.get()
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if attempt is not None:
                attempt.error = exc
            raise

    return reporting


def _gate(
    session: Session,
    tool: FunctionTool,
    *,
    session_name: str | None = None,
) -> FunctionTool:
    gated = copy.copy(tool)
    # Take the invoker from the copy: openai-agents >= 0.6 rebinds it to the copy on copy.copy.
    original: Invoker = _reporting_invoker(gated.on_invoke_tool)
    guard = _guard(
        session,
        session_name or tool.name,
        _schema_keys(tool.params_json_schema),
        original,
    )
    setattr(guard, _TOOL_ATTR, tool)
    gated.on_invoke_tool = guard
    return gated


def _report(error: BaseException) -> None:
    attempt = _ATTEMPT.get()
    if attempt is not None and attempt.error is None and isinstance(error, Exception):
        attempt.error = error


def _reporting_invoker(invoker: Invoker) -> Invoker:
    """An invoker that behaves as ``invoker`` and also reports to the guard an exception the
    SDK turns into text (the call is then recorded as an error, not as an ``ok`` output).

    ``@function_tool`` builds one of two shapes, depending on the SDK version:

    - a ``_FailureHandlingFunctionToolInvoker`` (0.6 and later) that calls its
      ``_on_handled_error(tool, error, input, ctx)`` after formatting an exception: the gated
      copy gets its own copy of the invoker with that callback wrapped;
    - a closure over ``failure_error_function`` (before 0.6): the gated copy gets a new
      function with the same code whose cell holds a reporting wrapper of that formatter.

    Anything else (a hand-built invoker) is returned unchanged. Nothing the user's tool holds
    is modified: only the gated copy's invoker differs.
    """
    handled = getattr(invoker, "_on_handled_error", None)
    if callable(handled) and not isinstance(invoker, types.FunctionType):
        reporting = copy.copy(invoker)

        def on_handled_error(*args: Any, **kwargs: Any) -> Any:
            _report(args[1])  # (function_tool, error, input_json, context)
            return handled(*args, **kwargs)

        reporting._on_handled_error = on_handled_error  # type: ignore[attr-defined]
        return reporting
    if isinstance(invoker, types.FunctionType) and invoker.__closure__:
        code = invoker.__code__
        if "failure_error_function" not in code.co_freevars:
            return invoker
        cells = list(invoker.__closure__)
        index = code.co_freevars.index("failure_error_function")
        formatter = cells[index].cell_contents
        if formatter is None:
            return invoker  # the exception escapes the invoker: the guard sees it anyway

        def failure_error_function(ctx: Any, error: Exception) -> Any:
            _report(error)
            return formatter(ctx, error)

        cells[index] = types.CellType(failure_error_function)
        fn = types.FunctionType(
            code, invoker.__globals__, invoker.__name__, invoker.__defaults__, tuple(cells)
        )
        fn.__kwdefaults__ = invoker.__kwdefaults__
        fn.__dict__.update(invoker.__dict__)
        fn.__qualname__ = invoker.__qualname__
        return fn
    return invoker


def _schema_keys(schema: Mapping[str, Any]) -> frozenset[str] | None:
    properties = schema.get("properties")
    return frozenset(properties) if isinstance(properties, Mapping) else None


def _arguments(raw: str, keys: frozenset[str] | None) -> dict[str, Any]:
    """The JSON arguments the tool receives, restricted to its schema's keys.

    Arguments that are not a JSON object are still gated and recorded, under ``"$raw"``: the
    SDK's own tools reject them, but a hand-built ``FunctionTool`` may parse anything.
    """
    if not raw:
        return {}  # the SDK treats an empty argument string as {}
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {"$raw": raw}
    if not isinstance(parsed, dict):
        return {"$raw": raw}
    if keys is None:
        return parsed
    return {k: v for k, v in parsed.items() if k in keys}


def _guard(
    session: Session,
    name: str,
    keys: frozenset[str] | None,
    original: Invoker,
) -> Invoker:
    # ``ctx`` stays unannotated on purpose (see the module docstring).
    async def calltape_on_invoke_tool(ctx, arguments: str) -> Any:  # type: ignore[no-untyped-def]
        attempt = _Attempt()

        async def invoke() -> Any:
            token = _ATTEMPT.set(attempt)
            try:
                output = await original(ctx, arguments)
            finally:
                _ATTEMPT.reset(token)
            if attempt.error is not None:
                # The SDK already turned the exception into text; record the exception itself.
                attempt.handled, attempt.output = True, output
                raise attempt.error
            return output

        result = await session.arun_tool(
            name,
            _arguments(arguments, keys),
            invoke,
            call_id=getattr(ctx, "tool_call_id", None),
            framework=FRAMEWORK,
        )
        return _to_model(result, attempt)

    setattr(calltape_on_invoke_tool, _SESSION_ATTR, session)
    setattr(calltape_on_invoke_tool, _ORIGINAL_ATTR, original)
    if getattr(original, _SYNC_MARKER, False):
        setattr(calltape_on_invoke_tool, _SYNC_MARKER, True)
    return calltape_on_invoke_tool


def _to_model(result: CallResult, attempt: _Attempt) -> Any:
    """What the SDK receives as the function output for ``result``.

    Raises:
        Exception: the exception that escaped the tool's own invoker (the SDK then handles it
            as it would without calltape).
    """
    if result.status == "blocked":
        return result.block_message
    if result.status == "error" and result.exception is not None:
        if attempt.handled and result.exception is attempt.error:
            return attempt.output  # the SDK's failure_error_function text
        raise result.exception
    # "ok" (live: exactly what the invoker returned; replayed: the recorded JSON value).
    # core replays only successful calls, so a failed one has its live exception here.
    return result.unwrap()
