"""calltape for AutoGen (autogen-agentchat / autogen-core >= 0.4.2).

Two-line migration::

    tools = create_autogen_toolkit(session)  # or create_autogen_toolkit(session, tools=[...])
    agent = AssistantAgent("assistant", model_client, tools=tools)

Every tool call the agent makes then goes through the session: recorded, gated by the policy,
and replayed on resume. See docs/integrations/autogen.md.
"""

from __future__ import annotations

from calltape.errors import MissingFrameworkError

try:
    import autogen_core.tools  # noqa: F401
except ImportError as exc:  # also the legacy autogen-agentchat 0.2 line, which has no autogen_core
    raise MissingFrameworkError("autogen-agentchat", "calltape-autogen") from exc

from calltape_autogen.proxy import CalltapeStreamTool, CalltapeTool
from calltape_autogen.toolkit import create_autogen_toolkit, is_wrapped, unwrap_tool, wrap_tool

__all__ = [
    "CalltapeStreamTool",
    "CalltapeTool",
    "create_autogen_toolkit",
    "is_wrapped",
    "unwrap_tool",
    "wrap_tool",
]
