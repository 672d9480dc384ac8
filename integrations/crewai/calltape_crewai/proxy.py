"""The transparent proxy that routes every execution of a CrewAI tool through a calltape Session.

CrewAI executes a tool on two paths, and both are gated here:

* native function calling (the LLM's ``supports_function_calling()`` is True): the executor
  binds ``tool.run`` once (``convert_tools_to_openai_schema``) and calls it with the model's
  arguments, so :meth:`CalltapeTool.run` is the gate;
* the text ReAct path ("Action:/Action Input:"): the executor calls ``tool.to_structured_tool()``
  and later ``CrewStructuredTool.invoke``/``ainvoke``, which call the structured tool's ``func``
  (the original ``_run``). :meth:`CalltapeTool.to_structured_tool` replaces that ``func`` with a
  guarded one and points ``_original_tool`` at the proxy (the executor matches by identity).

A :class:`wrapt.ObjectProxy` is the right mechanism for CrewAI: ``isinstance(proxy, BaseTool)``
holds, CrewAI's tool validators return any ``BaseTool`` instance unchanged, ``Agent.copy()`` and
``Crew.copy()`` keep the same tool objects, and every attribute the model sees (name,
description, ``args_schema``) is the wrapped tool's own. ``format_output_for_agent`` is defined on
the proxy class because CrewAI looks it up with ``inspect.getattr_static``, which does not see
through a proxy. ``copy.copy``, ``copy.deepcopy`` and ``model_copy`` re-wrap the copy, so a copy
stays gated.

A blocked call never raises (raising on the ReAct path makes CrewAI retry the call): it returns
CrewAI's own failure value, a ``ToolFailure(code="policy_block")`` on crewai versions that have
it, else a string naming the rule and the reason.

A tool that raises: on the native path the exception propagates to CrewAI, which reports it to
the model once. On the ReAct path CrewAI would re-invoke a raising tool (once more with the
unfiltered arguments, then again per parsing attempt: up to six executions of one call), so the
guard returns the error to the model once instead, as CrewAI's native path does
(``ToolFailure(reason="exception", code=<exception type>)``, or ``"Error executing tool: ..."``
on crewai without ``ToolFailure``). Every execution is recorded exactly once.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import wrapt
from pydantic import BaseModel, ValidationError

from calltape_crewai._compat import BLOCK_CODE, HAS_TOOL_FAILURE, BaseTool, ToolFailure

if TYPE_CHECKING:
    from calltape import CallResult, Session

__all__ = ["BlockMessage", "CalltapeTool", "block_value", "error_value", "is_block"]

FRAMEWORK = "crewai"
_FAILURE_FIELDS = frozenset(ToolFailure.model_fields) if HAS_TOOL_FAILURE else frozenset()


class BlockMessage(str):
    """Text calltape returns in place of a tool result on crewai versions without ``ToolFailure``.

    A ``str`` (CrewAI hands it to the model as is); the subclass only lets the proxy keep blocks
    and errors out of CrewAI's tool cache.
    """

    __slots__ = ()


def block_value(result: CallResult) -> Any:
    """Surface a blocked call in CrewAI's idiom.

    Args:
        result: A ``CallResult`` whose status is ``"blocked"``.

    Returns:
        ``ToolFailure(message, reason=TOOL_REPORTED, code="policy_block", details={tool, rule,
        reason})`` where the installed crewai has it (the model sees ``"<message> (code:
        policy_block)"`` and ``TaskOutput.tool_failures`` lists it), else a :class:`BlockMessage`.
    """
    message = result.block_message
    if HAS_TOOL_FAILURE:
        return ToolFailure(
            message=message,
            code=BLOCK_CODE,
            details={
                "calltape": "blocked",
                "tool": result.tool,
                "rule": result.decision.rule,
                "reason": result.decision.reason,
            },
        )
    return BlockMessage(message)


def error_value(exc: BaseException) -> Any:
    """Surface a tool's exception once, in CrewAI's idiom (the ReAct path; see module doc).

    Args:
        exc: What the tool raised.

    Returns:
        ``ToolFailure(message, reason="exception", code=<type name>)`` where the installed crewai
        has it, else the ``"Error executing tool: ..."`` text CrewAI's native path shows.
    """
    message = str(exc) or type(exc).__name__
    if HAS_TOOL_FAILURE:
        return ToolFailure(
            message=message,
            reason="exception",
            code=type(exc).__name__,
            details={"calltape": "error"},
        )
    return BlockMessage(f"Error executing tool: {message}")


def _not_a_result(value: Any) -> bool:
    """A block or error this integration returned: never a result to cache."""
    if isinstance(value, BlockMessage):
        return True
    return (
        HAS_TOOL_FAILURE
        and isinstance(value, ToolFailure)
        and value.details.get("calltape") in ("blocked", "error")
    )


def is_block(value: Any) -> bool:
    """Tell whether ``value`` is a block this integration returned.

    Args:
        value: Anything a tool returned.

    Returns:
        True for a :class:`BlockMessage` or a ``ToolFailure`` with ``code="policy_block"``.
    """
    if isinstance(value, BlockMessage):
        return True
    return HAS_TOOL_FAILURE and isinstance(value, ToolFailure) and value.code == BLOCK_CODE


def _rebuild(output: Any) -> Any:
    """A replayed value as the tool returned it live, where CrewAI gives it a meaning.

    The trace holds a ``ToolFailure`` a tool returned (a tool-reported failure, e.g. an MCP
    error) as its JSON form; rebuilding it makes a resumed run show the model the same text and
    list the same ``TaskOutput.tool_failures``. Every other value is returned as recorded.
    """
    if HAS_TOOL_FAILURE and isinstance(output, dict) and set(output) == _FAILURE_FIELDS:
        return ToolFailure.model_validate(output)
    return output


def _surface(result: CallResult, *, errors_as_values: bool = False) -> Any:
    """Translate a ``CallResult`` into what CrewAI expects back from a tool call.

    Raises:
        Exception: the tool's own exception when it raised and ``errors_as_values`` is False
            (CrewAI reports it to the model).
    """
    if result.status == "ok":
        return _rebuild(result.output) if result.replayed else result.output
    if result.status == "blocked":
        return block_value(result)
    if result.exception is not None:
        if errors_as_values:
            return error_value(result.exception)
        raise result.exception
    return result.unwrap()


def _call_args(tool: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The arguments the wrapped tool receives, after CrewAI's own validation.

    Positional arguments (``tool.run("x")``) are bound to the schema's fields in order, as
    ``CrewStructuredTool._run`` does, so the call is fingerprinted by name.

    Raises:
        TypeError: more positional arguments than the schema has fields, or one given twice.
        ValueError: CrewAI's own validation error (crewai >= 1.15 validates in ``run``).
    """
    merged = dict(kwargs)
    if args:
        schema = getattr(tool, "args_schema", None)
        fields = list(getattr(schema, "model_fields", {}) or {})
        if len(args) > len(fields):
            raise TypeError(
                f"tool {tool.name!r} takes {len(fields)} arguments ({', '.join(fields)}), "
                f"got {len(args)} positional"
            )
        for key, value in zip(fields, args, strict=False):
            if key in merged:
                raise TypeError(f"tool {tool.name!r} got multiple values for argument {key!r}")
            merged[key] = value
    validate = getattr(tool, "_validate_kwargs", None)
    if callable(validate):
        return dict(validate(merged))
    return merged


