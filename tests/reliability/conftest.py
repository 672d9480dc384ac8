"""Shared fixtures for the reliability harnesses (issue 7).

The helpers are exposed as fixtures (``--import-mode=importlib`` means test modules cannot import
this file), each a small function:

* ``cli``: run ``calltape.cli.main`` in-process (fast, for many runs); returns :class:`CliRun`.
* ``cli_proc``: run ``python -m calltape`` in a real subprocess (to prove "never a traceback").
* ``chain``: an independent verifier of the hash chain, written from the format description with
  plain ``hashlib``/``hmac``, so the tests do not trust the code they test.
* ``attacker``: rewrite or delete a record and recompute the chain with plain sha256, as an
  attacker without the key would.
* ``disk_hits``: the files under a directory holding a string (raw or JSON-escaped).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "crash: the kill -9 harness (slow; run with `pytest -m crash -s`)"
    )


@dataclass
class CliRun:
    """One CLI invocation: exit code and both streams."""

    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def run_cli_inprocess(*argv: str, env: dict[str, str] | None = None) -> CliRun:
    """``calltape`` in this process; ``SystemExit`` (argparse usage errors) becomes the code."""
    from calltape.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = {k: os.environ.get(k) for k in (env or {})}
    try:
        os.environ.update(env or {})
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(list(argv))
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 2
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return CliRun(int(code), out.getvalue(), err.getvalue())


def run_cli_subprocess(
    *argv: str, env: dict[str, str] | None = None, timeout: float = 60
) -> CliRun:
    full_env = {k: v for k, v in os.environ.items() if k != "CALLTAPE_TRACE_KEY"}
    full_env.update(env or {})
    p = subprocess.run(
        [sys.executable, "-m", "calltape", *argv],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        check=False,
    )
    return CliRun(p.returncode, p.stdout, p.stderr)


@pytest.fixture
def cli() -> Callable[..., CliRun]:
    return run_cli_inprocess


@pytest.fixture
def cli_proc() -> Callable[..., CliRun]:
    return run_cli_subprocess


# --------------------------------------------------------------------------- the chain


def split_line(line: bytes) -> tuple[bytes, bytes]:
    """(body without h, h) of one record line, per docs: h is the last key of the object."""
    assert line.endswith(b'"}\n'), line[-80:]
    cut = line.rindex(b',"h":"')
    return line[:cut] + b"}", line[cut + len(b',"h":"') : -3]


def digest(prev: bytes, body: bytes, key: bytes | None, sep: bytes = b"\n") -> bytes:
    if key is None:
        return hashlib.sha256(prev + sep + body).hexdigest().encode()
    return hmac.new(key, prev + sep + body, hashlib.sha256).hexdigest().encode()


@dataclass
class ChainReport:
    records: int
    first_bad_line: int | None  # 1-based


def check_chain(path: Path, key: bytes | None = None, sep: bytes = b"\n") -> ChainReport:
    """Recompute every h; report the first line that does not match (None: intact)."""
    prev = b""
    lines = path.read_bytes().splitlines(keepends=True)
    for i, line in enumerate(lines, 1):
        try:
            body, h = split_line(line)
        except (AssertionError, ValueError):
            return ChainReport(len(lines), i)
        if digest(prev, body, key, sep) != h:
            return ChainReport(len(lines), i)
        prev = h
    return ChainReport(len(lines), None)


@pytest.fixture
def chain() -> Callable[..., ChainReport]:
    return check_chain


def forge(lines: list[bytes], at: int, new_body: bytes | None, sep: bytes = b"\n") -> list[bytes]:
    """An attacker without the key: replace (or, with None, delete) the record at index ``at``
    and recompute the chain from there on with plain sha256, fixing every later ``run_end``'s
    ``records`` and ``head`` so the forgery is self-consistent."""
    out = list(lines[:at])
    prev = split_line(out[-1])[1] if out else b""
    rest = [split_line(line)[0] for line in lines[at:]]
    if new_body is None:
        rest = rest[1:]
    else:
        rest[0] = new_body
    for body in rest:
        rec = orjson.loads(body)
        if rec.get("type") == "run_end":
            rec["records"], rec["head"] = len(out), prev.decode()
            body = orjson.dumps(rec)
        h = hashlib.sha256(prev + sep + body).hexdigest().encode()
        out.append(body[:-1] + b',"h":"' + h + b'"}\n')
        prev = h
    return out


@pytest.fixture
def attacker() -> Callable[..., list[bytes]]:
    return forge


# --------------------------------------------------------------------------- disk scanning


def iter_disk(root: Path) -> Iterator[tuple[Path, bytes]]:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            yield p, p.read_bytes()


def find_on_disk(root: Path, needle: str) -> list[str]:
    """Files under ``root`` holding ``needle``, raw or JSON-escaped."""
    forms = {needle.encode(), orjson.dumps(needle)[1:-1]}
    hits = []
    for p, data in iter_disk(root):
        if any(f in data for f in forms):
            hits.append(str(p.relative_to(root)))
    return hits


@pytest.fixture
def disk_hits() -> Callable[[Path, str], list[str]]:
    return find_on_disk
