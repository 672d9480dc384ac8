"""Public factories: ``create_crewai_toolkit`` and ``wrap_tool``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from calltape_crewai._compat import BaseTool, crewai_tool
from calltape_crewai.proxy import CalltapeTool

if TYPE_CHECKING:
    from calltape import Session, ToolSpec

__all__ = ["create_crewai_toolkit", "native_tool", "wrap_tool"]

_ACCEPTED = (
    "a crewai BaseTool (made with @crewai.tools.tool, a BaseTool subclass, or a crewai_tools "
    "tool); for a plain function, register it on the session (session.register / @session.tool) "
    "and call create_crewai_toolkit(session)"
)


def _check_session(session: Any) -> None:
    from calltape import Session

    if not isinstance(session, Session):
        raise TypeError(f"expected a calltape.Session, got {type(session).__name__}: {session!r}")


def wrap_tool(session: Session, tool: BaseTool) -> BaseTool:
    """Wrap one CrewAI tool so every execution is recorded, gated and replayed by ``session``.

    The result is still a ``BaseTool`` (``isinstance`` holds) with the same name, description and
    ``args_schema``; pass it to ``Agent(tools=[...])``. Wrapping an already wrapped tool does
    not stack: the same proxy is returned for the same session, a fresh one for another.

    Args:
        session: The calltape session.
        tool: A crewai ``BaseTool``.

    Returns:
        The proxy, typed as the tool it wraps.

    Raises:
        TypeError: ``session`` is not a Session, or ``tool`` is not a crewai ``BaseTool``.
    """
    _check_session(session)
    candidate: Any = tool  # checked at run time: callers are not always type-checked
    if isinstance(candidate, CalltapeTool):
        if candidate.calltape_session is session:
            return cast(BaseTool, candidate)
        candidate = candidate.__wrapped__
    if not isinstance(candidate, BaseTool):
        raise TypeError(
            f"wrap_tool expects {_ACCEPTED}; got {type(candidate).__name__}: {candidate!r}"
        )
    return cast(BaseTool, CalltapeTool(candidate, session))


def _described(fn: Callable[..., Any], description: str) -> Callable[..., Any]:
    """``fn`` with ``description`` as its docstring (the decorator reads ``__doc__``)."""
    if fn.__doc__ == description:
        return fn

    @functools.wraps(fn)
    def described(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    described.__doc__ = description
    return described


def native_tool(spec: ToolSpec) -> BaseTool:
    """Build the tool ``crewai.tools.tool`` would build for a registered function.

    Args:
        spec: A session's ``ToolSpec`` with a callable ``fn``.

    Returns:
        ``crewai.tools.tool(spec.name)(fn)``, with the spec's description as the tool's
        description (the function's docstring when the spec has none).

    Raises:
        TypeError: the spec has no callable (a ``session.declare`` entry).
    """
    if spec.fn is None:
        raise TypeError(f"tool {spec.name!r} was declared without a function; nothing to build")
    description = spec.description or spec.fn.__doc__ or spec.name
    return crewai_tool(spec.name)(_described(spec.fn, description))


def create_crewai_toolkit(session: Session, tools: Iterable[BaseTool] | None = None) -> list[Any]:
    """CrewAI tools that record, gate and replay every call through ``session``.

    Args:
        session: The calltape session.
        tools: ``None`` to build CrewAI tools from the session's registered functions (as
            ``@crewai.tools.tool`` would, in registration order), or existing crewai tools to
            wrap.

    Returns:
        A list of ``BaseTool`` proxies for ``Agent(tools=...)``.

    Raises:
        TypeError: ``session`` is not a Session, ``tools`` is not a list of crewai tools.
    """
    _check_session(session)
    if tools is None:
        return [
            wrap_tool(session, native_tool(spec))
            for spec in session.tools.values()
            if spec.fn is not None
        ]
    given: Any = tools  # checked at run time: callers are not always type-checked
    if isinstance(given, (BaseTool, str, bytes)) or not isinstance(given, Iterable):
        raise TypeError(
            f"tools must be a list of crewai tools ({_ACCEPTED}); got {type(given).__name__}"
        )
    return [wrap_tool(session, tool) for tool in given]


def is_wrapped(tool: object) -> bool:
    """Tell whether ``tool`` is a calltape-gated CrewAI tool."""
    return isinstance(tool, CalltapeTool)


def unwrap_tool(tool: BaseTool) -> BaseTool:
    """Return the tool a gated tool wraps (``tool`` itself when it is not gated)."""
    candidate: Any = tool
    while isinstance(candidate, CalltapeTool):
        candidate = candidate.__wrapped__
    return cast(BaseTool, candidate)
