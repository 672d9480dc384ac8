"""Offline, prompt-free CrewAI: set before anything imports crewai.

CrewAI reads these at import time (telemetry, tracing, its storage directory and the user's
home for its config), so they are set here, at conftest import, in a throwaway directory.
"""

import os
import tempfile

_HOME = tempfile.mkdtemp(prefix="calltape-crewai-")
os.environ.update(
    {
        "CREWAI_DISABLE_TELEMETRY": "true",
        "OTEL_SDK_DISABLED": "true",
        "CREWAI_TRACING_ENABLED": "false",
        "CREWAI_TESTING": "true",
        "CREWAI_STORAGE_DIR": os.path.join(_HOME, "storage"),
        "HOME": _HOME,
    }
)
# No provider key exists offline; make sure nothing reaches for one.
for _key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL"):
    os.environ.pop(_key, None)


def pytest_configure(config):  # type: ignore[no-untyped-def]
    # CrewAI warns about its own deprecated fields on every crew; they are not ours to fix.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:crewai.*")
    config.addinivalue_line("filterwarnings", "ignore::PendingDeprecationWarning:crewai.*")
