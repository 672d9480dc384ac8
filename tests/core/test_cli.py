"""The calltape CLI: readable output, one-line errors, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from calltape import Session
from calltape.policy import presets


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "calltape", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        check=False,
    )


@pytest.fixture
def trace(tmp_path: Path) -> Path:
    path = tmp_path / "runs" / "a.jsonl"
    with Session(path, policy=presets.read_only()) as s:
        s.register("read_file", lambda path: f"contents of {path}", side_effect="read")
        s.register("rm", lambda path: None, side_effect="write")
        s.call("read_file", path="README.md")
        s.call("rm", path="/")
    return path


def assert_no_traceback(p: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in p.stderr and "Traceback" not in p.stdout


def test_show_prints_a_table(trace: Path) -> None:
    p = cli("show", str(trace), "--summary")
    assert p.returncode == 0, p.stderr
    assert "seq" in p.stdout and "read_file" in p.stdout and "blocked" in p.stdout
    assert "read_only.write" in p.stdout
    assert "path='README.md'" in p.stdout
    assert "blocked by read_only.write: 1" in p.stdout


def test_show_json_is_one_object_per_call(trace: Path) -> None:
    p = cli("show", str(trace), "--json")
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["ok", "blocked"]
    assert rows[1]["decision"]["rule"] == "read_only.write"


def test_show_random_binary_is_one_clear_line(tmp_path: Path) -> None:
    junk = tmp_path / "junk.bin"
    junk.write_bytes(os.urandom(4096))
    p = cli("show", str(junk))
    assert p.returncode == 2
    assert_no_traceback(p)
    assert p.stderr.count("\n") == 1 and "not a calltape trace" in p.stderr


def test_show_torn_last_line_shows_intact_records_and_warns(trace: Path) -> None:
    with trace.open("ab") as f:
        f.write(b'{"type":"call_start","seq":3,"tool":"rea')
    p = cli("show", str(trace))
    assert p.returncode == 0
    assert "read_file" in p.stdout and "rm" in p.stdout
    assert "torn last record" in p.stderr and p.stderr.count("\n") == 1


@pytest.mark.parametrize(
    "args",
    [
        ("show", "/nonexistent.jsonl"),
        ("show", "/"),
        ("diff", "/nonexistent", "/nonexistent2"),
        ("replay", "/nonexistent"),
        ("list", "/nonexistent-dir"),
    ],
)
def test_bad_input_never_shows_a_traceback(args: tuple[str, ...]) -> None:
    p = cli(*args)
    assert p.returncode == 2
    assert_no_traceback(p)
    assert p.stderr.startswith("calltape: error: ")


def test_usage_errors_exit_2_without_traceback() -> None:
    p = cli("frobnicate")
    assert p.returncode == 2
    assert_no_traceback(p)


def test_list_shows_runs_with_counts(trace: Path, tmp_path: Path) -> None:
    (trace.parent / "garbage.jsonl").write_text("hello\n")
    p = cli("list", str(trace.parent))
    assert p.returncode == 0
    line = next(x for x in p.stdout.splitlines() if "a.jsonl" in x)
    assert line.split()[2:8] == ["1", "2", "1", "0", "1", "completed"]
    assert "unreadable" in p.stdout


def test_replay_says_what_a_resume_would_do(trace: Path) -> None:
    p = cli("replay", str(trace))
    assert p.returncode == 0
    assert "replay seq 1" in p.stdout
    assert "run again (it was blocked)" in p.stdout


def test_replay_tells_unknown_outcomes_and_approvals_as_a_resume_treats_them(
    tmp_path: Path,
) -> None:
    trace = tmp_path / "t.jsonl"
    script = f"""
import os, signal, sys
from calltape import Session
from calltape.policy import Decision

class AskPay:
    def decide(self, call):
        if call.tool == "pay":
            return Decision.ask("pay.ask", "payments need a human")
        return Decision.allow("ok", "fine")

