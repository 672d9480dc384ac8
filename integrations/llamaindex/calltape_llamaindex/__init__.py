"""calltape for LlamaIndex (llama-index-core >= 0.12.52).

Two-line migration::

    tools = create_llamaindex_toolkit(session)  # or create_llamaindex_toolkit(session, [tool])
    agent = FunctionAgent(tools=tools, llm=llm)  # or ReActAgent, AgentWorkflow, predict_and_call

Every tool call the agent makes then goes through the session: recorded, gated by the policy,
and replayed on resume. See docs/integrations/llamaindex.md.
"""

from __future__ import annotations

from calltape.errors import MissingFrameworkError

try:
    import llama_index.core.tools  # noqa: F401
except ImportError as exc:
    raise MissingFrameworkError("llama-index-core", "calltape-llamaindex") from exc

from calltape_llamaindex.proxy import is_wrapped, unwrap
from calltape_llamaindex.toolkit import create_llamaindex_toolkit, wrap_tool

#: The same as :func:`unwrap`, under the name every calltape integration uses.
unwrap_tool = unwrap

__all__ = ["create_llamaindex_toolkit", "is_wrapped", "unwrap", "unwrap_tool", "wrap_tool"]
