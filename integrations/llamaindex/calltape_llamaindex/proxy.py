"""The gated tool: a copy of a LlamaIndex tool whose class is a cached subclass of its own class.

Why a class swap and not a wrapt proxy: workflow agents branch on
``isinstance(tool, FunctionTool)`` to inject ``Context``, ``adapt_to_async_tool`` branches on
``isinstance(tool, AsyncBaseTool)``, and users copy tools. A shallow ``copy.copy`` of the tool
whose ``__class__`` is set to a subclass of the tool's own class keeps every attribute
(``metadata`` is the very same object, so the schema the model sees is the original's), passes
every isinstance check, and changes only the methods the loops call to execute the tool:

- ``AsyncBaseTool`` (``FunctionTool``, ``QueryEngineTool``, third-party subclasses): ``call`` and
  ``acall``. ``__call__`` delegates to ``call``; it is gated as well when a subclass overrides it.
- any other ``BaseTool``: ``__call__`` (workflow agents reach it through ``BaseToolAsyncAdapter``).

``DispatcherSpanMixin`` wraps overrides of abstract methods in an instrumentation span; the
overrides here are marked ``__dispatcher_span_decorated__`` so a call opens one span (the
original method's), not two.

The gated copy keeps its session in ``_calltape_session`` and the tool it was made from in
``_calltape_original``. ``copy.copy`` keeps both (so the copy stays gated); ``copy.deepcopy``
deep-copies the tool but shares them (a session is a live recorder, not data). Pickling fails
loudly: the gated class is not importable by name, so a pickle can never come back ungated.
"""

from __future__ import annotations

import copy
import inspect
import threading
import weakref
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

from llama_index.core.tools import AsyncBaseTool, BaseTool, FunctionTool, ToolMetadata, ToolOutput

from calltape import CallResult, Session
from calltape.fingerprint import to_jsonable

__all__ = ["gate", "is_wrapped", "tool_arguments", "unwrap"]

FRAMEWORK = "llamaindex"
_SESSION = "_calltape_session"
_ORIGINAL = "_calltape_original"
_SPAN_DECORATED = "__dispatcher_span_decorated__"
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)

ToolT = TypeVar("ToolT", bound=BaseTool)

_classes: weakref.WeakKeyDictionary[type, type] = weakref.WeakKeyDictionary()
_classes_lock = threading.Lock()


class ToolOutputError(Exception):
    """A tool returned ``ToolOutput(is_error=True)`` instead of raising.

    Raised inside the recorded call so the trace says "error" (and resume re-runs the call instead
    of replaying a failure as a success); the integration then hands the tool's own output back to
    the agent unchanged.

    Attributes:
        tool_output: The ``ToolOutput`` the tool returned.
    """

    def __init__(self, tool_output: ToolOutput) -> None:
        self.tool_output = tool_output
        super().__init__(tool_output.content)


def is_wrapped(tool: Any) -> bool:
    """Tell whether ``tool`` is a calltape-gated LlamaIndex tool."""
    return bool(getattr(type(tool), "_calltape_gated", False)) and _ORIGINAL in getattr(
        tool, "__dict__", {}
    )


def unwrap(tool: ToolT) -> ToolT:
    """Return the tool a gated tool was made from (``tool`` itself when it is not gated)."""
    if is_wrapped(tool):
        original: ToolT = vars(tool)[_ORIGINAL]
        return original
    return tool


def gate(session: Session, tool: ToolT) -> ToolT:
    """Return a gated copy of ``tool`` whose calls go through ``session``.

    A tool that is already gated is unwrapped first, so wrapping twice records each call once.

    Args:
        session: The calltape session that records and gates the calls.
        tool: Any LlamaIndex ``BaseTool``.

    Returns:
        A copy of the tool, of a subclass of its own class.

    Raises:
        TypeError: the tool has no instance ``__dict__`` (a ``__slots__``-only class).
    """
    original = unwrap(tool)
    if not hasattr(original, "__dict__"):
        raise TypeError(
            f"cannot wrap {type(original).__qualname__}: calltape keeps its state in the tool's "
            "__dict__ and this class uses __slots__ only"
        )
    gated = copy.copy(original)
    gated.__class__ = _gated_class(type(original))
    vars(gated)[_SESSION] = session
    vars(gated)[_ORIGINAL] = original
    return gated


