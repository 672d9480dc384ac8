"""Issue 7, items 1 and 6: processes killed with SIGKILL, then resumed.

* ``test_kill9_harness`` (marked ``crash``): at least 200 trials, each a child process doing a
  fixed schedule of calls and SIGKILLed at a random point (before the tool's side effect, after
  it before the tool returns, in the middle of a trace record's write(2), or by its parent after
  a random delay), then resumed by a second child with no kill. Side effects go to a ledger file
  keyed by ``current_call().idempotency_key``. Figures that must hold: 0 duplicated side effects
  for keyed tools, 0 lost committed results, 0 unreadable traces.
* the unknown-outcome tests: a write killed mid-call is blocked on resume with rule
  ``unknown_outcome``; ``calltape resolve`` decides it; read/idempotent tools rerun; a reconcile
  hook is asked with the same idempotency key.

Children are forked from a "zygote" process that imported calltape once (``_crash_child.py``),
so a trial costs milliseconds instead of a fresh interpreter.
"""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from calltape.errors import CalltapeError
from calltape.trace import read_trace

HERE = Path(__file__).parent
CHILD = HERE / "_crash_child.py"
TOOLS = ("pay", "ship", "notify")
KEYED = {"pay", "ship"}


class Zygote:
    """A process that imported calltape once and forks one child per trial."""

    def __init__(self, log: Path) -> None:
        env = {k: v for k, v in os.environ.items() if k != "CALLTAPE_TRACE_KEY"}
        self.log = log
        with open(log, "ab") as err:  # the children's warnings (torn tails moved aside...)
            self.proc = subprocess.Popen(
                [sys.executable, str(CHILD), "zygote"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                bufsize=1,
                env=env,
            )

    def run(self, cfg: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(cfg) + "\n")
        self.proc.stdin.flush()
        started, done = (self.proc.stdout.readline() for _ in range(2))
        if not done:
            raise RuntimeError(f"the zygote died: {self.log.read_text()[-3000:]}")
        started, done = json.loads(started), json.loads(done)
        assert done["pid"] == started["pid"]
        return done

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    z = Zygote(tmp_path_factory.mktemp("zygote") / "stderr.log")
    yield z
    z.close()


def schedule(n: int) -> list[tuple[str, int]]:
    return [(TOOLS[i % 3], i % 6) for i in range(n)]


def parse_reports(path: Path) -> dict[int, tuple[str, bool, str]]:
    """``R <i> <status> <replayed> <rule> ...`` lines: what the child reported as returned."""
    out: dict[int, tuple[str, bool, str]] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        parts = line.split(" ")
        if parts[0] == "R" and len(parts) >= 5:
            out[int(parts[1])] = (parts[2], parts[3] == "1", parts[4])
    return out


# =========================================================================== item 1: kill -9


N_CALLS = 18
TRIALS_PER_POINT = int(os.environ.get("CT_CRASH_TRIALS_PER_POINT", "100"))  # 4 points: 400
POINTS = ("before_effect", "after_effect", "trace_write", "timer")


@dataclass
class Trial:
    n: int
    point: str
    dir: Path
    k: int = -1
    prefix: float = 0.5
    delay: float = 0.0
    key: str | None = None
    first: dict[str, Any] = field(default_factory=dict)
    second: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def files(self) -> dict[str, str]:
        return {
            "trace": str(self.dir / "run.jsonl"),
            "ledger": str(self.dir / "ledger.txt"),
            "invocations": str(self.dir / "invocations.txt"),
        }

    def cfg(self, phase: int) -> dict[str, Any]:
        cfg: dict[str, Any] = {**self.files(), "n": self.n, "phase": phase, "key": self.key}
        cfg["out"] = str(self.dir / f"out{phase}.txt")
        if phase == 1:
            cfg.update(point=self.point, k=self.k, prefix=self.prefix, delay=self.delay)
        return cfg


def run_trials(zygotes: list[Zygote], trials: list[Trial]) -> None:
    """Each zygote runs its share of trials (kill, then resume) in a thread of its own."""

    errors: list[BaseException] = []

    def work(z: Zygote, mine: list[Trial]) -> None:
        try:
            run_share(z, mine)
        except BaseException as exc:  # surfaced below: a thread must not fail silently
            errors.append(exc)

    def run_share(z: Zygote, mine: list[Trial]) -> None:
        for t in mine:
            t.dir.mkdir(parents=True)
            t0 = time.perf_counter()
            t.first = z.run(t.cfg(1))
            trace = t.dir / "run.jsonl"
            if trace.exists():  # the trace exactly as the kill left it
                (t.dir / "killed.jsonl").write_bytes(trace.read_bytes())
            t.second = z.run(t.cfg(2))
            t.seconds = time.perf_counter() - t0

    threads = [
        threading.Thread(target=work, args=(z, trials[i :: len(zygotes)]))
        for i, z in enumerate(zygotes)
    ]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise errors[0]


@dataclass
class Figures:
    trials: int = 0
    keyed: int = 0
    planned: Counter[str] = field(default_factory=Counter)
    killed: Counter[str] = field(default_factory=Counter)
    timer_landed: Counter[str] = field(default_factory=Counter)
    torn_after_kill: int = 0
    duplicates: int = 0
    missing_keyed: int = 0
    unkeyed_duplicates: int = 0
    lost: int = 0
    unreadable_trials: set[str] = field(default_factory=set)
    resume_failed: int = 0
    key_changed: int = 0
    blocked_unknown: int = 0
    reconciled: int = 0
    idempotent_reruns: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def unreadable(self) -> int:
        return len(self.unreadable_trials)

    def note(self, trial: Trial, what: str) -> None:
        self.problems.append(f"{trial.dir.name} ({trial.point}, k={trial.k}): {what}")

    def table(self, seconds: float) -> str:
        lines = [
            "",
            "kill -9 harness (issue 7)",
            f"  trials                      {self.trials} ({self.keyed} with a trace key)",
            "  kills per point (landed/planned): "
            + ", ".join(f"{p} {self.killed[p]}/{self.planned[p]}" for p in POINTS),
            f"  kills in total              {sum(self.killed.values())}",
            "  timer kills landed: "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.timer_landed.items())),
            f"  torn records left by a kill {self.torn_after_kill}",
            f"  duplicated side effects (keyed tools)   {self.duplicates}",
            f"  keyed calls never applied after resume  {self.missing_keyed}",
            f"  lost committed results                  {self.lost}",
            f"  unreadable traces                       {self.unreadable}",
            f"  failed resumes                          {self.resume_failed}",
            f"  idempotency key changed across attempts {self.key_changed}",
            f"  unkeyed write applied twice             {self.unkeyed_duplicates}",
            f"  resume: blocked unknown_outcome {self.blocked_unknown}, reconciled "
            f"{self.reconciled}, idempotent reruns {self.idempotent_reruns}",
            f"  wall time {seconds:.1f}s",
        ]
        lines += [f"  PROBLEM {p}" for p in self.problems[:20]]
        return "\n".join(lines)


