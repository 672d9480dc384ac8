"""AutoGen integration tests: offline, no API keys, quiet replay client."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

# The test modules import the scripted loop from autogen_support.py beside this file.
sys.path.insert(0, str(Path(__file__).parent))

# ReplayChatCompletionClient logs a token-count note per turn (0.4.2 even with a broken format).
logging.getLogger("autogen_core.events").setLevel(logging.ERROR)


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    """A fresh trace path."""
    return tmp_path / "run.jsonl"
