"""The example runs offline and shows a recorded call, a block and a replay."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "llamaindex_agent.py"


def test_example_runs_offline(capsys: pytest.CaptureFixture[str]) -> None:
    # In-process (run as __main__): a subprocess would pay llama-index's import time again.
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "executed     : ['add']" in out
    assert "executed     : nothing" in out, "the resumed run must not execute add"
    assert "write_note({'text': 'buy milk'}) -> blocked by rule read_only.write" in out
    assert "add({'a': 2, 'b': 3}) -> ok: 5" in out
    assert "add({'a': 2, 'b': 3}) -> replayed" in out
