"""The scheduler's run log: one JSON object per line, appended.

Events: `start` (the command, the time it was scheduled for), `end` (exit
code, duration, the pipeline's run id when it printed one) and `skipped`
(why a scheduled run did not start). Every line has `time` (UTC, ISO 8601)
and `schedule` (the schedule's name).

Example:

>>> import tempfile, os
>>> log = RunLog(os.path.join(tempfile.mkdtemp(), "runs.jsonl"), "intent-nightly")
>>> log.write("skipped", reason="demo")["event"]
'skipped'
>>> [e["reason"] for e in log.read()]
['demo']
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any


class RunLog:
    def __init__(self, path: str | os.PathLike, schedule: str):
        self.path = Path(path)
        self.schedule = schedule

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        entry = {"time": utc_now(), "event": event, "schedule": self.schedule, **fields}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One write of one line in append mode: lines from two processes never interleave.
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
        return entry

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
