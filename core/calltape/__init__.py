"""calltape: the flight recorder and airbag for AI-agent tool calls.

Every tool call goes Resolve (fingerprint) → Validate (policy) → Execute or replay → Commit
(append-only trace)::

    from calltape import Session
    from calltape.policy import presets

    with Session("runs/demo.jsonl", policy=presets.read_only()) as session:
        @session.tool(side_effect="read")
        def read_file(path: str) -> str: ...

        result = session.call("read_file", path="README.md")
"""

from __future__ import annotations

from calltape._version import __version__
from calltape.context import CallContext, current_call
from calltape.errors import (
    CalltapeError,
    FingerprintError,
    IntegrationError,
    MissingFrameworkError,
    PolicyError,
    ReplayMiss,
    RunStateError,
    ToolBlocked,
    ToolNotFound,
    TraceCorrupt,
    TraceError,
)
from calltape.fingerprint import fingerprint
from calltape.markers import URL, Path
from calltape.policy import Decision, Policy, ToolCall
from calltape.result import CallResult, ErrorInfo
from calltape.session import ReplayMode, Session, Summary, ToolSpec

__all__ = [
    "URL",
    "CallContext",
    "CallResult",
    "CalltapeError",
    "Decision",
    "ErrorInfo",
    "FingerprintError",
    "IntegrationError",
    "MissingFrameworkError",
    "Path",
    "Policy",
    "PolicyError",
    "ReplayMiss",
    "ReplayMode",
    "RunStateError",
    "Session",
    "Summary",
    "ToolBlocked",
    "ToolCall",
    "ToolNotFound",
    "ToolSpec",
    "TraceCorrupt",
    "TraceError",
    "__version__",
    "current_call",
    "fingerprint",
]
