"""``create_llamaindex_toolkit`` and ``wrap_tool``: the public entry points."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from llama_index.core.tools import BaseTool, FunctionTool

from calltape import Session, ToolSpec
from calltape_llamaindex.proxy import ToolT, gate

__all__ = ["create_llamaindex_toolkit", "wrap_tool"]

_ACCEPTED = (
    "a llama_index.core.tools.BaseTool (FunctionTool, QueryEngineTool, RetrieverTool, "
    "any AsyncBaseTool or BaseTool subclass)"
)


def wrap_tool(session: Session, tool: ToolT) -> ToolT:
    """Gate one LlamaIndex tool: every call is recorded, checked by the policy, and replayed.

    The result is a drop-in replacement: same class (a subclass of it), same name, description
    and ``metadata`` object, so the schema the model sees is unchanged. Wrapping a wrapped tool
    wraps its original instead, so each call is recorded once.

    Args:
        session: The calltape session.
        tool: The tool to gate.

    Returns:
        A gated copy of ``tool``.

    Raises:
        TypeError: ``session`` is not a ``calltape.Session`` or ``tool`` is not a LlamaIndex tool.
    """
    _check_session(session)
    obj: Any = tool  # callers without type checking pass anything
    if not isinstance(obj, BaseTool):
        hint = (
            "; for a plain function, register it with session.register(fn) and call "
            "create_llamaindex_toolkit(session), or pass FunctionTool.from_defaults(fn)"
            if callable(obj)
            else ""
        )
        raise TypeError(f"wrap_tool expects {_ACCEPTED}, got {type(obj).__qualname__}{hint}")
    return gate(session, tool)


def create_llamaindex_toolkit(
    session: Session, tools: Iterable[BaseTool] | None = None
) -> list[BaseTool]:
    """Build gated LlamaIndex tools for an agent.

    Args:
        session: The calltape session.
        tools: LlamaIndex tools to gate. ``None`` builds one ``FunctionTool`` per function
            registered on the session, exactly as ``FunctionTool.from_defaults`` would.

    Returns:
        The gated tools, in order; pass them to ``FunctionAgent``, ``ReActAgent``,
        ``AgentWorkflow`` or ``llm.predict_and_call``.

    Raises:
        TypeError: ``session`` is not a ``calltape.Session``, ``tools`` is not an iterable of
            tools, or one of them is not a LlamaIndex tool.
    """
    _check_session(session)
    if tools is None:
        return [wrap_tool(session, _function_tool(spec)) for spec in session.tools.values()]
    given: Any = tools
    if isinstance(given, (BaseTool, str, bytes)) or not isinstance(given, Iterable):
        raise TypeError(
            f"tools must be a list whose items are each {_ACCEPTED}, got "
            f"{type(given).__qualname__}; "
            "use wrap_tool(session, tool) for a single tool"
        )
    return [wrap_tool(session, tool) for tool in tools]


def _function_tool(spec: ToolSpec) -> FunctionTool:
    # Session.register fills a missing description with the docstring; FunctionTool.from_defaults
    # builds "name(signature)\ndocstring" instead. Pass only a description the user chose, so the
    # tool is exactly what FunctionTool.from_defaults(fn) gives.
    doc = inspect.getdoc(spec.fn)
    description = spec.description
    if description is not None and doc is not None and description == doc.strip():
        description = None
    return FunctionTool.from_defaults(fn=spec.fn, name=spec.name, description=description)


def _check_session(session: Any) -> None:
    if not isinstance(session, Session):
        raise TypeError(f"session must be a calltape.Session, got {type(session).__qualname__}")
