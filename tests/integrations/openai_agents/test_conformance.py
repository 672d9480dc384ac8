"""The shared integration contract (calltape.testing), run in the OpenAI Agents SDK's real
Runner loop: ``Runner.run_sync``, ``Runner.run`` and ``Runner.run_streamed``."""

from __future__ import annotations

from openai_agents_support import OpenAIAgentsDriver

from calltape.testing import ConformanceSuite


class TestOpenAIAgentsConformance(ConformanceSuite):
    driver = OpenAIAgentsDriver()