s = Session({str(trace)!r}, policy=AskPay(), approver="durable")
s.register("pay", lambda amount: "paid", side_effect="write")
s.register("lookup", lambda q: os.kill(os.getpid(), signal.SIGKILL), side_effect="read")
s.register("send", lambda to: os.kill(os.getpid(), signal.SIGKILL), side_effect="write")
s.call("pay", amount=5)
s.call(sys.argv[1], **{{"q": "x"}} if sys.argv[1] == "lookup" else {{"to": "bob"}})
"""
    for tool in ("lookup", "send"):  # each run dies inside its second call
        p = subprocess.run([sys.executable, "-c", script, tool], capture_output=True, check=False)
        assert p.returncode == -9, p.stderr
    p = cli("replay", str(trace))
    assert p.returncode == 0, p.stderr
    lines = {line.split()[1]: line for line in p.stdout.splitlines()[2:] if line[:1].isdigit()}
    assert "wait for approval ('calltape approve" in lines["pay"]
    assert "run again (outcome unknown; a read is safe to repeat)" in lines["lookup"]
    assert "blocked until 'calltape resolve" in lines["send"]
    assert "held (waiting for a human" in p.stdout

    send_seq = lines["send"].split()[0]
    pay_seq = lines["pay"].split()[0]
    assert cli("resolve", str(trace), send_seq, "--done").returncode == 0
    assert cli("approve", str(trace), pay_seq).returncode == 0
    p = cli("replay", str(trace))
    lines = {line.split()[1]: line for line in p.stdout.splitlines()[2:] if line[:1].isdigit()}
    assert "answer from the trace without running (resolved: done)" in lines["send"]
    assert "run (approved by" in lines["pay"]


def test_diff_finds_the_first_divergence(tmp_path: Path) -> None:
    def record(path: Path, paths: list[str]) -> None:
        with Session(path) as s:
            s.register("read_file", lambda path: path.upper())
            for p in paths:
                s.call("read_file", path=p)

    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    record(a, ["x", "y", "z"])
    record(b, ["x", "y", "z"])
    record(c, ["x", "q", "z"])
    same = cli("diff", str(a), str(b))
    assert same.returncode == 0 and "no divergence: 3 calls" in same.stdout
    diff = cli("diff", str(a), str(c))
    assert diff.returncode == 1
    assert "call #2" in diff.stdout and "args.path: 'y' vs 'q'" in diff.stdout


def test_a_resumed_run_diffs_equal_to_a_clean_run_of_the_same_calls(tmp_path: Path) -> None:
    def record(path: Path, paths: list[str], fail: str | None = None) -> None:
        def read_file(path: str) -> str:
            if path == fail:
                raise OSError("disk hiccup")
            return path.upper()

        with Session(path) as s:
            s.register("read_file", read_file, side_effect="read")
            for p in paths:
                s.call("read_file", path=p)

    clean, resumed, other = tmp_path / "clean.jsonl", tmp_path / "r.jsonl", tmp_path / "o.jsonl"
    record(clean, ["x", "y", "z"])
    record(resumed, ["x", "y"], fail="y")  # the first attempt stops early, y failed
    record(resumed, ["x", "y", "z"])  # the resume replays x, runs y again, then z
    same = cli("diff", str(clean), str(resumed))
    assert same.returncode == 0, same.stdout
    assert "no divergence: 3 calls" in same.stdout
    record(other, ["x", "y"], fail="y")
    diff = cli("diff", str(clean), str(other))
    assert diff.returncode == 1
    assert "call #2" in diff.stdout and "status: ok vs error" in diff.stdout


def test_show_json_gives_a_replayed_call_its_output(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    for _ in range(2):
        with Session(trace) as s:
            s.register("read_file", lambda path: {"text": path.upper()}, side_effect="read")
            s.call("read_file", path="x")
    p = cli("show", "--json", str(trace))
    rows = [json.loads(line) for line in p.stdout.splitlines()]
    assert [(r["replayed"], r["output"]) for r in rows] == [
        (False, {"text": "X"}),
        (True, {"text": "X"}),
    ]


def test_demo_runs_offline_end_to_end(tmp_path: Path) -> None:
    p = cli("demo", "--dir", str(tmp_path / "demo"))
    assert p.returncode == 0, p.stdout + p.stderr
    assert "process exit: SIGKILL" in p.stdout
    assert p.stdout.count("[replayed from trace, not executed]") == 3
    assert "ledger has 5 lines" in p.stdout
    assert (tmp_path / "demo" / "ledger.csv").read_text().count("\n") == 5


# ------------------------------------------------------------- hostile inputs, final decisions


def test_a_fifo_is_refused_instead_of_read_forever(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jsonl"
    os.mkfifo(fifo)
    for args in (("show", str(fifo)), ("verify", str(fifo)), ("policy", "check", str(fifo))):
        p = subprocess.run(
            [sys.executable, "-m", "calltape", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert p.returncode == 2, (args, p.stderr)
        assert "not a regular file" in p.stderr
        assert_no_traceback(p)
    listed = cli("list", str(tmp_path))
    assert listed.returncode == 0 and "not a regular file" in listed.stdout


def test_deeply_nested_input_is_a_clean_error(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('version = 1\n[[rules]]\nid = "all"\naction = "allow"\n')
    deep = "[" * 20000 + "]" * 20000
    p = cli("policy", "explain", str(policy), "t", '{"a": ' + deep + "}")
    assert p.returncode == 2
    assert "internal error" not in p.stderr
    assert_no_traceback(p)


def _paused_run(tmp_path: Path) -> tuple[Path, int]:
    from calltape import Decision

    class Ask:
        def decide(self, call: object) -> Decision:
            return Decision.ask("ask.all", "a human decides")

    trace = tmp_path / "t.jsonl"
    with Session(trace, policy=Ask(), approver="durable") as s:
        s.register("pay", lambda amount: "paid", side_effect="write")
        return trace, s.call("pay", amount=5).seq


def test_an_approval_is_final_even_before_a_session_applies_it(tmp_path: Path) -> None:
    trace, seq = _paused_run(tmp_path)
    assert cli("approve", str(trace), str(seq)).returncode == 0
    again = cli("deny", str(trace), str(seq), "--reason", "changed my mind")
    assert again.returncode == 2
    assert "already has a approval waiting to be applied (approved" in again.stderr
    assert cli("deny", str(trace), str(seq), "--reason", "   ").returncode == 2


def test_a_resolution_is_final(tmp_path: Path) -> None:
    trace = tmp_path / "t.jsonl"
    script = f"""
