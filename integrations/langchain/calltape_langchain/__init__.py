"""calltape for LangChain (langchain-core >= 0.3; loops: ``create_agent``, LangGraph ``ToolNode``).

Two-line migration::

    tools = create_langchain_toolkit(session)   # or create_langchain_toolkit(session, tools=[...])
    agent = create_agent(model, tools)          # or create_react_agent(model, tools), ToolNode

Every tool call the agent makes then goes through the session: recorded, gated by the policy,
and replayed on resume. The wrapped tools are the same kind of ``BaseTool`` as before and show
the model the same schema. See docs/integrations/langchain.md.
"""

from __future__ import annotations

from calltape.errors import MissingFrameworkError

try:
    import langchain_core.tools  # noqa: F401
except ImportError as exc:
    raise MissingFrameworkError("langchain-core", "calltape-langchain") from exc

from calltape_langchain.proxy import CalltapeTool, is_wrapped, unwrap_tool
from calltape_langchain.toolkit import create_langchain_toolkit, wrap_tool

__all__ = ["CalltapeTool", "create_langchain_toolkit", "is_wrapped", "unwrap_tool", "wrap_tool"]
