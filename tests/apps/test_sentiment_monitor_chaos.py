"""Chaos: the monitor as its own process (``python -m apps.sentiment_monitor run``) against the real
model server, on a stream with one of each bad line of issue 20 mixed in, killed with SIGKILL at
three random points and restarted, while the webhook is down far longer than its retry budget.

It ends, once the webhook is back, with every good item scored exactly once, every bad line
dead-lettered exactly once with its reason, the alerts of an uninterrupted replay, and every
alert delivered: lines in = items stored + lines dead-lettered, alerts raised = alerts delivered
(+ 0 left in the alert dead-letter queue).  The full 2,000-line run is slow; the default run has
a 400-line stream with the same faults.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pytest
import yaml

from apps.sentiment_monitor import cli
from apps.sentiment_monitor.demo_stream import MALFORMED, Surge, demo_items
from apps.sentiment_monitor.items import item_to_record
from apps.sentiment_monitor.store import Store
from tests.apps.test_sentiment_monitor_crash import (
    MonitorProcess,
    assert_replayed_and_delivered,
)
from tests.apps.test_sentiment_monitor_sinks import Receiver, wait_for

START = 1_767_225_600.0


def bad_lines(reused: dict) -> dict[str, bytes]:
    """One of each row of the issue's table (and the classic malformed lines), by the expected stage."""
    at = "2026-01-01T01:00:00Z"
    return {
        "surrogate": b'{"id": "c-surrogate", "timestamp": "%s", "text": "Nokia \\ud800 cuts jobs"}' % at.encode(),
        "deep": b'{"id": "c-deep", "timestamp": 1767229200, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        "nul": b'{"id": "c-nul", "timestamp": "%s", "text": "Nokia\\u0000 cuts jobs"}' % at.encode(),
        "millis": json.dumps({"id": "c-millis", "timestamp": 1767232000000, "text": "Nokia cuts 40 jobs"}).encode(),
        "ancient": json.dumps({"id": "c-ancient", "timestamp": -99_999_999_999, "text": "Nokia cuts jobs"}).encode(),
        "huge": b'{"id": "c-huge", "timestamp": 1767229200, "text": "' + b"x" * (1 << 20) + b'"}',
        "conflict": json.dumps({**reused, "text": "Nokia raises its full-year outlook"}).encode(),
        **{f"malformed-{i}": line.encode() for i, line in enumerate(MALFORMED)},
    }


EXPECTED_REASONS = {
    "surrogate": "field 'text' holds a lone surrogate", "deep": "JSON nested more than 32 levels deep",
    "nul": "field 'text' holds a NUL character", "millis": "milliseconds instead of seconds?",
    "ancient": "is before 2000-01-01T00:00:00Z", "huge": "too long: ",
    "conflict": "conflicting duplicate",
}


def run_chaos(model_server, store_url: str, tmp_path: Path, count: int, seed: int) -> None:
    rng = random.Random(seed)
    items = list(demo_items(count, start=START, seed=seed, surge=Surge(start=0.3, duration=0.4)))
    good = [json.dumps(item_to_record(item)).encode() for item in items]
    bad = bad_lines(item_to_record(items[len(items) // 3]))
    lines = list(good)
    for name, line in bad.items():
        after = lines.index(good[len(items) // 3]) + 1 if name == "conflict" else 0  # after the line it reuses
        lines.insert(rng.randrange(after, len(lines) + 1), line)
    news = tmp_path / "news.jsonl"
    news.write_bytes(b"".join(line + b"\n" for line in lines))

    receiver = Receiver()
    receiver.down = True  # Down from the start until every item is processed and every retry budget spent.
    config = {
        "store": {"url": store_url},
        "ingest": {"sources": [{"kind": "file", "path": str(news)}], "dead_letter_path": str(tmp_path / "dead.jsonl"),
                   "max_lines_per_poll": 64, "poll_seconds": 0.02},
        "scoring": {"address": model_server.grpc_address, "batch_size": 16},
        "rules": {"cooldown_seconds": 1200},
        "delivery": {"sinks": [{"kind": "webhook", "url": receiver.url, "timeout_seconds": 2},
                               {"kind": "jsonl", "path": str(tmp_path / "alerts.jsonl")}],
                     "max_attempts": 3, "initial_backoff_seconds": 0.05, "max_backoff_seconds": 1.0,
                     "poll_seconds": 0.02},
    }
    config_path = tmp_path / "monitor.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log = tmp_path / "monitor.log"
    store = Store.open(store_url)

    def processed() -> int:
        counts = store.item_counts()
        return counts.get("counted", 0) + counts.get("late", 0) + counts.get("dead", 0)

    kill_points = sorted(rng.sample(range(count // 10, count * 9 // 10), 3))
    try:
        with MonitorProcess(config_path, log) as monitor:
            monitor.start()
            for point in kill_points:
                wait_for(lambda point=point: processed() >= point, timeout=300)
                monitor.kill()
                monitor.start()
            wait_for(lambda: processed() == len(items), timeout=300)
            wait_for(lambda: store.deliveries() and all(
                d["status"] == ("dead_lettered" if d["sink"] == "webhook" else "delivered")
                for d in store.deliveries()), timeout=120)
            alerts = store.alerts()
            statuses = Counter((d["sink"], d["status"]) for d in store.deliveries())
            assert statuses == {("webhook", "dead_lettered"): len(alerts), ("jsonl", "delivered"): len(alerts)}, \
                "the webhook's whole queue is in the dead-letter queue; the other sink is not held up"
            receiver.down = False  # Back: the queue is retried every max_backoff_seconds; `replay` sends it now.
            assert cli.main(["replay", "--config", str(config_path), "--sink", "webhook"]) == 0
            wait_for(lambda: all(d["status"] == "delivered" for d in store.deliveries()), timeout=120)
            monitor.stop()
    finally:
        receiver.close()

    scored = store.scored_items()
    assert sorted(i["id"] for i in scored) == sorted(i.id for i in items), "every good item, once"
    assert store.pending(1) == [] and store.item_counts().get("dead", 0) == 0
    dead = store.dead_letters()
    assert len(dead) == len(bad), "every bad line dead-lettered once, whatever the kills"
    by_line = {d["line"][:60]: d for d in dead}
    for name, reason in EXPECTED_REASONS.items():
        assert reason in by_line[bad[name][:4096].decode("utf-8", "backslashreplace")[:60]]["reason"], name
    assert len(lines) == len(scored) + len(dead), "lines in = items stored + lines dead-lettered"

    webhook = assert_replayed_and_delivered(store, config_path, news, tmp_path, receiver, kills=len(kill_points))
    assert store.alert_dead_letters() == []
    print(f"[counts] lines in {len(lines)} = items stored {len(scored)} + dead-lettered {len(dead)}; alerts raised "
          f"{len(alerts)} = delivered {len(webhook)} (webhook, {sum(webhook.values())} requests) + 0 queued; "
          f"killed after {kill_points} items")
    store.close()


def test_chaos_small_stream_killed_three_times_with_the_webhook_down(model_server, store_url, tmp_path):
    run_chaos(model_server, store_url, tmp_path, count=400, seed=71)


@pytest.mark.slow
def test_chaos_2000_line_stream_killed_three_times_with_the_webhook_down(model_server, store_url, tmp_path):
    run_chaos(model_server, store_url, tmp_path, count=2000, seed=72)
