"""The shared integration contract (calltape.testing), run in LangGraph's real agent loops.

Each suite runs sync (``invoke``) and async (``ainvoke``). ``create_agent`` (langchain >= 1.0)
has its own module, test_create_agent.py, collected only where langchain >= 1.0 is installed.
"""

from __future__ import annotations

from langchain_support import LangChainDriver

from calltape.testing import ConformanceSuite


class TestReactAgentConformance(ConformanceSuite):
    """``langgraph.prebuilt.create_react_agent``."""

    driver = LangChainDriver("react_agent")


class TestToolNodeConformance(ConformanceSuite):
    """A hand-built ``StateGraph`` around LangGraph's ``ToolNode``."""

    driver = LangChainDriver("tool_node")
