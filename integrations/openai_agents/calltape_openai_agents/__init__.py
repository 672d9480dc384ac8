"""calltape for the OpenAI Agents SDK (``openai-agents``, import ``agents``).

Two-line migration::

    from calltape_openai_agents import create_openai_agents_toolkit

    agent = Agent(name="assistant", tools=create_openai_agents_toolkit(session))

Every call the runner makes to a gated ``FunctionTool`` goes through the session: it is
recorded, checked against the policy (a block reaches the model as text naming the rule and the
reason) and, on a resumed run, replayed from the trace without running the tool.

Raises:
    calltape.errors.MissingFrameworkError: on import, when ``openai-agents`` is not installed
        (an ``ImportError`` whose message says ``pip install calltape-openai-agents``).
"""

from __future__ import annotations

from calltape_openai_agents.toolkit import (
    create_openai_agents_toolkit,
    is_wrapped,
    unwrap_tool,
    wrap_tool,
)

__all__ = ["create_openai_agents_toolkit", "is_wrapped", "unwrap_tool", "wrap_tool"]