def timer_landing(killed: Path) -> str:
    """Where a timer kill landed, judged from the trace it left."""
    data = killed.read_bytes() if killed.exists() else b""
    if not data:
        return "before the first record"
    if not data.endswith(b"\n"):
        return "inside a write"
    last = orjson.loads(data.splitlines()[-1])
    if last["type"] == "call_start":
        return "inside a call"
    if last["type"] == "run_end":
        return "after close"
    return "between calls"


def check_trial(t: Trial, figures: Figures, cli: Callable[..., Any], chain: Any) -> None:
    files = {k: Path(v) for k, v in t.files().items()}
    trace, ledger, invocations = files["trace"], files["ledger"], files["invocations"]
    figures.trials += 1
    figures.keyed += t.key is not None
    figures.planned[t.point] += 1
    if t.first.get("signal") == signal.SIGKILL:
        figures.killed[t.point] += 1
    elif t.first.get("code") != 0:
        figures.note(t, f"first child failed: {(t.dir / 'out1.txt').read_text()[-600:]}")

    # what the kill left must be readable as it is (a torn last record is tolerated)
    killed = t.dir / "killed.jsonl"
    if t.point == "timer" and t.first.get("signal") == signal.SIGKILL:
        figures.timer_landed[timer_landing(killed)] += 1
    if killed.exists() and killed.stat().st_size > 0:
        try:
            read_trace(killed)
        except CalltapeError as exc:
            figures.unreadable_trials.add(t.dir.name)
            figures.note(t, f"unreadable right after the kill: {exc}")
    out2 = (t.dir / "out2.txt").read_text() if (t.dir / "out2.txt").exists() else ""
    if t.second.get("code") != 0 or "DONE" not in out2:
        figures.resume_failed += 1
        figures.unreadable_trials.add(t.dir.name)
        last = [line.strip() for line in out2.strip().splitlines()][-1:] or ["no output"]
        figures.note(t, f"resume failed: {last[0]} (code {t.second.get('code')})")
        return
    if list(trace.parent.glob("run.jsonl.torn-*")):
        figures.torn_after_kill += 1

    # 0 unreadable: every trace reads and verifies after the (repair-free) resume
    try:
        read = read_trace(trace)
        if read.torn_line is not None:
            raise AssertionError(f"torn line {read.torn_line} after a clean resume")
    except (CalltapeError, AssertionError) as exc:
        figures.unreadable_trials.add(t.dir.name)
        figures.note(t, f"unreadable after resume: {exc}")
        return
    v = cli("verify", str(trace), *(["--key", t.key] if t.key else []))
    own = chain(trace, t.key.encode() if t.key else None)
    if v.code != 0 or own.first_bad_line is not None:
        figures.unreadable_trials.add(t.dir.name)
        figures.note(t, f"verify: {v.text.strip()} / own chain check: {own}")

    # 0 duplicates for keyed tools: each logical call's key applied exactly once
    applied: Counter[int] = Counter()
    tool_of: dict[int, str] = {}
    for line in ledger.read_text().splitlines() if ledger.exists() else []:
        _key, tool, i, _attempt = line.split(" ")
        applied[int(i)] += 1
        tool_of[int(i)] = tool
    keys: defaultdict[int, set[str]] = defaultdict(set)
    invoked: dict[str, set[int]] = {"1": set(), "2": set()}
    for line in invocations.read_text().splitlines() if invocations.exists() else []:
        i, _tool, attempt, key = line.split(" ")
        keys[int(i)].add(key)
        invoked[attempt].add(int(i))
    phase2_invoked = invoked["2"]
    first = parse_reports(t.dir / "out1.txt")
    second = parse_reports(t.dir / "out2.txt")
    for i, (tool, _item) in enumerate(schedule(t.n)):
        if len(keys[i]) > 1:
            figures.key_changed += 1
            figures.note(t, f"call {i} ({tool}) saw keys {sorted(keys[i])}")
        if tool in KEYED:
            if applied[i] > 1:
                figures.duplicates += applied[i] - 1
                figures.note(t, f"call {i} ({tool}) applied {applied[i]} times")
            elif applied[i] == 0:
                figures.missing_keyed += 1
                figures.note(t, f"call {i} ({tool}) never applied; resume said {second.get(i)}")
        elif applied[i] > 1:
            figures.unkeyed_duplicates += 1
            figures.note(t, f"unkeyed call {i} applied {applied[i]} times")
        # 0 lost: a result the first child reported as ok is replayed, not re-run
        if first.get(i, ("", False, ""))[0] == "ok":
            status, replayed, _rule = second.get(i, ("missing", False, ""))
            if status != "ok" or not replayed or i in phase2_invoked:
                figures.lost += 1
                figures.note(t, f"call {i} reported ok before the kill, resume: {second.get(i)}")
        rule = second.get(i, ("", False, ""))[2]
        if rule == "unknown_outcome":
            figures.blocked_unknown += 1
        elif rule.startswith("unknown_outcome.reconciled"):
            figures.reconciled += 1
        if tool == "pay" and i in invoked["1"] and i in phase2_invoked:
            figures.idempotent_reruns += 1


