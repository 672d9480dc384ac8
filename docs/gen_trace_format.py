"""Regenerate docs/trace-format.md from the pydantic record models (the single source of truth).

Usage: python docs/gen_trace_format.py
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import TypeAdapter

from calltape.trace import FORMAT_VERSION, Record

INTRO = f"""# Trace format (version {FORMAT_VERSION})

A calltape trace is a JSON Lines file: one JSON object (a *record*) per line, each ending in
`\\n`, appended and never rewritten. The first record is always `run_start`.

| record | when it is written |
|---|---|
| `run_start` | once, when the trace is created (format version, run id, calltape version) |
| `attempt_start` | each time a later process reopens the trace to continue the run |
| `call_start` | **before** the tool runs (write-ahead): tool, fingerprint, occurrence, arguments |
| `call_end` | after the call: status `ok` / `error` / `blocked`, output, error, decision, duration |
| `run_end` | when a session closes: `completed`, `failed` (with the reason), `killed` or `paused`; with the number of records before it and the chain head |
| `run_state` | the run was paused (a durable approval is pending), killed, or runs again |
| `approval` | `calltape approve/deny`: who decided a pending call, when and why |
| `resolution` | `calltape resolve`: a human decided the outcome of a call a crash interrupted |
| `kill` | `calltape kill`: who stopped the run and why |

Every record ends with `"h"`: sha256 (HMAC-SHA256 with a trace key) of the previous record's
`h` and this record's JSON without `h` (see [reliability](reliability.md)).

A blocked or replayed call has its `call_start` and `call_end` written together in one write.
Retried attempts carry `try` and `retry_of`; a fallback call carries `fallback_for`; an
approved or denied call carries `approval`. A `call_end` with status `pending_approval` waits
for a human.
A `call_start` with no `call_end` means the process died inside the call.
A replayed call's `call_end` has `replayed: true` and `replay_of` (the seq of the original),
and no output of its own (the original holds it).

Durability: each record is handed to the OS in one `write(2)` on an `O_APPEND` descriptor
before the call proceeds (a killed process loses nothing already reported);
`durability="fsync"` also fsyncs each record.

Readers tolerate a torn last line (a record cut short by a crash): every intact record is used
and the torn one is reported. A session that reopens such a trace moves the torn bytes to
`<trace>.torn-<time>` first. Any other malformed line is an error naming file and line.

## JSON Schema

Generated from the pydantic models in `core/calltape/trace.py` by
`python docs/gen_trace_format.py`; a test fails when this page is stale.

```json
"""


def main() -> None:
    schema = TypeAdapter(Record).json_schema()
    text = INTRO + json.dumps(schema, indent=2, sort_keys=True) + "\n```\n"
    out = Path(__file__).parent / "trace-format.md"
    out.write_text(text)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
