"""Build gated AutoGen tools: ``create_autogen_toolkit`` and ``wrap_tool``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, cast

import autogen_core.tools
from autogen_core.tools import BaseTool, FunctionTool

from calltape import Session, ToolSpec
from calltape_autogen.proxy import CalltapeStreamTool, CalltapeTool

# autogen-core >= 0.6; 0.4/0.5 have no streaming tools.
_StreamTool: Any = getattr(autogen_core.tools, "StreamTool", None)

__all__ = ["create_autogen_toolkit", "wrap_tool"]

_ACCEPTED = (
    "an autogen_core.tools.BaseTool (FunctionTool, a BaseStreamTool, an autogen-ext MCP tool, ...) "
    "or a plain typed function"
)


def wrap_tool(
    session: Session, tool: BaseTool[Any, Any] | Callable[..., Any]
) -> BaseTool[Any, Any]:
    """Put one AutoGen tool behind ``session``.

    Args:
        session: The calltape session that records, gates and replays the calls.
        tool: An ``autogen_core.tools.BaseTool`` (a streaming tool stays streaming), or a plain
            typed function, which becomes ``FunctionTool(fn, description=fn.__doc__ or "")`` exactly
            as ``AssistantAgent(tools=[fn])`` would build it. A tool that is already gated is
            unwrapped first, so it is never gated twice.

    Returns:
        A proxy that passes ``isinstance(..., BaseTool)`` (and ``StreamTool`` when the tool
        streams) and shows the model the same name, description and schema.

    Raises:
        TypeError: ``session`` is not a ``calltape.Session``, or ``tool`` is neither of the
            accepted types.
    """
    _check_session(session)
    candidate: object = tool
    if isinstance(candidate, CalltapeTool):
        candidate = candidate.__wrapped__
    if not isinstance(candidate, BaseTool):
        if not callable(candidate) or isinstance(candidate, type):
            raise TypeError(
                f"wrap_tool() expects {_ACCEPTED}; got {type(candidate).__name__}: {candidate!r}"
            )
        candidate = FunctionTool(candidate, description=getattr(candidate, "__doc__", None) or "")
    proxy_type = (
        CalltapeStreamTool
        if _StreamTool is not None and isinstance(candidate, _StreamTool)
        else CalltapeTool
    )
    # The proxy passes isinstance(..., BaseTool) at run time; tell the type checker the same.
    return cast("BaseTool[Any, Any]", proxy_type(candidate, session))


def create_autogen_toolkit(
    session: Session, tools: Iterable[BaseTool[Any, Any] | Callable[..., Any]] | None = None
) -> list[BaseTool[Any, Any]]:
    """AutoGen tools for ``AssistantAgent(tools=...)`` or ``StaticWorkbench(...)``, all gated.

    Args:
        session: The calltape session.
        tools: ``None`` builds one ``FunctionTool`` per function registered on the session (its
            name and description as registered), as ``FunctionTool(fn, description)`` would; a list
            of AutoGen tools or typed functions wraps those (see :func:`wrap_tool`).

    Returns:
        The gated tools, in order.

    Raises:
        TypeError: ``session`` is not a ``calltape.Session``, ``tools`` is not a list of tools, or
            an item is neither of the accepted types.
    """
    _check_session(session)
    if tools is None:
        return [wrap_tool(session, _function_tool(spec)) for spec in session.tools.values()]
    if isinstance(tools, (str, bytes, BaseTool)) or not isinstance(tools, Iterable):
        raise TypeError(
            f"create_autogen_toolkit(tools=...) expects a list of {_ACCEPTED}, or None for the "
            f"session's registered functions; got {type(tools).__name__}"
        )
    return [wrap_tool(session, tool) for tool in tools]


def _function_tool(spec: ToolSpec) -> FunctionTool:
    if spec.fn is None:  # declared-only names have nothing to run
        raise TypeError(f"tool {spec.name!r} has no function to build a FunctionTool from")
    description = spec.description if spec.description is not None else (spec.fn.__doc__ or "")
    return FunctionTool(spec.fn, description=description, name=spec.name)


def _check_session(session: object) -> None:
    if not isinstance(session, Session):
        raise TypeError(f"expected a calltape.Session, got {type(session).__name__}: {session!r}")


def is_wrapped(tool: object) -> bool:
    """Tell whether ``tool`` is a calltape-gated AutoGen tool."""
    return isinstance(tool, CalltapeTool)


def unwrap_tool(tool: BaseTool[Any, Any]) -> BaseTool[Any, Any]:
    """Return the tool a gated tool wraps (``tool`` itself when it is not gated)."""
    candidate: Any = tool
    while isinstance(candidate, CalltapeTool):
        candidate = candidate.__wrapped__
    return cast(BaseTool[Any, Any], candidate)
