"""One of several processes appending to one shared trace (test_concurrency.py).

``python _shared_child.py TRACE PROC N [join]``: opens ``Session(TRACE, shared=True)`` (trace key
from ``CALLTAPE_TRACE_KEY``), prints ``ready``, waits for a line on stdin so every process starts
calling at once, then makes N calls ``put(p=PROC, j=0..N-1)`` and prints ``done <ok count>``.
With ``join`` the session is opened without ``shared=True`` (a process joining a run that
another process owns) and nothing waits for stdin.
"""

from __future__ import annotations

import sys

from calltape import Session


def main() -> None:
    trace, proc, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    join = sys.argv[4:] == ["join"]
    ok = 0
    with Session(trace, shared=not join) as session:
        session.register("put", lambda p, j: {"p": p, "j": j}, side_effect="write")
        print("ready", flush=True)
        if not join:
            sys.stdin.readline()
        for j in range(n):
            r = session.call("put", p=proc, j=j)
            ok += r.ok and not r.replayed and r.output == {"p": proc, "j": j}
    print(f"done {ok}", flush=True)


if __name__ == "__main__":
    main()