def _recorded_args(tool: Any, call_args: dict[str, Any]) -> dict[str, Any]:
    """What the trace records and fingerprints for ``call_args``.

    crewai >= 1.15 validates in ``run``, so ``call_args`` is already the validated form. Older
    versions run the tool with the model's arguments as given, while their ReAct path
    validates them first (defaults filled in): fingerprint the validated form there too, so
    the same call is the same call whichever path made it and whether or not the model spelled
    out a default. The tool still receives what CrewAI gives it. Arguments that do not
    validate are recorded as given.
    """
    if callable(getattr(tool, "_validate_kwargs", None)):
        return call_args
    schema = getattr(tool, "args_schema", None)
    if isinstance(schema, type) and issubclass(schema, BaseModel) and schema.model_fields:
        try:
            return dict(schema.model_validate(call_args).model_dump())
        except ValidationError:
            return call_args
    return call_args


def _guard_func(session: Session, name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a ``CrewStructuredTool.func`` so the ReAct path goes through the session."""
    if inspect.iscoroutinefunction(func):

        @functools.wraps(func)
        async def guarded_async(**kwargs: Any) -> Any:
            result = await session.arun_tool(
                name, kwargs, lambda: func(**kwargs), framework=FRAMEWORK
            )
            return _surface(result, errors_as_values=True)

        guarded_async.__calltape_guard__ = True  # type: ignore[attr-defined]
        return guarded_async

    @functools.wraps(func)
    def guarded(**kwargs: Any) -> Any:
        def invoke() -> Any:
            output = func(**kwargs)
            # CrewStructuredTool.invoke runs a coroutine a sync func returns; so do we, so the
            # trace holds the value and not a coroutine object.
            if asyncio.iscoroutine(output):
                output = asyncio.run(output)
            return output

        result = session.run_tool(name, kwargs, invoke, framework=FRAMEWORK)
        return _surface(result, errors_as_values=True)

    guarded.__calltape_guard__ = True  # type: ignore[attr-defined]
    return guarded


class CalltapeTool(wrapt.ObjectProxy):  # type: ignore[type-arg,unused-ignore]
    """A CrewAI ``BaseTool`` whose executions are recorded, gated and replayed by a Session.

    Everything except the execution methods is the wrapped tool's own, so CrewAI and the model
    cannot tell the difference. Build one with :func:`calltape_crewai.wrap_tool`.
    """

    def __init__(self, wrapped: BaseTool, session: Session) -> None:
        super().__init__(wrapped)
        self._self_session = session

    @property
    def calltape_session(self) -> Session:
        """The session this tool records into."""
        return self._self_session

    @property
    def _calltape_original(self) -> BaseTool:
        return self.__wrapped__  # type: ignore[no-any-return]

    # -- execution: the only behaviour the proxy changes ------------------------------------

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Execute through the session (the native function-calling path binds this).

        Returns:
            The tool's output, the recorded output on replay, or a block value.

        Raises:
            Exception: the tool's own exception; calltape errors such as ``ReplayMiss``.
        """
        tool = self.__wrapped__
        call_args = _call_args(tool, args, kwargs)
        result = self._self_session.run_tool(
            tool.name,
            _recorded_args(tool, call_args),
            lambda: tool.run(**call_args),
            framework=FRAMEWORK,
        )
        return _surface(result)

    async def arun(self, *args: Any, **kwargs: Any) -> Any:
        """Async twin of :meth:`run`.

        Returns:
            The tool's output, the recorded output on replay, or a block value.

        Raises:
            Exception: the tool's own exception; calltape errors such as ``ReplayMiss``.
        """
        tool = self.__wrapped__
        call_args = _call_args(tool, args, kwargs)
        invoke: Callable[[], Awaitable[Any]] = lambda: tool.arun(**call_args)  # noqa: E731
        result = await self._self_session.arun_tool(
            tool.name, _recorded_args(tool, call_args), invoke, framework=FRAMEWORK
        )
        return _surface(result)

    def to_structured_tool(self) -> Any:
        """The wrapped tool's ``CrewStructuredTool`` with a gated ``func`` (the ReAct path).

        Returns:
            A ``CrewStructuredTool`` whose ``_original_tool`` is this proxy.
        """
        structured = self.__wrapped__.to_structured_tool()
        structured.func = _guard_func(self._self_session, self.__wrapped__.name, structured.func)
        structured._original_tool = self
        return structured

    def format_output_for_agent(self, raw_result: Any) -> str:
        """The wrapped tool's formatter (crewai < 1.15 has none: ``str``).

        Returns:
            The text the agent sees for ``raw_result``.
        """
        inner = getattr(self.__wrapped__, "format_output_for_agent", None)
        if inner is None:
            return str(raw_result)
        return str(inner(raw_result))

    @property
    def cache_function(self) -> Callable[..., bool]:
        """The wrapped tool's ``cache_function``, except that blocks and errors are never cached."""
        inner = self.__wrapped__.cache_function

        def cache_function(args: Any = None, result: Any = None) -> bool:
            if _not_a_result(result):
                return False
            return bool(inner(args, result))

        return cache_function

    @cache_function.setter
    def cache_function(self, value: Callable[..., bool]) -> None:
        self.__wrapped__.cache_function = value

    # -- copies stay gated ------------------------------------------------------------------

    def __copy__(self) -> CalltapeTool:
        return type(self)(copy.copy(self.__wrapped__), self._self_session)

    def __deepcopy__(self, memo: dict[int, Any]) -> CalltapeTool:
        # Same failure as the wrapped tool where CrewAI's own tools cannot be deep-copied.
        return type(self)(copy.deepcopy(self.__wrapped__, memo), self._self_session)

    def model_copy(
        self, *, update: Mapping[str, Any] | None = None, deep: bool = False
    ) -> CalltapeTool:
        """Copy the wrapped tool as pydantic would, and wrap the copy.

        Returns:
            A new proxy around the copy, recording into the same session.
        """
        inner = self.__wrapped__.model_copy(update=update, deep=deep)
        return type(self)(inner, self._self_session)

    def __repr__(self) -> str:
        return f"CalltapeTool({self.__wrapped__!r})"
