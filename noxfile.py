"""The test matrix.

``nox`` runs every test session: lint, typecheck, core, the demo, each integration at its floor
and latest framework versions (each in its own environment holding only core, that integration
and its framework), then writes docs/compatibility.md from what actually ran.

``nox -t langchain`` runs one integration; ``nox -s bench`` runs the benchmarks.
Only Python 3.11 is installable on our machines, so there is no Python-version axis.
"""

from __future__ import annotations

import json
import platform
import re
import sys
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from pathlib import Path

import nox
import nox.command

nox.options.default_venv_backend = "uv|virtualenv"
nox.options.error_on_missing_interpreters = True

ROOT = Path(__file__).parent
RESULTS = ROOT / ".nox-results"
PYTHON = "3.11"
TEST_DEPS = ["pytest>=8", "hypothesis>=6.100"]
INTEGRATIONS = ["langchain", "llamaindex", "openai_agents", "crewai", "autogen"]


def _matrix(fw: str) -> dict[str, list[str]]:
    path = ROOT / "integrations" / fw / "matrix.json"
    data = json.loads(path.read_text())
    return {"floor": list(data["floor"]), "latest": list(data["latest"])}


def _pytest(session: nox.Session, *args: str) -> None:
    """Run pytest. Its exit 5 (no tests collected) fails the session with a message saying so:
    a session that tests nothing must never count as a pass."""
    try:
        session.run("pytest", *args)
    except nox.command.CommandFailed as exc:
        code = getattr(exc, "return_code", None)
        if code is None:
            found = re.search(r"code (\d+)", str(getattr(exc, "reason", "") or exc))
            code = int(found.group(1)) if found else None
        if code == 5:
            session.error(f"pytest collected no tests from {' '.join(args)}: nothing was tested")
        raise


@nox.session(python=PYTHON, tags=["lint"])
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check over the whole repository."""
    session.install("ruff>=0.8")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON, tags=["typecheck"])
def typecheck(session: nox.Session) -> None:
    """mypy --strict on core."""
    session.install("mypy>=1.13", "-e", "core", "pytest>=8")
    session.run("mypy")


@nox.session(python=PYTHON, tags=["core"])
def core(session: nox.Session) -> None:
    """Core tests, with no framework installed."""
    session.install("-e", "core", *TEST_DEPS)
    _pytest(session, "tests/core", *session.posargs)


@nox.session(python=PYTHON, tags=["reliability"])
def reliability(session: nox.Session) -> None:
    """Concurrency, tamper evidence, redaction, store failure and fuzzing."""
    session.install("-e", "core", *TEST_DEPS)
    _pytest(session, "tests/reliability", "-m", "not crash", *session.posargs)


@nox.session(python=PYTHON, tags=["crash"])
def crash(session: nox.Session) -> None:
    """The kill -9 harness: hundreds of runs killed at random points, then resumed."""
    session.install("-e", "core", *TEST_DEPS)
    _pytest(session, "tests/reliability", "-m", "crash", "-s", *session.posargs)


@nox.session(python=PYTHON, tags=["demo"])
def demo(session: nox.Session) -> None:
    """The README demo: offline, on the default JSONL trace store."""
    session.install("-e", "core")
    langchain = ROOT / "integrations" / "langchain"
    if (langchain / "matrix.json").exists() and (ROOT / "examples" / "langchain_agent.py").exists():
        session.install("-e", str(langchain), *_matrix("langchain")["latest"])
        session.run("calltape", "demo", "--dir", "calltape-demo")
        session.run(
            "python", "examples/langchain_agent.py", env={"CALLTAPE_DEMO_DIR": "calltape-demo"}
        )
    else:
        session.run("calltape", "demo", "--dir", "calltape-demo")


def _junit_counts(path: Path) -> dict[str, int]:
    try:
        suite = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return {}
    if suite.tag == "testsuites":
        suite = suite[0]
    return {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}


def _integration(fw: str):  # type: ignore[no-untyped-def]
    @nox.session(name=fw, python=PYTHON, tags=[fw, "integrations"])
    @nox.parametrize("variant", ["floor", "latest"])
    def run(session: nox.Session, variant: str) -> None:
        pins = _matrix(fw)[variant]
        session.install("-e", "core", "-e", f"integrations/{fw}", *pins, *TEST_DEPS)
        freeze = (
            session.run(
                "uv",
                "pip",
                "freeze",
                silent=True,
                external=True,
                env={"VIRTUAL_ENV": session.virtualenv.location},
            )
            or ""
        )
        try:
            junit = RESULTS / f"{fw}-{variant}.xml"
            RESULTS.mkdir(exist_ok=True)
            _pytest(session, f"tests/integrations/{fw}", f"--junitxml={junit}", *session.posargs)
            passed = True
        except nox.command.CommandFailed:
            passed = False
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / f"{fw}-{variant}.json").write_text(
            json.dumps(
                {
                    "integration": fw,
                    "variant": variant,
                    "pins": pins,
                    "installed": sorted(str(freeze).split()),
                    "passed": passed,
                    "tests": _junit_counts(RESULTS / f"{fw}-{variant}.xml"),
                    "ran_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    "python": platform.python_version(),
                },
                indent=1,
            )
        )
        if not passed:
            session.error(f"tests/integrations/{fw} failed at {variant}")

    run.__name__ = fw
    return run


for _fw in INTEGRATIONS:
    if (ROOT / "integrations" / _fw / "matrix.json").exists():
        globals()[_fw] = _integration(_fw)


@nox.session(python=False, tags=["compat"])
def compat(session: nox.Session) -> None:
    """Write docs/compatibility.md from the integration sessions that ran."""
    session.run(
        sys.executable, "docs/gen_compat.py", str(RESULTS), "docs/compatibility.md", external=True
    )


@nox.session(python=PYTHON, tags=["bench"])
def bench(session: nox.Session) -> None:
    """Benchmarks side by side with the peers (prints a table, writes bench/results/latest.json)."""
    reqs = ROOT / "bench" / "requirements.txt"
    if not reqs.exists():
        session.error("bench/requirements.txt is missing")
    session.install("-e", "core", "-r", str(reqs))
    session.run("python", "bench/run.py", *session.posargs)


nox.options.sessions = [
    "lint",
    "typecheck",
    "core",
    "reliability",
    "crash",
    "demo",
    *[fw for fw in INTEGRATIONS if (ROOT / "integrations" / fw / "matrix.json").exists()],
    "compat",
]
