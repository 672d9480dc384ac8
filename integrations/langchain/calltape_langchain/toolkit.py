"""``create_langchain_toolkit`` and ``wrap_tool``: gated LangChain tools for a session."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import TypeVar

from langchain_core.tools import BaseTool, StructuredTool

from calltape import Session, ToolSpec
from calltape_langchain.proxy import wrap

__all__ = ["create_langchain_toolkit", "wrap_tool"]

T = TypeVar("T", bound=BaseTool)

_ACCEPTED = (
    "a LangChain tool (langchain_core.tools.BaseTool: a @tool function, StructuredTool, Tool, "
    "or your own BaseTool subclass)"
)


def create_langchain_toolkit(
    session: Session, tools: Iterable[BaseTool] | None = None
) -> list[BaseTool]:
    """Gated LangChain tools that record into ``session``.

    Args:
        session: The calltape session that records, gates and replays the calls.
        tools: Tools to wrap (any ``BaseTool``, third-party ones included). ``None`` builds one
            ``StructuredTool`` per function registered on the session, exactly as
            ``langchain_core.tools.tool`` would (name, docstring, type hints -> schema).

    Returns:
        The gated tools, in order: pass them to ``create_agent``, ``ToolNode``, etc.

    Raises:
        TypeError: ``session`` is not a Session, ``tools`` is not a list of tools, or an item
            is not a LangChain tool.
    """
    _check_session(session)
    if tools is None:
        return [wrap(session, _native_tool(spec)) for spec in session.tools.values()]
    given: object = tools  # checked at runtime: callers are not always type-checked
    if isinstance(given, (BaseTool, str, bytes)) or not isinstance(given, Iterable):
        raise TypeError(
            f"tools must be a list of LangChain tools, got {type(given).__name__}; "
            "pass tools=[tool] for a single tool"
        )
    return [wrap_tool(session, tool) for tool in tools]


def wrap_tool(session: Session, tool: T) -> T:
    """Return a gated copy of one LangChain tool, recording into ``session``.

    The copy is an instance of the tool's own class, with the same name, description and
    schema; it survives ``model_copy()``, ``copy.copy`` and ``copy.deepcopy``. Wrapping an
    already gated tool re-binds it instead of gating twice. Declare the tool's side effect
    with ``session.declare(tool.name, side_effect=...)`` so that policies can judge it.

    Args:
        session: The calltape session that records, gates and replays the calls.
        tool: The tool to wrap.

    Returns:
        The gated copy (the original tool is left untouched).

    Raises:
        TypeError: ``session`` is not a Session or ``tool`` is not a LangChain tool.
    """
    _check_session(session)
    given: object = tool  # checked at runtime: callers are not always type-checked
    if not isinstance(given, BaseTool):
        hint = (
            "; for a plain function, register it on the session and call "
            "create_langchain_toolkit(session), or decorate it with langchain_core.tools.tool"
            if callable(given)
            else ""
        )
        raise TypeError(f"wrap_tool() accepts {_ACCEPTED}, not {type(given).__name__}{hint}")
    return wrap(session, tool)


def _check_session(session: object) -> None:
    if not isinstance(session, Session):
        raise TypeError(f"session must be a calltape.Session, not {type(session).__name__}")


def _native_tool(spec: ToolSpec) -> StructuredTool:
    """The tool ``langchain_core.tools.tool`` would make of a registered function."""
    fn = spec.fn
    assert fn is not None  # session.tools holds only specs with a callable
    # The session derives its description from the docstring too; pass it only when it was
    # given explicitly, so LangChain formats the docstring exactly as its decorator does.
    doc = inspect.getdoc(fn)
    description = None if spec.description == (doc.strip() if doc else None) else spec.description
    if inspect.iscoroutinefunction(fn):
        return StructuredTool.from_function(coroutine=fn, name=spec.name, description=description)
    return StructuredTool.from_function(func=fn, name=spec.name, description=description)
