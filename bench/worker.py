"""Run one bench job in this (fresh) process: ``python bench/worker.py JOB TMPDIR PARAMS_JSON``.

Writes the job's result as JSON to ``TMPDIR/result.json`` (stdout is left to the systems
measured, some of which print).
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from jobs import JOBS


def main() -> int:
    name, tmp, params = sys.argv[1], Path(sys.argv[2]), json.loads(sys.argv[3])
    out = tmp / "result.json"
    try:
        result = JOBS[name](tmp, params)
    except Exception as exc:  # reported in the table, never hidden
        out.write_text(
            json.dumps(
                {"error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()}
            )
        )
        return 1
    out.write_text(json.dumps(result, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
