"""The public surface and what importing calltape pulls in."""

from __future__ import annotations

import json
import subprocess
import sys

import calltape

FRAMEWORKS = [
    "langchain",
    "langchain_core",
    "langgraph",
    "llama_index",
    "agents",
    "crewai",
    "autogen_core",
    "autogen_agentchat",
    "openai",
    "pytest",
]


def test_import_calltape_imports_no_framework() -> None:
    code = (
        "import sys, json, calltape, calltape.cli, calltape.policy.presets;"
        "print(json.dumps(sorted(m.split('.')[0] for m in sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    assert loaded.isdisjoint(FRAMEWORKS), loaded & set(FRAMEWORKS)


def test_public_names() -> None:
    for name in ("Session", "CallResult", "ReplayMiss", "FingerprintError", "current_call"):
        assert name in calltape.__all__
        assert hasattr(calltape, name)
    assert len(set(calltape.__all__)) == len(calltape.__all__)
    for name in calltape.__all__:
        assert hasattr(calltape, name), name