@pytest.mark.crash
def test_kill9_harness(tmp_path: Path, cli: Callable[..., Any], chain: Any) -> None:
    seed = int(os.environ.get("CT_CRASH_SEED", "20261123"))
    rng = random.Random(seed)
    zygotes = [Zygote(tmp_path / f"zygote{i}.log") for i in range(2)]
    try:
        # calibrate the timer kills on clean runs: delays spread over a whole run
        calib = [Trial(N_CALLS, "none", tmp_path / f"calib{i}") for i in range(6)]
        run_trials(zygotes, calib)
        for c in calib:
            assert c.first.get("code") == 0, (c.dir / "out1.txt").read_text()[-2000:]
        span = statistics.median(c.first["s"] for c in calib)  # one whole first phase
        trials: list[Trial] = []
        for n, point in enumerate(p for p in POINTS for _ in range(TRIALS_PER_POINT)):
            t = Trial(N_CALLS, point, tmp_path / f"t{n:03d}")
            if n % 4 == 3:
                t.key = f"trial-key-{n}"  # a quarter of the traces are HMAC-chained
            if point in ("before_effect", "after_effect"):
                t.k = rng.randrange(N_CALLS)
            elif point == "trace_write":
                t.k = rng.randrange(2 * N_CALLS + 2)  # header, starts and ends, run_end
                t.prefix = rng.random()
            else:
                t.delay = rng.uniform(0.0, 0.8 * span)
            trials.append(t)
        rng.shuffle(trials)
        t0 = time.perf_counter()
        run_trials(zygotes, trials)
        elapsed = time.perf_counter() - t0
    finally:
        for z in zygotes:
            z.close()

    figures = Figures()
    for t in trials:
        check_trial(t, figures, cli, chain)
    print(
        figures.table(elapsed) + f"\n  seed {seed} (CT_CRASH_SEED), timer span {span * 1e3:.0f}ms"
    )

    assert sum(figures.killed.values()) >= 200, figures.table(elapsed)
    for point in ("before_effect", "after_effect", "trace_write"):
        assert figures.killed[point] == figures.planned[point], figures.table(elapsed)
    assert figures.killed["timer"] >= figures.planned["timer"] // 2, figures.table(elapsed)
    assert figures.duplicates == 0, figures.table(elapsed)
    assert figures.missing_keyed == 0, figures.table(elapsed)
    assert figures.lost == 0, figures.table(elapsed)
    assert figures.unreadable == 0, figures.table(elapsed)
    assert figures.resume_failed == 0, figures.table(elapsed)
    assert figures.key_changed == 0, figures.table(elapsed)
    assert figures.unkeyed_duplicates == 0, figures.table(elapsed)


