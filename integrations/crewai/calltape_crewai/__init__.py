"""calltape for CrewAI: record, gate and replay the tool calls of CrewAI agents.

Two lines to adopt::

    from calltape_crewai import create_crewai_toolkit
    agent = Agent(..., tools=create_crewai_toolkit(session, tools=[search, write_file]))

Both of CrewAI's execution paths (native function calling and the text ReAct loop) go through
the session; see ``calltape_crewai.proxy`` and docs/integrations/crewai.md.

Raises:
    MissingFrameworkError: at import, when ``crewai`` is not installed
        (``pip install calltape-crewai``).
"""

from __future__ import annotations

from calltape_crewai._compat import BLOCK_CODE
from calltape_crewai.proxy import CalltapeTool, is_block
from calltape_crewai.toolkit import create_crewai_toolkit, is_wrapped, unwrap_tool, wrap_tool

__all__ = [
    "BLOCK_CODE",
    "CalltapeTool",
    "create_crewai_toolkit",
    "is_block",
    "is_wrapped",
    "unwrap_tool",
    "wrap_tool",
]
