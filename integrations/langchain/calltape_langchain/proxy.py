"""The gate inside a LangChain tool.

A wrapped tool is ``tool.model_copy()`` whose ``__class__`` is swapped to a subclass of the
tool's own class (one cached subclass per tool class). The subclass changes behaviour only
where the tool's body runs:

* ``run`` / ``arun``: every entry point (``invoke``, ``ainvoke``, LangGraph's ``ToolNode``,
  ``create_agent``, the legacy ``AgentExecutor``) ends here; they remember the ``ToolCall`` id
  of this call, nothing else.
* ``_run`` / ``_arun``: LangChain calls them after it has parsed and validated the model's
  arguments and injected state, runtime and config. They send the call through
  :meth:`calltape.Session.run_tool` (``arun_tool``), which records it, asks the policy, and
  then runs the original ``_run`` / ``_arun`` or answers from the trace.

Why this shape rather than a plain object proxy: ``isinstance``, the pydantic fields, the name,
description and schema stay the tool's own; ``model_copy()``, ``copy.copy`` and
``copy.deepcopy`` keep the subclass, hence the gate; and LangChain's own ``run`` still fires
the callbacks, builds the ``ToolMessage`` (artifacts included) and applies
``handle_tool_error``, for live, replayed and blocked calls alike. The overrides of ``_run`` /
``_arun`` are ``functools.wraps`` of the originals, so LangChain's signature introspection
(``run_manager``, ``RunnableConfig``, injected arguments, and the schema of tools that derive
it from ``_run``) sees the original method.

A blocked call returns ``ToolMessage(status="error")`` naming the rule and the reason (a plain
string when the call has no ``tool_call_id``) and never raises: LangGraph's ``ToolNode``
re-raises tool exceptions by default, which would end the run.
"""

from __future__ import annotations

import functools
import inspect
import threading
import typing
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from langchain_core.messages import ToolMessage
from langchain_core.runnables import RunnableConfig
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.pydantic import get_fields

from calltape import CallResult, Session
from calltape.errors import IntegrationError

__all__ = ["FRAMEWORK", "CalltapeTool", "is_wrapped", "unwrap_tool", "wrap"]

FRAMEWORK = "langchain"
"""The ``framework`` field of every call this integration records."""

_SESSION_KEY = "_calltape_session"
_KEYS_KEY = "_calltape_schema_keys"
_BASE_ATTR = "__calltape_base__"

T = TypeVar("T", bound=BaseTool)


class CalltapeTool:
    """Marker base of every gated LangChain tool class: ``isinstance(tool, CalltapeTool)``.

    A gated tool is also an instance of its original class (``StructuredTool``, your own
    ``BaseTool`` subclass, ...); this class adds no behaviour of its own.
    """

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class _Frame:
    """The tool call in progress in this context.

    ``executing`` is set while the original ``_run`` / ``_arun`` runs, so that LangChain's own
    fallbacks (``_arun`` running ``_run`` in a thread) pass through instead of gating twice.
    """

    tool: BaseTool
    call_id: str | None
    executing: bool


_FRAME: ContextVar[_Frame | None] = ContextVar("calltape_langchain_frame", default=None)

_CLASSES: dict[type[BaseTool], type[BaseTool]] = {}
_CLASSES_LOCK = threading.Lock()


def is_wrapped(tool: object) -> bool:
    """Whether ``tool`` is a LangChain tool gated by calltape."""
    return isinstance(tool, CalltapeTool)


def session_of(tool: BaseTool) -> Session:
    """The session a gated tool records into.

    Raises:
        IntegrationError: ``tool`` is not bound to a session (not made by ``wrap_tool``).
    """
    private = tool.__pydantic_private__ or {}
    session = private.get(_SESSION_KEY)
    if not isinstance(session, Session):
        raise IntegrationError(
            f"tool {tool.name!r} is not bound to a calltape Session; "
            "create it with calltape_langchain.wrap_tool(session, tool)"
        )
    return session


def wrap(session: Session, tool: T) -> T:
    """Return a gated copy of ``tool`` recording into ``session``.

    A tool that is already gated is re-bound (to ``session``), never gated twice.
    """
    base = _base_class(type(tool))
    gated = _gated_class(base)
    copied = tool.model_copy()
    object.__setattr__(copied, "__class__", gated)
    private = dict(copied.__pydantic_private__ or {})
    private[_SESSION_KEY] = session
    object.__setattr__(copied, "__pydantic_private__", private)
    return copied