# =========================================================================== item 6: unknown state


@dataclass
class Step:
    signal: int
    code: int | None
    result: dict[str, Any] | None
    out: str


class UnknownRun:
    """One trace, one ledger; each step is a forked process making the same single call."""

    def __init__(self, zygote: Zygote, root: Path, tool: str) -> None:
        self.zygote = zygote
        self.root = root
        self.tool = tool
        self.trace = root / "run.jsonl"
        self.ledger = root / "ledger.txt"
        self.steps = 0

    def step(self, *, kill: bool = False, answer: str = "done", key: str | None = None) -> Step:
        self.steps += 1
        out = self.root / f"out{self.steps}.json"
        cfg = {
            "kind": "unknown",
            "trace": str(self.trace),
            "ledger": str(self.ledger),
            "out": str(out),
            "tool": self.tool,
            "kill": kill,
            "answer": answer,
            "key": key,
        }
        done = self.zygote.run(cfg)
        text = out.read_text() if out.exists() else ""
        result = json.loads(text) if text.startswith("{") else None
        return Step(done["signal"], done["code"], result, text)

    def ledger_lines(self) -> list[str]:
        return self.ledger.read_text().splitlines() if self.ledger.exists() else []

    def unfinished_seq(self) -> int:
        starts, ends = set(), set()
        for rec in read_trace(self.trace).records:
            if rec.type == "call_start":
                starts.add(rec.seq)
            elif rec.type == "call_end":
                ends.add(rec.seq)
        (seq,) = starts - ends
        return seq

    def killed_mid_call(self, key: str | None = None) -> str:
        """Run the call and die inside it, after its side effect; return the key it used."""
        first = self.step(kill=True, key=key)
        assert first.signal == signal.SIGKILL, first.out
        (line,) = self.ledger_lines()
        assert line.startswith("RUN ct-")
        return line.split(" ", 1)[1]


