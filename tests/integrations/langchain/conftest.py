"""LangChain integration tests: offline (no API keys, no LangSmith), real agent loops.

``test_create_agent.py`` needs ``langchain.agents.create_agent`` (langchain >= 1.0): where it
is not installed (the floor variant: langchain-core 0.3 + langgraph 0.6), that module is not
collected at all, by design; the LangGraph loops run in both variants.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The test modules import the loops and the driver from langchain_support.py beside this file.
sys.path.insert(0, str(Path(__file__).parent))

from langchain_support import has_create_agent

for _var in ("LANGSMITH_TRACING", "LANGCHAIN_TRACING_V2", "LANGCHAIN_TRACING"):
    os.environ[_var] = "false"
os.environ.pop("LANGSMITH_API_KEY", None)
os.environ.pop("LANGCHAIN_API_KEY", None)

collect_ignore = [] if has_create_agent() else ["test_create_agent.py"]
