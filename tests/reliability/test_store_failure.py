"""Issue 7, item 4: when the trace store fails, the tool does not run, the error is a clear
``TraceError`` (the trace, the OS reason, that the call was not executed), and the records
already written still verify (a short write is rolled back to a record boundary).

Failures produced for real: a 64 KiB tmpfs filled up (needs root to mount), RLIMIT_FSIZE in a
child process (EFBIG after a short write), ``/dev/full`` swapped in under the open trace
(ENOSPC), a root-owned trace opened by an unprivileged user (EACCES), and the trace file
removed while the session runs.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from calltape import Session
from calltape.errors import TraceError

HERE = Path(__file__).parent


class Recorder:
    """A write tool that remembers every time it really ran."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    def __call__(self, text: str) -> str:
        self.ran.append(text[:20])
        return f"noted {len(text)}"

    def attach(self, s: Session) -> Session:
        s.register("note", self, side_effect="write")
        return s


def assert_clear(exc: TraceError, trace: Path, reason: str) -> None:
    msg = str(exc)
    assert str(trace) in msg, msg
    assert reason in msg, msg
    assert "not executed" in msg or "did not run" in msg, msg


def trace_fds(trace: Path) -> list[int]:
    target = os.path.realpath(trace)
    fds = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{name}") == target:
                fds.append(int(name))
    return fds


def close_quietly(s: Session) -> None:
    with contextlib.suppress(TraceError):
        s.close()


# --------------------------------------------------------------------------- a real full disk


@pytest.fixture
def tiny_fs(tmp_path: Path) -> Iterator[Path]:
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    p = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {p.stderr.strip()}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(folder: Path) -> Path:
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 1024)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_tmpfs(tiny_fs: Path, cli: Callable[..., Any]) -> None:
    trace = tiny_fs / "run.jsonl"
    tool = Recorder()
    s = tool.attach(Session(trace))
    for i in range(5):
        assert s.call("note", text=f"small {i}").ok
    filler = fill(tiny_fs)
    before = trace.read_bytes()

    with pytest.raises(TraceError) as info:
        s.call("note", text="big " + "x" * 20_000)
    assert tool.ran == [f"small {i}" for i in range(5)], "the tool ran without a record"
    assert_clear(info.value, trace, "No space left on device")
    assert trace.read_bytes() == before, "a short write was left in the trace"
    # a later call fails the same way: nothing slips through (a small record may still fit in
    # the last page's slack, so this one is large too)
    with pytest.raises(TraceError):
        s.call("note", text="again " + "y" * 20_000)
    assert len(tool.ran) == 5
    close_quietly(s)
    r = cli("verify", str(trace), "--allow-open")
    assert r.code == 0, r.text

    # space is back: resume replays the five, runs the big one once
    filler.unlink()
    with tool.attach(Session(trace)) as s2:
        for i in range(5):
            assert s2.call("note", text=f"small {i}").replayed
        assert s2.call("note", text="big " + "x" * 20_000).ok
    assert len(tool.ran) == 6
    assert cli("verify", str(trace)).code == 0


def test_a_full_tmpfs_while_storing_a_large_output(tiny_fs: Path, cli: Callable[..., Any]) -> None:
    """The output is only known after the tool ran: the failure is a clear TraceError, and the
    call is left unfinished (unknown outcome on resume), never recorded as a silent success."""
    trace = tiny_fs / "run.jsonl"
    s = Session(trace)
    s.register("report", lambda n: "r" * n, side_effect="write")
    assert s.call("report", n=10).ok
    with pytest.raises(TraceError) as info:
        s.call("report", n=200_000)  # a 200 KB blob cannot fit in 64 KiB
    assert "No space left on device" in str(info.value) or "large output" in str(info.value)
    close_quietly(s)
    assert cli("verify", str(trace), "--allow-open").code == 0
    assert not list(tiny_fs.glob("run.jsonl.blobs/*.json")), "a partial blob was kept"


# --------------------------------------------------------------------------- no mount needed