@pytest.fixture
def unknown(zygote: Zygote, tmp_path: Path) -> Callable[[str], UnknownRun]:
    return lambda tool: UnknownRun(zygote, tmp_path, tool)


def test_write_killed_mid_call_is_blocked_on_resume_not_rerun(
    unknown: Callable[[str], UnknownRun],
) -> None:
    run = unknown("write")
    run.killed_mid_call()
    seq = run.unfinished_seq()

    again = run.step()
    assert again.result is not None, again.out
    assert again.result["status"] == "blocked"
    assert again.result["rule"] == "unknown_outcome"
    assert f"calltape resolve {run.trace} {seq} --done" in again.result["reason"]
    assert "--redo" in again.result["reason"]
    assert len(run.ledger_lines()) == 1, "the tool ran again"

    # still blocked on every later resume until a human decides
    third = run.step()
    assert third.result is not None and third.result["rule"] == "unknown_outcome"
    assert len(run.ledger_lines()) == 1


def test_resolve_done_answers_without_running(
    unknown: Callable[[str], UnknownRun], cli_proc: Callable[..., Any], cli: Callable[..., Any]
) -> None:
    run = unknown("write")
    run.killed_mid_call()
    seq = run.unfinished_seq()

    r = cli_proc("resolve", str(run.trace), str(seq), "--done", "--reason", "checked the bank")
    assert r.code == 0, r.text
    assert "Traceback" not in r.text

    after = run.step()
    assert after.result is not None, after.out
    assert after.result["status"] == "ok"
    assert after.result["replayed"] is True
    assert after.result["output"] is None
    assert len(run.ledger_lines()) == 1, "resolved --done but the tool ran again"

    # the resolution is part of the record: the trace verifies and reads
    assert cli("verify", str(run.trace)).code == 0, cli("verify", str(run.trace)).text
    shown = cli("show", str(run.trace))
    assert shown.code == 0, shown.text


def test_resolve_redo_runs_it_exactly_once(
    unknown: Callable[[str], UnknownRun], cli_proc: Callable[..., Any], cli: Callable[..., Any]
) -> None:
    run = unknown("write")
    key = run.killed_mid_call()
    seq = run.unfinished_seq()

    r = cli_proc("resolve", str(run.trace), str(seq), "--redo")
    assert r.code == 0, r.text

    redo = run.step()
    assert redo.result is not None, redo.out
    assert redo.result["status"] == "ok" and redo.result["replayed"] is False
    assert run.ledger_lines() == [f"RUN {key}", f"RUN {key}"], "same key on the redo"

    later = run.step()
    assert later.result is not None and later.result["replayed"] is True
    assert len(run.ledger_lines()) == 2, "--redo ran the call more than once"
    assert cli("verify", str(run.trace)).code == 0


