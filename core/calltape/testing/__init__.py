"""Testing helpers: the integration conformance kit (needs pytest)."""

from calltape.testing.conformance import (
    AgentRun,
    ConformanceSuite,
    FrameworkDriver,
    ScriptedCall,
    ToolBox,
    TraceView,
)

__all__ = [
    "AgentRun",
    "ConformanceSuite",
    "FrameworkDriver",
    "ScriptedCall",
    "ToolBox",
    "TraceView",
]
