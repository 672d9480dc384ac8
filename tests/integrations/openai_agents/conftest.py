"""Offline settings for the OpenAI Agents SDK tests (set before ``agents`` is imported)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The runner would otherwise try to export traces to OpenAI. Every model in these tests is a
# calltape_openai_agents.testing.ScriptedModel, so no request leaves the machine.
os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"

# The test modules import the driver from openai_agents_support.py beside this file.
sys.path.insert(0, str(Path(__file__).parent))