def tool_arguments(
    tool: BaseTool, args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The arguments of a call as the tool receives them, restricted to the tool's schema keys.

    Positional arguments (``call_tool`` passes a single argument positionally on older
    llama-index-core) are bound to their parameter names, so ``tool("x")`` and ``tool(text="x")``
    fingerprint alike. Injected values that are not in the schema (the workflow ``Context``,
    ``partial_params``) are left out.

    Args:
        tool: The tool being called.
        args: Positional arguments of the call.
        kwargs: Keyword arguments of the call.

    Returns:
        A dict of schema key to value, in schema order.

    Raises:
        TypeError: a FunctionTool's function cannot take these positional arguments (the call
            would fail before the function's body runs).
    """
    keys = _schema_keys(tool.metadata)
    bound: dict[str, Any] = dict(kwargs)
    if args:
        bound = _bind_positional(tool, args, kwargs, keys)
    return {key: bound[key] for key in keys if key in bound}


_STOCK_PARAMETERS = ToolMetadata.get_parameters_dict
#: schema keys per ``fn_schema`` class: building the JSON schema costs 0.4-1.7 ms, per call
_KEYS: weakref.WeakKeyDictionary[type, tuple[str, ...]] = weakref.WeakKeyDictionary()


def _schema_keys(metadata: ToolMetadata) -> tuple[str, ...]:
    """The parameter names the model sees, worked out once per schema class."""
    schema = metadata.fn_schema
    stock = getattr(type(metadata), "get_parameters_dict", None) is _STOCK_PARAMETERS
    if stock and isinstance(schema, type):
        keys = _KEYS.get(schema)
        if keys is None:
            keys = _KEYS[schema] = tuple(metadata.get_parameters_dict().get("properties", {}))
        return keys
    return tuple(metadata.get_parameters_dict().get("properties", {}))


def _bind_positional(
    tool: BaseTool, args: tuple[Any, ...], kwargs: Mapping[str, Any], keys: tuple[str, ...]
) -> dict[str, Any]:
    signature = _user_signature(tool)
    if signature is not None:
        # What FunctionTool.call passes on besides the call's own arguments.
        extra = {**getattr(tool, "_field_defaults", {}), **getattr(tool, "partial_params", {})}
        try:
            signature.bind_partial(*args, **{**extra, **kwargs})
        except TypeError as exc:
            # The function cannot take these arguments, so calling it would raise TypeError
            # before its body runs. Raise it here, before the gate: nothing is recorded for a
            # call that cannot happen (call_tool before 0.14.25 tries tool("x"), then keywords).
            raise TypeError(f"{tool.metadata.name}() {exc}") from None
        names = [p.name for p in signature.parameters.values() if p.kind in _POSITIONAL]
        if len(args) <= len(names):
            return {**dict(zip(names, args, strict=False)), **kwargs}
    free = [key for key in keys if key not in kwargs]
    return {**dict(zip(free, args, strict=False)), **kwargs}


def _user_signature(tool: BaseTool) -> inspect.Signature | None:
    """The signature of a FunctionTool's own function, or None when it is not known."""
    if not isinstance(tool, FunctionTool):
        return None
    try:
        # real_fn (the user's function) exists from 0.12.2x; fn is it for sync functions.
        signature = inspect.signature(getattr(tool, "real_fn", None) or tool.fn)
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in signature.parameters.values()):
        return None  # a generic wrapper (or *args): bind by schema order instead
    return signature