def test_resolve_rejects_a_call_that_is_not_unknown(
    unknown: Callable[[str], UnknownRun], cli_proc: Callable[..., Any]
) -> None:
    run = unknown("write")
    ok = run.step()
    assert ok.result is not None and ok.result["status"] == "ok"
    before = run.trace.read_bytes()
    r = cli_proc("resolve", str(run.trace), str(ok.result["seq"]), "--done")
    assert r.code == 2
    assert "Traceback" not in r.text
    assert "not a call in unknown state" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert run.trace.read_bytes() == before, "a rejected resolve wrote to the trace"


@pytest.mark.parametrize("tool", ["read", "idempotent"])
def test_read_and_idempotent_tools_rerun_with_the_same_key(
    unknown: Callable[[str], UnknownRun], tool: str
) -> None:
    run = unknown(tool)
    key = run.killed_mid_call()
    again = run.step()
    assert again.result is not None, again.out
    assert again.result["status"] == "ok" and again.result["replayed"] is False
    assert run.ledger_lines() == [f"RUN {key}", f"RUN {key}"]


@pytest.mark.parametrize(
    ("answer", "status", "runs", "rule"),
    [
        ("done", "ok", 1, "unknown_outcome.reconciled"),
        ("not_done", "ok", 2, None),
        ("unknown", "blocked", 1, "unknown_outcome"),
        ("raise", "blocked", 1, "unknown_outcome"),
    ],
)
def test_reconcile_is_asked_with_the_same_key(
    unknown: Callable[[str], UnknownRun],
    answer: str,
    status: str,
    runs: int,
    rule: str | None,
) -> None:
    run = unknown("reconcile")
    key = run.killed_mid_call()
    again = run.step(answer=answer)
    assert again.result is not None, again.out
    assert again.result["status"] == status
    lines = run.ledger_lines()
    assert f"ASK {key}" in lines, f"reconcile not asked with the crashed call's key: {lines}"
    assert lines.count(f"RUN {key}") == runs
    assert all(line.endswith(key) for line in lines)
    if rule is not None:
        assert again.result["rule"] == rule
    if answer == "done":
        assert again.result["replayed"] is True
    if status == "blocked":
        assert "calltape resolve" in again.result["reason"]


def test_resolve_on_a_keyed_trace_keeps_the_chain(
    unknown: Callable[[str], UnknownRun], cli_proc: Callable[..., Any], cli: Callable[..., Any]
) -> None:
    """``resolve`` needs no key (the decision is posted to the run, the session that applies it
    records it in its chain); the keyed trace verifies with its key afterwards."""
    run = unknown("write")
    run.killed_mid_call(key="resolve-key")
    seq = run.unfinished_seq()
    r = cli_proc("resolve", str(run.trace), str(seq), "--done")
    assert r.code == 0, r.text
    after = run.step(key="resolve-key")
    assert after.result is not None and after.result["replayed"] is True, after.out
    assert len(run.ledger_lines()) == 1
    v = cli("verify", str(run.trace), "--key", "resolve-key")
    assert v.code == 0, v.text


@pytest.mark.parametrize("k", [0, 1, 2])
def test_killed_inside_the_first_writes_resumes(
    zygote: Zygote, tmp_path: Path, cli: Callable[..., Any], k: int
) -> None:
    """Killed halfway through writing the header (k=0), the first call_start (1) or its
    call_end (2): the next process resumes from what is there, without a manual repair."""
    t = Trial(6, "trace_write", tmp_path / "t", k=k, prefix=0.5)
    t.dir.mkdir()
    first = zygote.run(t.cfg(1))
    assert first["signal"] == signal.SIGKILL
    assert not Path(t.files()["trace"]).read_bytes().endswith(b"\n")
    second = zygote.run(t.cfg(2))
    out2 = (t.dir / "out2.txt").read_text()
    assert second["code"] == 0 and "DONE" in out2, out2[-1500:]
    assert cli("verify", t.files()["trace"]).code == 0
