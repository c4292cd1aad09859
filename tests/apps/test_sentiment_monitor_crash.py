"""Crash and resume: the monitor runs as its own process (``python -m
apps.sentiment_monitor run``), is killed with SIGKILL twice mid-stream, and
restarted.  Afterwards no item is lost or counted twice, the alerts are
exactly those of an uninterrupted replay of the same file, and every alert
reached the webhook and the log; on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Self

import yaml

from apps.sentiment_monitor.backtest import backtest
from apps.sentiment_monitor.config import load_config
from apps.sentiment_monitor.demo_stream import Surge, demo_items, write_stream
from apps.sentiment_monitor.items import item_to_record
from apps.sentiment_monitor.store import Store
from tests.apps.test_sentiment_monitor_sinks import Receiver, wait_for
from tests.conftest import REPO

START = 1_767_225_600.0


def assert_replayed_and_delivered(store: Store, config_path: Path, news: Path, tmp_path: Path, receiver: Receiver, *,
                                  kills: int) -> Counter:
    """The alerts are those of an uninterrupted backtest of ``news``, and each reached the webhook and
    ``alerts.jsonl`` at least once; a kill between a send and its recorded status can repeat that one
    send (same idempotency key), so at most one repeat per kill and sink.  Returns the webhook's count
    per alert id."""
    replay = backtest(load_config(config_path), news, tmp_path / "replay")
    alerts = store.alerts()
    assert len(alerts) >= 3
    assert sorted(a.alert_id for a in alerts) == sorted(a.alert_id for a in replay.alerts), \
        "the alerts of the interrupted run are those of an uninterrupted one"
    webhook = Counter(headers["Idempotency-Key"] for headers, _ in receiver.requests)
    logged = Counter(json.loads(line)["alert_id"] for line in (tmp_path / "alerts.jsonl").read_text().splitlines())
    for received in (webhook, logged):
        assert set(received) == {a.alert_id for a in alerts}, "alerts raised = alerts delivered"
        assert sum(received.values()) - len(received) <= kills, "a repeat only where a kill fell"
    return webhook


class MonitorProcess:
    """``python -m apps.sentiment_monitor run --config CONFIG`` as its own process, logging to ``log``:
    started, killed (SIGKILL) and restarted, stopped (SIGTERM, exit status 0); killed on leaving a
    ``with`` block if still running."""

    def __init__(self, config_path: Path, log: Path) -> None:
        self.config_path, self.log = config_path, log
        self.process: subprocess.Popen | None = None

    def start(self) -> MonitorProcess:
        with self.log.open("a") as handle:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "apps.sentiment_monitor", "run", "--config", str(self.config_path)],
                cwd=REPO, stdout=handle, stderr=subprocess.STDOUT)
        return self

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        assert self.process.wait(60) == 0, self.log.read_text()[-3000:]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()


def test_killed_mid_stream_and_restarted_loses_nothing_and_sends_no_alert_twice(model_server, store_url, tmp_path):
    receiver = Receiver()
    news = tmp_path / "news.jsonl"
    config = {
        "store": {"url": store_url},
        "ingest": {"sources": [{"kind": "file", "path": str(news)}], "dead_letter_path": str(tmp_path / "dead.jsonl"),
                   "max_lines_per_poll": 32, "poll_seconds": 0.02},
        "scoring": {"address": model_server.grpc_address, "batch_size": 8},
        "rules": {"cooldown_seconds": 1200},  # Short, so the stream raises a good number of alerts.
        "delivery": {"sinks": [{"kind": "webhook", "url": receiver.url},
                               {"kind": "jsonl", "path": str(tmp_path / "alerts.jsonl")}], "poll_seconds": 0.02},
    }
    config_path = tmp_path / "monitor.yaml"
    config_path.write_text(yaml.safe_dump(config))
    items = list(demo_items(700, start=START, seed=31, surge=Surge(start=0.3, duration=0.4)))
    half = len(items) // 2
    write_stream(news, items[:half], malformed=True)
    log = tmp_path / "monitor.log"
    store = Store.open(store_url)

    def processed() -> int:
        counts = store.item_counts()
        return counts.get("counted", 0) + counts.get("late", 0)

    try:
        with MonitorProcess(config_path, log) as monitor:
            monitor.start()
            wait_for(lambda: processed() >= 120, timeout=300)
            monitor.kill()
            killed_at = [processed()]
            with news.open("a") as handle:  # The feed goes on while the monitor is down.
                handle.writelines(json.dumps(item_to_record(item)) + "\n" for item in items[half:])

            monitor.start()
            wait_for(lambda: processed() >= killed_at[0] + 200, timeout=300)
            monitor.kill()
            killed_at.append(processed())

            monitor.start()
            wait_for(lambda: processed() == len(items), timeout=300)
            wait_for(lambda: all(d["status"] == "delivered" for d in store.deliveries()), timeout=120)
            monitor.stop()
    finally:
        receiver.close()
    assert killed_at[0] < half and killed_at[1] < len(items), "both kills landed mid-stream"

    scored = store.scored_items()
    assert sorted(i["id"] for i in scored) == sorted(i.id for i in items), "every item exactly once"
    assert store.item_counts() == {"counted": len(items) - 1, "late": 1}

    assert_replayed_and_delivered(store, config_path, news, tmp_path, receiver, kills=2)
    assert {d["status"] for d in store.deliveries()} == {"delivered"}
    store.close()