def unwrap_tool(tool: T) -> T:
    """Return a plain (ungated) copy of a gated tool; any other tool unchanged."""
    base = _base_class(type(tool))
    if base is type(tool):
        return tool
    copied = tool.model_copy()
    object.__setattr__(copied, "__class__", base)
    private = dict(copied.__pydantic_private__ or {})
    private.pop(_SESSION_KEY, None)
    private.pop(_KEYS_KEY, None)
    object.__setattr__(copied, "__pydantic_private__", private or None)
    return copied


def _base_class(cls: type[T]) -> type[T]:
    return cast("type[T]", cls.__dict__.get(_BASE_ATTR, cls))


def _gated_class(base: type[BaseTool]) -> type[BaseTool]:
    with _CLASSES_LOCK:
        cls = _CLASSES.get(base)
        if cls is None:
            cls = _CLASSES[base] = _build_class(base)
        return cls


def _build_class(base: type[BaseTool]) -> type[BaseTool]:
    namespace: dict[str, Any] = {
        "__module__": base.__module__,
        "__qualname__": base.__qualname__,
        "__doc__": base.__doc__,
        _BASE_ATTR: base,
        "run": _run_entry(base),
        "arun": _arun_entry(base),
        "_run": _sync_gate(base._run),
        "__deepcopy__": _deepcopy(base),
        "__reduce_ex__": _no_pickle,
    }
    # Only where the tool has its own async body: otherwise BaseTool._arun runs _run in a
    # thread (through the sync gate), exactly as it does for the original tool.
    if base._arun is not BaseTool._arun:
        namespace["_arun"] = _async_gate(base._arun)
    metaclass: Any = type(base)  # pydantic's ModelMetaclass
    return cast("type[BaseTool]", metaclass(base.__name__, (base, CalltapeTool), namespace))


def _run_entry(base: type[BaseTool]) -> Callable[..., Any]:
    def run(self: BaseTool, tool_input: Any, *args: Any, **kwargs: Any) -> Any:
        token = _FRAME.set(_Frame(self, kwargs.get("tool_call_id"), executing=False))
        try:
            return base.run(self, tool_input, *args, **kwargs)
        finally:
            _FRAME.reset(token)

    run.__doc__ = base.run.__doc__
    return run


def _arun_entry(base: type[BaseTool]) -> Callable[..., Any]:
    async def arun(self: BaseTool, tool_input: Any, *args: Any, **kwargs: Any) -> Any:
        token = _FRAME.set(_Frame(self, kwargs.get("tool_call_id"), executing=False))
        try:
            return await base.arun(self, tool_input, *args, **kwargs)
        finally:
            _FRAME.reset(token)

    arun.__doc__ = base.arun.__doc__
    return arun


def _deepcopy(base: type[BaseTool]) -> Callable[..., Any]:
    def __deepcopy__(self: BaseTool, memo: dict[int, Any] | None = None) -> BaseTool:  # noqa: N807
        # The copy keeps recording into the same session (a session owns an open trace).
        memo = {} if memo is None else memo
        session = (self.__pydantic_private__ or {}).get(_SESSION_KEY)
        if session is not None:
            memo.setdefault(id(session), session)
        return base.__deepcopy__(self, memo)

    return __deepcopy__


def _no_pickle(self: BaseTool, protocol: object) -> Any:
    raise TypeError(
        f"a calltape-gated LangChain tool ({self.name!r}) cannot be pickled: it records into an "
        "open Session; pickle calltape_langchain.unwrap_tool(tool) and wrap it again after loading"
    )


def _current(tool: BaseTool) -> tuple[bool, str | None]:
    """(pass through?, call id) for a call of ``tool`` arriving at ``_run`` / ``_arun``."""
    frame = _FRAME.get()
    if frame is None or frame.tool is not tool:
        return False, None
    return frame.executing, frame.call_id


def _sync_gate(original: Callable[..., Any]) -> Callable[..., Any]:
    dropped = _runtime_params(original)

    @functools.wraps(original)
    def _run(self: BaseTool, *args: Any, **kwargs: Any) -> Any:
        passthrough, call_id = _current(self)
        if passthrough:
            return original(self, *args, **kwargs)

        def invoke() -> Any:
            token = _FRAME.set(_Frame(self, call_id, executing=True))
            try:
                return original(self, *args, **kwargs)
            finally:
                _FRAME.reset(token)

        result = session_of(self).run_tool(
            self.name,
            _call_args(self, args, kwargs, dropped),
            invoke,
            call_id=call_id,
            framework=FRAMEWORK,
        )
        return _respond(self, result, call_id)

    return _run