def _raw_input(tool: BaseTool, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    # FunctionTool's own shape, without the injected Context (as FunctionTool does).
    ctx_name = getattr(tool, "ctx_param_name", None)
    return {"args": args, "kwargs": {k: v for k, v in kwargs.items() if k != ctx_name}}


def _recorded_value(output: Any) -> Any:
    """What the trace keeps for a live call: the tool's content, not the ToolOutput envelope.

    That is the tool's raw output (for a FunctionTool, what the function returned) whenever a
    replay, which shows the model ``str(recorded value)``, reproduces the text the model saw;
    otherwise (a tool or callback that formats its own content) it is that text itself, so a
    resumed run sees exactly what the first run saw.
    """
    if not isinstance(output, ToolOutput):
        return output
    if output.is_error:
        raise ToolOutputError(output)
    value, _ = to_jsonable(output.raw_output)
    return output.raw_output if str(value) == output.content else output.content


def _to_tool_output(
    tool: BaseTool,
    result: CallResult,
    live: list[Any],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> Any:
    name = tool.metadata.get_name()
    if result.status == "blocked":
        return ToolOutput(
            content=result.block_message,
            tool_name=name,
            raw_input=_raw_input(tool, args, kwargs),
            raw_output=None,
            is_error=True,
        )
    if result.status == "error":
        if isinstance(result.exception, ToolOutputError):
            return result.exception.tool_output
        if result.exception is not None:
            raise result.exception  # the framework's own error path, as without calltape
        return result.unwrap()  # raises: an error the tool raised in an earlier process
    if live and not result.replayed:
        return live[0]  # the very object the tool returned
    value = result.output
    return ToolOutput(
        content=str(value),
        tool_name=name,
        raw_input=_raw_input(tool, args, kwargs),
        raw_output=value,
    )


def _run(
    tool: BaseTool, call: Callable[[], Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> Any:
    session: Session = vars(tool)[_SESSION]
    live: list[Any] = []

    def invoke() -> Any:
        output = call()
        live.append(output)
        return _recorded_value(output)

    result = session.run_tool(
        tool.metadata.get_name(), tool_arguments(tool, args, kwargs), invoke, framework=FRAMEWORK
    )
    return _to_tool_output(tool, result, live, args, kwargs)


async def _arun(
    tool: BaseTool,
    call: Callable[[], Awaitable[Any]],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> Any:
    session: Session = vars(tool)[_SESSION]
    live: list[Any] = []

    async def invoke() -> Any:
        output = await call()
        live.append(output)
        return _recorded_value(output)

    result = await session.arun_tool(
        tool.metadata.get_name(), tool_arguments(tool, args, kwargs), invoke, framework=FRAMEWORK
    )
    return _to_tool_output(tool, result, live, args, kwargs)


def _defining_class(cls: type, attr: str) -> type | None:
    return next((klass for klass in cls.__mro__ if attr in vars(klass)), None)


def _gated_class(base: type) -> type:
    with _classes_lock:
        cls = _classes.get(base)
        if cls is None:
            cls = _make_gated_class(base)
            _classes[base] = cls
        return cls


def _make_gated_class(base: type) -> type:
    namespace: dict[str, Any] = {
        "__slots__": (),
        "__module__": __name__,
        "__doc__": base.__doc__,
        "_calltape_gated": True,
    }
    gated: Any = None  # set below; the methods close over it for super()

    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        return _run(self, lambda: super(gated, self).call(*args, **kwargs), args, kwargs)

    async def acall(self: Any, *args: Any, **kwargs: Any) -> Any:
        return await _arun(self, lambda: super(gated, self).acall(*args, **kwargs), args, kwargs)

    def __call__(self: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N807
        return _run(self, lambda: super(gated, self).__call__(*args, **kwargs), args, kwargs)

    def __deepcopy__(self: Any, memo: dict[int, Any]) -> Any:  # noqa: N807
        state = vars(self)
        for key in (_SESSION, _ORIGINAL):
            memo[id(state[key])] = state[key]  # shared, not copied
        base_deepcopy = getattr(base, "__deepcopy__", None)
        if base_deepcopy is not None:
            return base_deepcopy(self, memo)
        cls: Any = type(self)
        new = cls.__new__(cls)
        memo[id(self)] = new
        for key, value in state.items():
            vars(new)[key] = copy.deepcopy(value, memo)
        return new

    if issubclass(base, AsyncBaseTool):
        namespace["call"] = call
        namespace["acall"] = acall
        if _defining_class(base, "__call__") not in (AsyncBaseTool, FunctionTool):
            namespace["__call__"] = __call__  # a subclass with its own __call__
    else:
        namespace["__call__"] = __call__
    namespace["__deepcopy__"] = __deepcopy__
    for attr in ("call", "acall", "__call__"):
        if attr in namespace:
            setattr(namespace[attr], _SPAN_DECORATED, True)

    gated = type(f"Gated{base.__name__}", (base,), namespace)
    return gated  # type: ignore[no-any-return]
