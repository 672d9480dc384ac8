"""The shared integration contract (calltape.testing), run in AutoGen's real AssistantAgent loop.

Modes: ``async`` (``agent.run``), ``stream`` (``agent.run_stream``) and, where it exists,
``workbench`` (``AssistantAgent(workbench=StaticWorkbench(tools))``).
"""

from __future__ import annotations

from autogen_support import AutogenDriver

from calltape.testing import ConformanceSuite


class TestAutogenConformance(ConformanceSuite):
    driver = AutogenDriver()
