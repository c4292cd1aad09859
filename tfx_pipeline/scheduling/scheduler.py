"""A single-machine scheduler: runs a command on a cron schedule, one run at a time.

- Fire times come from the cron expression in the schedule's time zone
  (croniter, so daylight-saving changes are handled).
- Each run holds an exclusive file lock (:class:`RunLock`). A second
  scheduler, or a manual `--once`, that fires while a run is going logs
  `skipped` instead of starting a second run: Kubernetes' `Forbid`.
- Fire times that pass while a run is still going are skipped, not caught
  up in a burst afterwards, and logged as `skipped`.
- Every run is logged as JSON lines (:class:`RunLog`): `start`, `end` with
  the exit code, the duration and the pipeline's run id when it printed one.

Example (runs `true` once, now, under the lock):

>>> import tempfile, os
>>> from tfx_pipeline.scheduling.config import ScheduleConfig
>>> tmp = tempfile.mkdtemp()
>>> schedule = ScheduleConfig.from_dict({"name": "demo", "schedule": {"cron": "0 3 * * *"},
...     "pipeline": {"config": "c.yaml"}, "image": "pipeline:1",
...     "local": {"lock_file": f"{tmp}/demo.lock", "log_file": f"{tmp}/demo.jsonl"}})
>>> Scheduler(schedule, ["true"]).run_once().exit_code
0
>>> [e["event"] for e in RunLog(f"{tmp}/demo.jsonl", "demo").read()]
['start', 'end']
"""

from __future__ import annotations

import dataclasses
import datetime
import re
import subprocess
import sys
import time
import zoneinfo
from typing import Callable, Optional, Sequence, TextIO

from croniter import croniter

from tfx_pipeline.scheduling.config import ScheduleConfig
from tfx_pipeline.scheduling.lock import RunLock
from tfx_pipeline.scheduling.runlog import RunLog

# What `python -m tfx_pipeline run` prints first when it finishes: "run <id> of pipeline <name>: <status>".
_RUN_ID = re.compile(r"^run (\S+) of pipeline \S+")
EXIT_LOCKED = 75  # sysexits' EX_TEMPFAIL: another run holds the lock; try again later.
_MAX_SLEEP = 60.0  # Wake up at least this often so a changed wall clock is noticed.


@dataclasses.dataclass(frozen=True)
class RunResult:
    started: bool  # False: skipped because another run held the lock.
    exit_code: Optional[int] = None
    run_id: Optional[str] = None


class Scheduler:
    """Runs `command` at the schedule's fire times.

    `now` and `sleep` are the wall clock; tests may pass a clock of their own
    to cover days of schedule in milliseconds (the command still really runs).
    """

    def __init__(self, schedule: ScheduleConfig, command: Sequence[str], *, out: TextIO | None = None,
                 now: Callable[[], datetime.datetime] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.schedule = schedule
        self.command = list(command)
        self.zone = zoneinfo.ZoneInfo(schedule.schedule.timezone)
        self.lock = RunLock(schedule.local.lock_file)
        self.log = RunLog(schedule.local.log_file, schedule.name)
        self.out = out or sys.stdout
        self._now = now or (lambda: datetime.datetime.now(self.zone))
        self._sleep = sleep

    def now(self) -> datetime.datetime:
        return self._now()

    def next_fire_time(self, after: datetime.datetime) -> datetime.datetime:
        """The first fire time strictly after `after`, in the schedule's time zone."""
        return croniter(self.schedule.schedule.cron, after.astimezone(self.zone)).get_next(datetime.datetime)

    def run_once(self, scheduled_for: Optional[datetime.datetime] = None) -> RunResult:
        """Runs the command now if no other run holds the lock; logs what happened."""
        scheduled = scheduled_for.isoformat() if scheduled_for else None
        if not self.lock.acquire():
            self.log.write("skipped", scheduled_for=scheduled,
                           reason=f"another run holds {self.lock.path} (pid {self.lock.holder() or '?'})")
            return RunResult(started=False)
        try:
            self.log.write("start", scheduled_for=scheduled, command=self.command)
            started = time.monotonic()
            try:
                exit_code, run_id = self._execute()
            except BaseException as error:  # Ctrl-C / SIGTERM: the run was stopped; say so in the log.
                self.log.write("end", scheduled_for=scheduled, exit_code=None, run_id=None,
                               duration_s=round(time.monotonic() - started, 3),
                               interrupted=type(error).__name__)
                raise
            self.log.write("end", scheduled_for=scheduled, exit_code=exit_code, run_id=run_id,
                           duration_s=round(time.monotonic() - started, 3))
            return RunResult(started=True, exit_code=exit_code, run_id=run_id)
        finally:
            self.lock.release()

    def run_forever(self, max_runs: Optional[int] = None) -> int:
        """Fires on the schedule; returns after `max_runs` fire times (never, if None)."""
        fired = 0
        due = self.next_fire_time(self.now())
        while max_runs is None or fired < max_runs:
            wait = (due - self.now()).total_seconds()
            if wait > 0:
                self._sleep(min(wait, _MAX_SLEEP))
                continue
            self.run_once(scheduled_for=due)
            fired += 1
            finished = self.now()
            missed = self._fire_times_between(due, finished)
            if missed:
                self.log.write("skipped", scheduled_for=[t.isoformat() for t in missed],
                               reason="the previous run was still going")
            due = self.next_fire_time(finished)
        return 0

    def _fire_times_between(self, start: datetime.datetime, end: datetime.datetime) -> list[datetime.datetime]:
        times, cursor = [], croniter(self.schedule.schedule.cron, start)
        while (t := cursor.get_next(datetime.datetime)) <= end:
            times.append(t)
        return times

    def _execute(self) -> tuple[int, Optional[str]]:
        """Runs the command, echoing its output and watching for the run id."""
        run_id = None
        try:
            process = subprocess.Popen(self.command, stdout=subprocess.PIPE, text=True, bufsize=1)
        except OSError as error:  # Not found, not executable: a failed run, not a crashed scheduler.
            print(f"error: cannot run {self.command[0]!r}: {error}", file=sys.stderr)
            return 127, None
        assert process.stdout is not None  # stdout=PIPE.
        try:
            for line in process.stdout:
                self.out.write(line)
                if run_id is None and (match := _RUN_ID.match(line)):
                    run_id = match.group(1)
            return process.wait(), run_id
        except BaseException:  # Ctrl-C or SIGTERM: stop the run too, and wait so it is logged as ended.
            process.terminate()
            process.wait()
            raise
