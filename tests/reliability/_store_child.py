"""Child side of test_store_failure.py: store failures that need their own process.

``python _store_child.py fsize TRACE``: three calls succeed, then RLIMIT_FSIZE is set just above
the trace's size (SIGXFSZ ignored, so write(2) fails with EFBIG after a short write) and a call
with large arguments is attempted.

``python _store_child.py open TRACE``: open a session on TRACE (run as an unprivileged user on
a root-owned path: permission denied) and attempt one call. With ``--as-nobody`` the child
drops to uid/gid 65534 after its imports.

Both print one JSON object: which tools ran, and the exception (type, message) if any.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from typing import Any


def main() -> None:
    from calltape import Session

    mode, trace = sys.argv[1], sys.argv[2]
    if "--as-nobody" in sys.argv:
        import os

        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)
    ran: list[str] = []
    result: dict[str, Any] = {"ran": ran, "error": None}

    def note(text: str) -> str:
        ran.append(text[:20])
        return "noted"

    try:
        session = Session(trace)
        session.register("note", note, side_effect="write")
        if mode == "fsize":
            for i in range(3):
                assert session.call("note", text=f"small {i}").ok
            size = session.trace_path.stat().st_size
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, resource.RLIM_INFINITY))
            result["size_before"] = size
        session.call("note", text="big " + "x" * 5000)
    except Exception as exc:
        result["error"] = {"type": type(exc).__name__, "message": str(exc)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
