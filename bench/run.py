"""calltape benchmark suite: calltape side by side with its peers, as ratios, in one run.

    nox -s bench                      # everything (writes bench/results/latest.json and
                                      # docs/performance.md)
    nox -s bench -- --quick           # a smoke run with 1/10 of the counts (writes nothing)
    nox -s bench -- --only w1,w4      # some workloads (writes nothing)

Every measurement runs in its own subprocess in a fresh temp dir (bench/worker.py, bench/jobs.py),
so the systems never share an interpreter, a heap, a file or a disk cache entry of each other.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import report  # noqa: E402

PEERS = ["failcore", "agentledger", "agt"]
NAMES = {
    "raw": "raw Python call",
    "calltape": "calltape",
    "calltape-fsync": "calltape (fsync)",
    "failcore": "failcore",
    "agentledger": "agentledger-runtime",
    "agt": "Agent Governance Toolkit",
}
PACKAGES = [
    "calltape",
    "calltape-langchain",
    "calltape-llamaindex",
    "failcore",
    "agentledger-runtime",
    "agent-governance-toolkit-core",
    "agent-governance-toolkit-integrations",
    "langchain-core",
    "langgraph",
    "langgraph-prebuilt",
    "llama-index-core",
    "pydantic",
    "orjson",
]


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Runner:
    def __init__(self, scale: float, keep: bool) -> None:
        self.scale = scale
        self.keep = keep
        self.base = Path(tempfile.mkdtemp(prefix="calltape-bench-"))
        self.elapsed: dict[str, float] = {}
        self.trace_100k: str | None = None  # w3's Session-written trace, reused by profile.open

    def n(self, count: int, floor: int = 10) -> int:
        return max(floor, int(count * self.scale))

    def run(
        self, name: str, params: dict[str, Any], *, expect_exit: int | None = 0
    ) -> dict[str, Any]:
        tmp = Path(tempfile.mkdtemp(prefix=name.replace(".", "-") + "-", dir=self.base))
        env = dict(os.environ)
        env["FAILCORE_PROJECT_ROOT"] = str(tmp)  # failcore would otherwise write under the repo
        env.pop("CALLTAPE_TRACE_KEY", None)
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, str(BENCH / "worker.py"), name, str(tmp), json.dumps(params)],
            cwd=tmp,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        dt = time.monotonic() - t0
        self.elapsed[name] = self.elapsed.get(name, 0.0) + dt
        result_file = tmp / "result.json"
        if result_file.exists():
            result = json.loads(result_file.read_text())
        elif expect_exit is not None and proc.returncode != expect_exit:
            result = {"error": f"exit {proc.returncode}: {proc.stderr.strip()[-600:]}"}
        else:
            result = {}
        result["_tmp"] = str(tmp)
        result["_exit"] = proc.returncode
        result["_seconds"] = round(dt, 2)
        if "error" in result:
            log(f"{name}: ERROR {result['error']}")
            if "traceback" in result:
                print(result["traceback"], file=sys.stderr)
        else:
            log(f"{name}: {dt:.1f}s")
        return result

    def cleanup(self) -> None:
        if not self.keep:
            shutil.rmtree(self.base, ignore_errors=True)


# --------------------------------------------------------------------------- the workloads


def w1(r: Runner) -> dict[str, Any]:
    n = r.n(20000)
    out: dict[str, Any] = {"n": n}
    out["raw"] = r.run("w1.raw", {"n": n})
    out["calltape"] = r.run("w1.calltape", {"n": n})
    out["fsync"] = r.run("w1.fsync", {"n": r.n(400, 40), "block": 20 if r.scale < 1 else 40})
    budget, bbudget = 9 * min(1, r.scale * 4), 3 * min(1, r.scale * 4)
    out["failcore"] = r.run("w1.failcore", {"n": n, "budget_s": budget, "batch_budget_s": bbudget})
    out["agentledger"] = r.run(
        "w1.agentledger", {"n": n, "budget_s": budget, "batch_budget_s": bbudget}
    )
    out["agt"] = r.run("w1.agt", {"n": n})
    out["crash"] = crash(r)
    return out


def crash(r: Runner) -> dict[str, Any]:
    """kill -9 (os._exit) right after N calls returned: how many are on disk?"""
    n = 50
    out: dict[str, Any] = {"n": n}
    for sys_name in ["calltape", "failcore", "agentledger", "agt"]:
        res = r.run(f"crash.{sys_name}", {"n": n}, expect_exit=None)
        tmp = Path(res["_tmp"])
        try:
            if sys_name == "calltape":
                found = _count(tmp / "t.jsonl", b'"call_end"')
            elif sys_name == "failcore":
                found = _count(tmp / "fc.jsonl", b'"type":"RESULT"')
            elif sys_name == "agentledger":
                con = sqlite3.connect(tmp / "al" / "state.db")
                found = con.execute(
                    "select count(*) from events where type='tool_call_completed'"
                ).fetchone()[0]
                con.close()
            else:
                found = _count(tmp / "audit.jsonl", b"governance_decision")
        except (OSError, sqlite3.Error) as exc:
            found = f"unreadable: {exc}"
        out[sys_name] = {"exit": res["_exit"], "on_disk": found, "error": res.get("error")}
    return out


def _count(path: Path, needle: bytes) -> int:
    if not path.exists():
        return 0
    with open(path, "rb") as f:
        return sum(1 for line in f if needle in line)


def w2(r: Runner) -> dict[str, Any]:
    n = r.n(10000)
    return {
        "n": n,
        "calltape": r.run("w2.calltape", {"n": n}),
        "failcore": r.run("w2.failcore", {"n": n, "record_budget_s": 5 * min(1, r.scale * 4)}),
        "agentledger": r.run(
            "w2.agentledger", {"n": n, "record_budget_s": 5 * min(1, r.scale * 4)}
        ),
    }


def w3(r: Runner) -> dict[str, Any]:
    n_open = r.n(100_000, 1000)
    n_stream = r.n(1_000_000, 10000)
    data = r.base / "w3-data"
    data.mkdir()
    out: dict[str, Any] = {"n_open": n_open, "n_stream": n_stream}
    ct100 = str(data / "calltape-100k.jsonl")
    ct1m = str(data / "calltape-1m.jsonl")
    out["calltape_gen"] = r.run("w3.calltape.gen", {"path": ct100, "records": n_open})
    out["calltape_open"] = r.run("w3.calltape.open", {"path": ct100})
    r.trace_100k = ct100
    out["calltape_gen_1m"] = r.run(
        "w3.calltape.extend", {"src": ct100, "path": ct1m, "records": n_stream}
    )
    out["calltape_stream"] = r.run("w3.calltape.stream", {"path": ct1m, "mode": "iter_records"})
    out["calltape_stream_raw"] = r.run("w3.calltape.stream", {"path": ct1m, "mode": "iter_raw"})
    Path(ct1m).unlink(missing_ok=True)  # 300 MB; the 100k trace stays for profile.open
    fc = str(data / "failcore-100k.jsonl")
    out["failcore_gen"] = r.run("w3.failcore.gen", {"path": fc, "records": n_open})
    out["failcore_open"] = r.run("w3.failcore.open", {"path": fc})
    al = str(data / "al")
    gen = r.run("w3.agentledger.gen", {"root": al, "records": n_open})
    out["agentledger_gen"] = gen
    if "run_id" in gen:
        out["agentledger_open"] = r.run(
            "w3.agentledger.open", {"root": al, "run_id": gen["run_id"]}
        )
    return out


def w4(r: Runner) -> dict[str, Any]:
    n = r.n(20000)
    p = {"n": n, "rules": 50}
    return {
        "n": n,
        "calltape": r.run("w4.calltape", {**p, "calls": r.n(5000, 500)}),
        "agentledger": r.run("w4.agentledger", p),
        "agt": r.run("w4.agt", p),
    }


def w5(r: Runner) -> dict[str, Any]:
    n = r.n(1000, 100)
    p = {"n": n, "block": max(5, n // 100)}  # many short alternating blocks: same weather
    return {"n": n, "langchain": r.run("w5.langchain", p), "llamaindex": r.run("w5.llamaindex", p)}


def profiles(r: Runner) -> dict[str, Any]:
    n = r.n(5000, 500)
    return {
        "components": r.run("profile.components", {"n": n}),
        "variants": r.run("profile.variants", {"n": r.n(5000, 500)}),
        "call": r.run("profile.call", {"n": n}),
        "replay": r.run("profile.replay", {"n": n}),
        "open": r.run("profile.open", {"records": r.n(100_000, 1000), "path": r.trace_100k}),
        "llamaindex": r.run("profile.llamaindex", {"n": r.n(300, 50)}),
    }


WORKLOADS = {"w1": w1, "w2": w2, "w3": w3, "w4": w4, "w5": w5, "profile": profiles}


# --------------------------------------------------------------------------- environment


def environment() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in PACKAGES:
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = bool(
            subprocess.run(
                ["git", "status", "--porcelain", "--untracked-files=no", "core"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            ).stdout.strip()
        )
    except OSError:
        commit, dirty = "unknown", False
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg_start": list(os.getloadavg()),
        "versions": versions,
        "git_commit": commit,
        "core_dirty": dirty,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1/10 of the counts; writes nothing")
    ap.add_argument("--only", default="", help="comma list of w1..w5,profile; writes nothing")
    ap.add_argument("--keep", action="store_true", help="keep the temp dirs (paths are logged)")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    args = ap.parse_args(argv)
    scale = 0.1 if args.quick else 1.0
    chosen = [w.strip() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = [w for w in chosen if w not in WORKLOADS]
    if unknown:
        ap.error(f"unknown workload(s): {', '.join(unknown)}")
    write = not (args.quick or args.only or args.no_write)
    env = environment()
    log(f"python {env['python']} on {env['cpu']} x{env['cores']}, load {env['loadavg_start']}")
    runner = Runner(scale, args.keep)
    if args.keep:
        log(f"temp dirs under {runner.base}")
    t0 = time.monotonic()
    results: dict[str, Any] = {}
    try:
        for w in chosen:
            log(f"--- {w}")
            results[w] = WORKLOADS[w](runner)
    finally:
        runner.cleanup()
    env["loadavg_end"] = list(os.getloadavg())
    env["duration_s"] = round(time.monotonic() - t0, 1)
    env["job_seconds"] = {k: round(v, 1) for k, v in runner.elapsed.items()}
    cmd = "nox -s bench" + (
        "" if not argv and len(sys.argv) <= 1 else " -- " + " ".join(argv or sys.argv[1:])
    )
    doc = report.build(results, env, scale=scale, command=cmd)
    print(report.render_text(doc))
    if write:
        out = BENCH / "results" / "latest.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(doc, indent=1, default=str) + "\n")
        (ROOT / "docs" / "performance.md").write_text(report.render_markdown(doc))
        log(f"wrote {out.relative_to(ROOT)} and docs/performance.md ({env['duration_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
