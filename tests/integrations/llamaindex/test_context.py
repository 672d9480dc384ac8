"""Tools that take the workflow ``Context``.

No ``from __future__ import annotations`` here: FunctionTool finds the ``ctx: Context`` parameter
by its runtime annotation.
"""

from pathlib import Path
from typing import Any

from llama_index.core.tools import FunctionTool
from llama_index.core.workflow import Context
from llamaindex_support import run_loop

from calltape import Session
from calltape.testing import TraceView
from calltape_llamaindex import create_llamaindex_toolkit


def test_context_is_injected_and_left_out_of_the_fingerprint(tmp_path: Path) -> None:
    seen: list[Any] = []

    def remember(ctx: Context, note: str) -> str:
        """Remember a note in the workflow state."""
        seen.append(ctx)
        return f"remembered {note}"

    trace = tmp_path / "trace.jsonl"
    session = Session(trace)
    session.register(remember, side_effect="read")
    tool = create_llamaindex_toolkit(session)[0]
    assert isinstance(tool, FunctionTool) and tool.requires_context
    assert (
        tool.metadata.to_openai_tool()
        == FunctionTool.from_defaults(remember).metadata.to_openai_tool()
    )
    script = [{"tool": "remember", "args": {"note": "milk"}}]
    run = run_loop([tool], script, "async")
    session.close()
    assert run.tool_results == ["remembered milk"]
    assert len(seen) == 1 and isinstance(seen[0], Context), "the agent injected its Context"
    ((start, end),) = TraceView(trace).calls("remember")
    assert start.args == {"note": "milk"}, "the injected Context is not part of the call"
    assert end.output == "remembered milk"

    resumed = Session(trace)
    resumed.register(remember, side_effect="read")
    again = run_loop(create_llamaindex_toolkit(resumed), script, "async")
    resumed.close()
    assert len(seen) == 1 and again.final_answer == run.final_answer
