"""The CrewAI names this integration uses, imported once, with one clear error when missing.

Raises:
    MissingFrameworkError: at import, when ``crewai`` is not installed.
"""

from __future__ import annotations

from typing import Any

from calltape.errors import MissingFrameworkError

try:
    from crewai.tools import BaseTool
    from crewai.tools import tool as crewai_tool
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise MissingFrameworkError("crewai", "calltape-crewai") from exc

ToolFailure: Any
try:
    # crewai >= 1.15: a returned ToolFailure is CrewAI's own "this call did not succeed".
    from crewai.tools.tool_failure import ToolFailure  # type: ignore[import-not-found,no-redef,unused-ignore]
except ImportError:  # older crewai: a block is surfaced as a plain string
    ToolFailure = None

HAS_TOOL_FAILURE: bool = ToolFailure is not None

#: ``ToolFailure.code`` of every block this integration returns.
BLOCK_CODE = "policy_block"

__all__ = ["BLOCK_CODE", "HAS_TOOL_FAILURE", "BaseTool", "ToolFailure", "crewai_tool"]
