"""Child side of the kill -9 harness (test_crash_harness.py).

Run as ``python _crash_child.py zygote``: imports calltape once, then reads one JSON trial per
line on stdin and forks a child per trial (so 400 processes cost milliseconds, not 400 imports
of pydantic). For each trial it prints ``{"pid": ...}`` then ``{"pid": ..., "signal": ...,
"code": ...}`` when the child is gone. With ``point == "timer"`` the zygote (the child's parent)
sends SIGKILL after ``delay`` seconds.

The child runs ``n`` calls of three tools that append to a ledger file (the side effect):

* ``pay``: keyed, ``idempotent=True``; skips the append when the ledger already holds its
  ``current_call().idempotency_key`` (exactly-once);
* ``ship``: keyed, not idempotent, with ``reconcile=`` asking the ledger for the key;
* ``notify``: unkeyed, not idempotent, no reconcile (a crash inside it must block, not rerun).

The env var ``CT_KILL_POINT`` chooses where the child kills itself with SIGKILL:
``before_effect`` / ``after_effect`` (inside the tool of call ``CT_KILL_AT``), ``trace_write``
(the ``CT_KILL_AT``-th write(2) to the trace hands the kernel only ``CT_KILL_PREFIX`` of the
record's bytes, then dies), or ``none``. Each call's result is reported on the ``out`` file
with one ``os.write`` *after* ``session.call`` returned: ``R <i> <status> <replayed> <rule>``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import traceback
from typing import Any

TOOLS = ("pay", "ship", "notify")


def schedule(n: int) -> list[tuple[str, int]]:
    """The calls of a trial: (tool, item). Items repeat, so occurrences > 0 are exercised."""
    return [(TOOLS[i % 3], i % 6) for i in range(n)]


def die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)  # pragma: no cover - SIGKILL is not deliverable late, but never continue


def append_line(path: str, line: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def ledger_has(path: str, key: str) -> bool:
    try:
        with open(path) as f:
            return any(line.split(" ", 1)[0] == key for line in f)
    except FileNotFoundError:
        return False


def install_write_killer(trace: str, kill_at: int, prefix_frac: float) -> None:
    """Make the ``kill_at``-th write(2) to the trace write a prefix of its bytes, then die."""
    real_write = os.write
    target = os.path.realpath(trace)
    count = [0]

    def write(fd: int, data: Any) -> int:
        try:
            is_trace = os.readlink(f"/proc/self/fd/{fd}") == target
        except OSError:
            is_trace = False
        if is_trace:
            if count[0] == kill_at:
                buf = bytes(data)
                cut = min(len(buf) - 1, max(1, int(len(buf) * prefix_frac)))
                real_write(fd, buf[:cut])
                die()
            count[0] += 1
        return real_write(fd, data)

    os.write = write  # type: ignore[assignment]


def trial(cfg: dict[str, Any]) -> None:
    from calltape import Session, current_call

    out_fd = os.open(cfg["out"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def report(text: str) -> None:
        os.write(out_fd, (text + "\n").encode())

    point = os.environ.get("CT_KILL_POINT", "none")
    kill_at = int(os.environ.get("CT_KILL_AT", "-1"))
    ledger, invocations, trace = cfg["ledger"], cfg["invocations"], cfg["trace"]
    if point == "trace_write":
        install_write_killer(trace, kill_at, float(os.environ.get("CT_KILL_PREFIX", "0.5")))
    current = [-1]
    attempt = cfg["phase"]

    def body(tool: str, item: int, keyed: bool) -> str:
        ctx = current_call()
        assert ctx is not None
        key = ctx.idempotency_key
        i = current[0]
        append_line(invocations, f"{i} {tool} {attempt} {key}\n")
        if point == "before_effect" and i == kill_at:
            die()
        time.sleep(0.0002)
        if not (keyed and ledger_has(ledger, key)):
            append_line(ledger, f"{key} {tool} {i} {attempt}\n")
        time.sleep(0.0002)
        if point == "after_effect" and i == kill_at:
            die()
        return f"{tool}:{item}"

    session = Session(trace, shared=bool(cfg.get("shared")), trace_key=cfg.get("key"))

    @session.tool(side_effect="write", idempotent=True)
    def pay(item: int) -> str:
        return body("pay", item, keyed=True)

    @session.tool(
        side_effect="write",
        reconcile=lambda key: "done" if ledger_has(ledger, key) else "not_done",
    )
    def ship(item: int) -> str:
        return body("ship", item, keyed=True)

    @session.tool(side_effect="write")
    def notify(item: int) -> str:
        return body("notify", item, keyed=False)

    for i, (tool, item) in enumerate(schedule(cfg["n"])):
        current[0] = i
        r = session.call(tool, item=item)
        report(f"R {i} {r.status} {int(r.replayed)} {r.decision.rule} {r.output}")
    session.close()
    report("DONE")


def unknown_step(cfg: dict[str, Any]) -> None:
    """One session, one call of ``op(item=1)``; for the unknown-outcome tests.

    ``cfg["tool"]`` declares ``op``: ``write`` (not idempotent, no reconcile), ``read``,
    ``idempotent`` or ``reconcile`` (the hook logs ``ASK <key>`` and answers ``cfg["answer"]``,
    or raises for ``"raise"``). The tool logs ``RUN <key>`` to the ledger (its side effect) and,
    with ``cfg["kill"]``, SIGKILLs its own process right after. The result goes to ``out``.
    """
    from calltape import Session, current_call

    ledger = cfg["ledger"]

    def op(item: int) -> str:
        ctx = current_call()
        assert ctx is not None
        append_line(ledger, f"RUN {ctx.idempotency_key}\n")
        if cfg.get("kill"):
            die()
        return f"done {item}"

    def reconcile(key: str) -> str:
        append_line(ledger, f"ASK {key}\n")
        if cfg["answer"] == "raise":
            raise ConnectionError("the payment API is down")
        return str(cfg["answer"])

    kind = cfg["tool"]
    session = Session(cfg["trace"], trace_key=cfg.get("key"))
    session.register(
        "op",
        op,
        side_effect="read" if kind == "read" else "write",
        idempotent=kind == "idempotent",
        reconcile=reconcile if kind == "reconcile" else None,
    )
    r = session.call("op", item=1)
    result = {
        "status": r.status,
        "replayed": r.replayed,
        "output": r.output,
        "rule": r.decision.rule,
        "reason": r.decision.reason,
        "seq": r.seq,
    }
    session.close()
    with open(cfg["out"], "w") as f:
        json.dump(result, f)


def zygote() -> None:
    import calltape  # import once, before forking
    import calltape.cli  # noqa: F401

    for line in sys.stdin:
        cfg = json.loads(line)
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                os.environ["CT_KILL_POINT"] = cfg.get("point", "none")
                os.environ["CT_KILL_AT"] = str(cfg.get("k", -1))
                os.environ["CT_KILL_PREFIX"] = str(cfg.get("prefix", 0.5))
                if cfg.get("point") == "timer":
                    os.environ["CT_KILL_POINT"] = "none"  # the parent kills this one
                if cfg.get("kind") == "unknown":
                    unknown_step(cfg)
                else:
                    trial(cfg)
            except BaseException:
                with open(cfg["out"], "a") as f:
                    f.write("EXC " + traceback.format_exc().replace("\n", "\n    ") + "\n")
                code = 3
            os._exit(code)
        t0 = time.perf_counter()
        print(json.dumps({"pid": pid}), flush=True)
        if cfg.get("point") == "timer":
            time.sleep(cfg["delay"])
            os.kill(pid, signal.SIGKILL)  # a zombie if it already exited: harmless
        _, status = os.waitpid(pid, 0)
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        elapsed = time.perf_counter() - t0
        print(json.dumps({"pid": pid, "signal": sig, "code": code, "s": elapsed}), flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["zygote"]:
        zygote()
    else:
        trial(json.loads(sys.argv[1]))
