"""The single-machine scheduler: the lock keeps runs apart, every run is
logged, fire times follow the cron expression in its time zone.

The scheduled command is a tiny Python program (the scheduler's job is to run
a command; the pipeline itself is tested elsewhere)."""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import time
import zoneinfo
from pathlib import Path

import pytest

from tfx_pipeline.scheduling import cli
from tfx_pipeline.scheduling.config import ScheduleConfig
from tfx_pipeline.scheduling.lock import RunLock
from tfx_pipeline.scheduling.runlog import RunLog
from tfx_pipeline.scheduling.scheduler import EXIT_LOCKED, Scheduler

REPO = Path(__file__).resolve().parents[2]
HELSINKI = zoneinfo.ZoneInfo("Europe/Helsinki")


def write_schedule(tmp_path: Path, command: list[str], cron: str = "0 3 * * *") -> Path:
    import yaml
    path = tmp_path / "schedule.yaml"
    path.write_text(yaml.safe_dump({
        "name": "test-schedule",
        "schedule": {"cron": cron, "timezone": "Europe/Helsinki"},
        "pipeline": {"config": "tfx_pipeline/configs/demo_intent.yaml"},
        "image": "pipeline:1",
        "local": {"lock_file": str(tmp_path / "run.lock"), "log_file": str(tmp_path / "runs.jsonl"),
                  "command": command},
    }))
    return path


def events(tmp_path: Path) -> list[dict]:
    return RunLog(tmp_path / "runs.jsonl", "test-schedule").read()