def test_rlimit_fsize_in_a_child(tmp_path: Path, cli: Callable[..., Any]) -> None:
    trace = tmp_path / "run.jsonl"
    p = subprocess.run(
        [sys.executable, str(HERE / "_store_child.py"), "fsize", str(trace)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["ran"] == ["small 0", "small 1", "small 2"], out
    assert out["error"] is not None and out["error"]["type"] == "TraceError", out
    assert "File too large" in out["error"]["message"], out
    assert str(trace) in out["error"]["message"]
    assert trace.stat().st_size == out["size_before"], "a short write was left in the trace"
    assert cli("verify", str(trace), "--allow-open").code == 0


def test_dev_full_under_the_open_trace(tmp_path: Path, cli: Callable[..., Any]) -> None:
    trace = tmp_path / "run.jsonl"
    tool = Recorder()
    s = tool.attach(Session(trace))
    for i in range(3):
        assert s.call("note", text=f"small {i}").ok
    fds = trace_fds(trace)
    assert fds, "the session holds no descriptor on its trace"
    full = os.open("/dev/full", os.O_WRONLY)
    try:
        for fd in fds:
            os.dup2(full, fd)
    finally:
        os.close(full)
    with pytest.raises(TraceError) as info:
        s.call("note", text="lost?")
    assert "lost?" not in tool.ran
    assert_clear(info.value, trace, "No space left on device")
    close_quietly(s)
    assert cli("verify", str(trace), "--allow-open").code == 0


def test_dev_full_as_the_trace_fails_at_open() -> None:
    with pytest.raises(TraceError, match="No space left on device"):
        Session("/dev/full")


def test_permission_denied_mid_run(
    tmp_path: Path, cli: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write refused with EACCES (as network filesystems do when a grant is revoked)."""
    trace = tmp_path / "run.jsonl"
    tool = Recorder()
    s = tool.attach(Session(trace))
    assert s.call("note", text="first").ok
    fds = set(trace_fds(trace))
    real_write = os.write

    def refuse(fd: int, data: Any) -> int:
        if fd in fds:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", refuse)
    with pytest.raises(TraceError) as info:
        s.call("note", text="second")
    monkeypatch.undo()
    assert tool.ran == ["first"]
    assert_clear(info.value, trace, "Permission denied")
    close_quietly(s)
    assert cli("verify", str(trace), "--allow-open").code == 0


@pytest.fixture
def world_dir() -> Iterator[Path]:
    """A directory an unprivileged user can reach (pytest's tmp_path is private to root)."""
    d = Path(tempfile.mkdtemp(prefix="calltape-perm-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        subprocess.run(["rm", "-rf", str(d)], check=False)


def _as_nobody(*args: str) -> subprocess.CompletedProcess[str]:
    # the child drops to uid/gid 65534 itself, after importing (root's interpreter is private)
    return subprocess.run(
        [sys.executable, str(HERE / "_store_child.py"), *args, "--as-nobody"],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a child as another user")
def test_permission_denied_at_open(world_dir: Path, cli: Callable[..., Any]) -> None:
    # a root-owned trace the unprivileged child cannot append to
    trace = world_dir / "run.jsonl"
    with Recorder().attach(Session(trace)) as s:
        assert s.call("note", text="root wrote this").ok
    before = trace.read_bytes()
    p = _as_nobody("open", str(trace))
    assert p.returncode == 0, p.stderr[-3000:]
    out = json.loads(p.stdout)
    assert out["ran"] == [] and out["error"]["type"] == "TraceError", out
    assert "Permission denied" in out["error"]["message"] and str(trace) in out["error"]["message"]
    assert trace.read_bytes() == before
    assert cli("verify", str(trace)).code == 0

    # a new trace in a directory it cannot write
    locked = world_dir / "locked"
    locked.mkdir(mode=0o755)
    p = _as_nobody("open", str(locked / "new.jsonl"))
    out = json.loads(p.stdout)
    assert out["ran"] == [] and out["error"]["type"] == "TraceError", out
    assert "Permission denied" in out["error"]["message"]


def test_the_trace_removed_while_the_session_runs(tmp_path: Path) -> None:
    """Appending to an unlinked file would write records nobody can ever read: the next call
    must fail loudly instead of running with an invisible record."""
    trace = tmp_path / "run.jsonl"
    tool = Recorder()
    s = tool.attach(Session(trace))
    assert s.call("note", text="first").ok
    trace.unlink()
    with pytest.raises(TraceError) as info:
        s.call("note", text="second")
    assert tool.ran == ["first"], "the tool ran while its record went to a deleted file"
    assert str(trace) in str(info.value)
    close_quietly(s)


def test_the_blob_folder_cannot_be_created(tmp_path: Path, cli: Callable[..., Any]) -> None:
    trace = tmp_path / "run.jsonl"
    (tmp_path / "run.jsonl.blobs").write_text("a file where the folder should be")
    s = Session(trace)
    s.register("report", lambda n: "r" * n, side_effect="write")
    with pytest.raises(TraceError) as info:
        s.call("report", n=100_000)
    assert "run.jsonl.blobs" in str(info.value)
    close_quietly(s)
    assert cli("verify", str(trace), "--allow-open").code == 0