def _async_gate(original: Callable[..., Any]) -> Callable[..., Any]:
    dropped = _runtime_params(original)

    @functools.wraps(original)
    async def _arun(self: BaseTool, *args: Any, **kwargs: Any) -> Any:
        passthrough, call_id = _current(self)
        if passthrough:
            return await original(self, *args, **kwargs)

        async def execute() -> Any:
            token = _FRAME.set(_Frame(self, call_id, executing=True))
            try:
                return await original(self, *args, **kwargs)
            finally:
                _FRAME.reset(token)

        result = await session_of(self).arun_tool(
            self.name,
            _call_args(self, args, kwargs, dropped),
            execute,
            call_id=call_id,
            framework=FRAMEWORK,
        )
        return _respond(self, result, call_id)

    return _arun


def _runtime_params(method: Callable[..., Any]) -> frozenset[str]:
    """Parameters LangChain's ``run`` fills in itself: ``run_manager`` and the config param."""
    try:
        params = inspect.signature(method).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins have no signature
        return frozenset({"run_manager"})
    names = {"run_manager"} & set(params)
    try:
        hints = typing.get_type_hints(method)
    except Exception:  # unresolvable hints: LangChain's run() injects no config either
        hints = {}
    names |= {name for name, hint in hints.items() if hint is RunnableConfig}
    return frozenset(names)


def _call_args(
    tool: BaseTool,
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
    dropped: frozenset[str],
) -> dict[str, Any]:
    """The arguments to fingerprint: validated values of the keys the model can set.

    State, runtime, ``tool_call_id`` and other injected arguments are not in the tool-call
    schema, so they never reach the fingerprint; neither do ``run_manager`` and the config.
    """
    keys = _schema_keys(tool)
    out = {k: v for k, v in kwargs.items() if k in keys and k not in dropped}
    if args:
        # Single-input tools (langchain_core.tools.Tool) get their input positionally; the
        # model sees (and sends) it under the names of the tool's JSON schema, e.g. "__arg1".
        names = list(convert_to_openai_tool(tool)["function"]["parameters"].get("properties", {}))
        if len(names) == len(args):
            out.update(zip(names, args, strict=True))
        else:
            out["args"] = list(args)
    return out


def _schema_keys(tool: BaseTool) -> frozenset[str]:
    """The keys of the tool-call schema (what the model may send), cached per args_schema.

    Building ``tool_call_schema`` is costly on langchain-core 0.3 (a new pydantic model on
    every access); it depends only on ``args_schema`` (or, without one, on the class's ``_run``),
    so the keys are kept beside the session and rebuilt when ``args_schema`` is reassigned.
    """
    private = tool.__pydantic_private__
    cached = private.get(_KEYS_KEY) if private is not None else None
    if cached is not None and cached[0] is tool.args_schema:
        return cast("frozenset[str]", cached[1])
    schema = tool.tool_call_schema
    if isinstance(schema, dict):
        keys = frozenset(schema.get("properties", {}))
    else:
        keys = frozenset(get_fields(schema))
    if private is not None:
        private[_KEYS_KEY] = (tool.args_schema, keys)
    return keys


def _respond(tool: BaseTool, result: CallResult, call_id: str | None) -> Any:
    """Turn a :class:`CallResult` into what ``_run`` returns to LangChain's ``run``."""
    if result.status == "blocked":
        message = result.block_message
        blocked: Any = (
            ToolMessage(content=message, tool_call_id=call_id, name=tool.name, status="error")
            if call_id is not None
            else message
        )
        # run() unpacks (content, artifact) for such tools; a ToolMessage passes through as is.
        return (blocked, None) if tool.response_format == "content_and_artifact" else blocked
    if result.status == "error":
        if result.exception is not None:
            raise result.exception  # LangChain's own handling (handle_tool_error, ToolNode)
        return result.unwrap()
    if result.replayed:
        return _from_record(tool, result.output, call_id)
    return result.output


def _from_record(tool: BaseTool, output: Any, call_id: str | None) -> Any:
    """Rebuild what the tool returned from its recorded JSON form."""
    if (
        tool.response_format == "content_and_artifact"
        and isinstance(output, list)
        and len(output) == 2
    ):
        return tuple(output)
    if isinstance(output, dict) and output.get("type") == "tool" and "tool_call_id" in output:
        message = ToolMessage.model_validate(output)
        if call_id is not None:
            message.tool_call_id = call_id
        return message
    return output