def test_a_second_scheduler_does_not_run_while_the_first_runs(tmp_path):
    marker = tmp_path / "ran"
    # Each run appends a line to `marker`, then takes a while.
    command = [sys.executable, "-c",
               f"import time; open({str(marker)!r}, 'a').write('x\\n'); time.sleep(2)"]
    schedule = write_schedule(tmp_path, command)
    first = subprocess.Popen([sys.executable, "-m", "tfx_pipeline.scheduling", "run-scheduler", "--schedule",
                              str(schedule), "--once"], cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():  # The first run is under way (and holds the lock).
            assert first.poll() is None, "the first scheduler ended before its run started"
            assert time.monotonic() < deadline, "the first scheduler never started its run"
            time.sleep(0.05)
        second = cli.main(["run-scheduler", "--schedule", str(schedule), "--once"])
        assert second == EXIT_LOCKED
    finally:
        assert first.wait(timeout=30) == 0
    assert marker.read_text() == "x\n", "the command ran twice"
    log = events(tmp_path)
    assert [e["event"] for e in log] == ["start", "skipped", "end"]
    start, skipped, end = log
    assert start["command"] == command
    assert "holds" in skipped["reason"] and str(tmp_path / "run.lock") in skipped["reason"]
    assert end["exit_code"] == 0 and end["duration_s"] >= 2


def test_lock_is_free_again_after_a_run_and_after_a_crash(tmp_path):
    lock_path = tmp_path / "run.lock"
    # A process that takes the lock and dies without releasing it.
    subprocess.run([sys.executable, "-c", "import os, sys; sys.path.insert(0, sys.argv[1]);"
                    "from tfx_pipeline.scheduling.lock import RunLock; assert RunLock(sys.argv[2]).acquire();"
                    "os._exit(9)", str(REPO), str(lock_path)], check=False)
    lock = RunLock(lock_path)
    assert lock.acquire(), "a dead holder's lock must not block"
    assert not RunLock(lock_path).acquire()
    lock.release()
    assert RunLock(lock_path).acquire()


def test_run_log_records_exit_code_and_pipeline_run_id(tmp_path, capsys):
    # Prints what `python -m tfx_pipeline run` prints when done, then fails.
    command = [sys.executable, "-c", "print('run 20261123T030000000000Z of pipeline intent: failed'); "
               "raise SystemExit(3)"]
    assert cli.main(["run-scheduler", "--schedule", str(write_schedule(tmp_path, command)), "--once"]) == 3
    assert "run 20261123T030000000000Z of pipeline intent" in capsys.readouterr().out  # Output is passed on.
    end = events(tmp_path)[-1]
    assert (end["event"], end["exit_code"], end["run_id"]) == ("end", 3, "20261123T030000000000Z")


def test_a_command_that_cannot_start_is_a_logged_failure(tmp_path):
    schedule = write_schedule(tmp_path, [str(tmp_path / "no-such-program")])
    assert cli.main(["run-scheduler", "--schedule", str(schedule), "--once"]) == 127
    assert [(e["event"], e.get("exit_code")) for e in events(tmp_path)] == [("start", None), ("end", 127)]


def test_fire_times_follow_cron_in_the_time_zone_across_dst(tmp_path):
    schedule = ScheduleConfig.from_dict({
        "name": "t", "schedule": {"cron": "30 2 * * *", "timezone": "Europe/Helsinki"},
        "pipeline": {"config": "c.yaml"}, "image": "i",
        "local": {"lock_file": str(tmp_path / "l"), "log_file": str(tmp_path / "j")}})
    scheduler = Scheduler(schedule, ["true"])
    # Clocks go forward on 2026-03-29 at 03:00 EET -> 04:00 EEST; 02:30 still exists that day.
    first = scheduler.next_fire_time(datetime.datetime(2026, 3, 28, 12, 0, tzinfo=HELSINKI))
    second = scheduler.next_fire_time(first)
    assert first.isoformat() == "2026-03-29T02:30:00+02:00"
    assert second.isoformat() == "2026-03-30T02:30:00+03:00"


class FakeClock:
    """Wall time that jumps when slept on and runs `speed` times faster than real time."""

    def __init__(self, start: datetime.datetime, speed: float = 1.0):
        self.time, self.speed, self._real = start, speed, time.monotonic()

    def now(self) -> datetime.datetime:
        real = time.monotonic()
        self.time += datetime.timedelta(seconds=(real - self._real) * self.speed)
        self._real = real
        return self.time

    def sleep(self, seconds: float) -> None:
        self.time += datetime.timedelta(seconds=seconds)


def schedule_in(tmp_path: Path, cron: str, timezone: str) -> ScheduleConfig:
    return ScheduleConfig.from_dict({
        "name": "t", "schedule": {"cron": cron, "timezone": timezone},
        "pipeline": {"config": "c.yaml"}, "image": "i",
        "local": {"lock_file": str(tmp_path / "run.lock"), "log_file": str(tmp_path / "runs.jsonl")}})


def test_scheduler_fires_at_each_cron_time_and_stops_after_max_runs(tmp_path):
    clock = FakeClock(datetime.datetime(2026, 11, 23, 5, 0, tzinfo=HELSINKI))
    scheduler = Scheduler(schedule_in(tmp_path, "0 */6 * * *", "Europe/Helsinki"), [sys.executable, "-c", "pass"],
                          now=clock.now, sleep=clock.sleep)
    assert scheduler.run_forever(max_runs=3) == 0
    log = RunLog(tmp_path / "runs.jsonl", "t").read()
    assert [e["event"] for e in log] == ["start", "end"] * 3
    assert [e["scheduled_for"] for e in log if e["event"] == "start"] == [
        "2026-11-23T06:00:00+02:00", "2026-11-23T12:00:00+02:00", "2026-11-23T18:00:00+02:00"]
    assert all(e["exit_code"] == 0 for e in log if e["event"] == "end")


def test_fire_times_missed_during_a_long_run_are_skipped_not_caught_up(tmp_path):
    # At 1000x, a run of 0.3 s real time lasts five minutes or more on the schedule's clock.
    clock = FakeClock(datetime.datetime(2026, 11, 23, 5, 0, 30, tzinfo=datetime.timezone.utc), speed=1000)
    scheduler = Scheduler(schedule_in(tmp_path, "* * * * *", "UTC"),
                          [sys.executable, "-c", "import time; time.sleep(0.3)"], now=clock.now, sleep=clock.sleep)
    scheduler.run_forever(max_runs=2)
    log = RunLog(tmp_path / "runs.jsonl", "t").read()
    # The second run is as long, so it is followed by skipped minutes too.
    assert [e["event"] for e in log] == ["start", "end", "skipped", "start", "end", "skipped"]
    first, second = (datetime.datetime.fromisoformat(e["scheduled_for"]) for e in log if e["event"] == "start")
    assert first.isoformat() == "2026-11-23T05:01:00+00:00"
    minute = datetime.timedelta(minutes=1)
    skipped = [datetime.datetime.fromisoformat(t) for t in log[2]["scheduled_for"]]
    # Every minute between the two runs was skipped, once, and the second run is not a catch-up of them.
    assert skipped == [first + minute * i for i in range(1, round((second - first) / minute))]
    assert len(skipped) >= 4
    assert log[2]["reason"] == "the previous run was still going"


def test_max_runs_must_be_positive(tmp_path, capsys):
    assert cli.main(["run-scheduler", "--schedule", str(write_schedule(tmp_path, ["true"])),
                     "--max-runs", "0"]) == 2
    assert "--max-runs" in capsys.readouterr().err


def test_sigterm_stops_the_run_and_logs_it(tmp_path):
    child_pid = tmp_path / "child.pid"
    command = [sys.executable, "-c",
               f"import os, time; open({str(child_pid)!r}, 'w').write(str(os.getpid())); time.sleep(60)"]
    scheduler = subprocess.Popen([sys.executable, "-m", "tfx_pipeline.scheduling", "run-scheduler", "--schedule",
                                  str(write_schedule(tmp_path, command)), "--once"], cwd=REPO)
    deadline = time.monotonic() + 30
    while not (child_pid.exists() and child_pid.read_text()):
        assert time.monotonic() < deadline and scheduler.poll() is None, "the run never started"
        time.sleep(0.05)
    scheduler.terminate()
    assert scheduler.wait(timeout=20) == 130
    pid = int(child_pid.read_text())
    with pytest.raises(ProcessLookupError):  # The run was stopped (and reaped), not left behind.
        os.kill(pid, 0)
    end = events(tmp_path)[-1]
    assert (end["event"], end["exit_code"], end["interrupted"]) == ("end", None, "KeyboardInterrupt")
    assert RunLock(tmp_path / "run.lock").acquire(), "the lock was not released"