import os, signal
from calltape import Session
s = Session({str(trace)!r})
s.register("send", lambda to: os.kill(os.getpid(), signal.SIGKILL), side_effect="write")
s.call("send", to="bob")
"""
    assert subprocess.run([sys.executable, "-c", script], check=False).returncode == -9
    assert cli("resolve", str(trace), "1", "--done").returncode == 0
    both = cli("resolve", str(trace), "1", "--redo")
    assert both.returncode == 2 and "resolved as done" in both.stderr


def test_kill_names_what_it_will_stop(tmp_path: Path, trace: Path) -> None:
    junk = tmp_path / "junk.jsonl"
    junk.write_bytes(b"\x00\x01 not a trace")
    p = cli("kill", str(junk))
    assert p.returncode == 2 and not (tmp_path / "junk.jsonl.inbox").exists()
    done = cli("kill", str(trace))  # the fixture's run completed and nobody runs it
    assert done.returncode == 2 and "already ended (completed)" in done.stderr
    paused, _ = _paused_run(tmp_path / "p")
    later = cli("kill", str(paused))
    assert later.returncode == 0 and "the next one that resumes it is stopped" in later.stdout


def test_verify_with_a_key_on_an_unkeyed_trace_says_both_readings(trace: Path) -> None:
    p = cli("verify", str(trace), "--key", "k")
    assert p.returncode == 1
    assert "recorded without a key, but a key was given" in p.stdout + p.stderr
