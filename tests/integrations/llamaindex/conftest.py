"""Shared setup for the LlamaIndex integration tests (offline; no API keys, no network)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# The scripted model and the driver live beside the tests (no __init__.py under tests/).
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # No default OpenAI LLM can be built by accident: every agent here is given the scripted
    # model, and a missing key makes any stray default fail loudly instead of reaching out.
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("LLAMA_INDEX_CACHE_DIR", str(tmp_path / "llama_index_cache"))


def pytest_configure(config: pytest.Config) -> None:
    # llama-index-workflows discovers an agent's steps with inspect.getmembers() on a pydantic
    # model, which trips pydantic's deprecated-attribute warnings hundreds of times per run.
    import pydantic.warnings

    for category in ("PydanticDeprecatedSince20", "PydanticDeprecatedSince211"):
        if hasattr(pydantic.warnings, category):  # 2.11 added the second one
            config.addinivalue_line(
                "filterwarnings", f"ignore::pydantic.warnings.{category}:inspect"
            )
