"""Poison pills and outages, one test per row of issue 20's table, on SQLite and PostgreSQL.

Each test feeds a demo stream with the bad line (or the fault) mixed in through the monitor's own
steps (a followed file, the store, the rules, a webhook receiver on loopback) and, once the fault
has cleared, asserts the two count invariants:

- lines in = items stored + lines dead-lettered (+ identical replays, which are no-ops);
- per sink, alerts raised = alerts delivered + alerts in the alert dead-letter queue.

The scores come from the demo templates each headline was made from, so the alerts are exact; the
model itself is in the chaos test and in test_sentiment_monitor_e2e.py.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections import Counter
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from apps.sentiment_monitor import cli
from apps.sentiment_monitor.config import load_config
from apps.sentiment_monitor.dashboard import dashboard_data
from apps.sentiment_monitor.delivery import deliver_due
from apps.sentiment_monitor.demo_stream import Surge, demo_items
from apps.sentiment_monitor.ingest import DeadLetters, FileFollower
from apps.sentiment_monitor.items import (
    BadItem,
    ItemLimits,
    Score,
    item_to_record,
    parse_item,
)
from apps.sentiment_monitor.metrics import delivery_metrics_registry
from apps.sentiment_monitor.monitor import PROBE_TEXT, Monitor
from apps.sentiment_monitor.scoring import ScoringError
from apps.sentiment_monitor.sinks import build_sink
from apps.sentiment_monitor.store import Store
from tests.apps.test_sentiment_monitor_sinks import Receiver
from tfx_pipeline.demo_data import SENTIMENT_TEMPLATES

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


class TemplateScorer:
    """Scores a demo headline by the template it was made from (0.92 for that label), anything else
    neutral; refuses the texts in ``refused`` (raises) and answers NaN for those in ``nan``."""

    def __init__(self) -> None:
        self.patterns = []
        for label, templates in SENTIMENT_TEMPLATES.items():
            for template in templates:
                pattern = re.escape(template).replace(r"\{co\}", ".*").replace(r"\{n\}", r"\d+")
                self.patterns.append((re.compile(pattern.replace(r"\{day\}", r"\w+")), label))
        self.refused: set[str] = set()
        self.nan: set[str] = set()

    def score(self, texts):
        if self.refused & set(texts):
            raise ScoringError("INVALID_ARGUMENT: the model cannot read this text")
        return [self._one(text) for text in texts]

    def _one(self, text: str) -> Score:
        if text in self.nan:
            return Score("neutral", float("nan"), float("nan"), float("nan"))
        label = next((label for pattern, label in self.patterns if pattern.search(text)), "neutral")
        p = {name: 0.92 if name == label else 0.04 for name in ("negative", "neutral", "positive")}
        return Score(label, p["negative"], p["neutral"], p["positive"])


def good_lines(count: int = 300, seed: int = 5) -> list[bytes]:
    items = demo_items(count, start=T0, seed=seed, surge=Surge(start=0.3, duration=0.4))
    return [json.dumps(item_to_record(item)).encode() for item in items]


def bad(record: dict) -> bytes:
    return json.dumps(record).encode()


class Pipeline:
    """The monitor's steps as the app's loop runs them: a followed file, a real store, a webhook."""

    def __init__(self, store_url: str, tmp_path: Path, receiver: Receiver, **overrides) -> None:
        self.config = load_config(overrides={
            "store.url": store_url, "ingest.dead_letter_path": str(tmp_path / "dead.jsonl"),
            "rules.cooldown_seconds": 1200,
            "delivery.sinks": [{"kind": "webhook", "url": receiver.url, "timeout_seconds": 0.5}],
            "delivery.max_attempts": 3, "delivery.initial_backoff_seconds": 0.01,
            "delivery.max_backoff_seconds": 0.05, **overrides})
        self.store = Store.open(store_url)
        self.scorer = TemplateScorer()
        self.monitor = Monitor(self.config, self.store, self.scorer)
        self.news = tmp_path / "news.jsonl"
        self.follower = FileFollower(self.news, "file:news", max_line_bytes=self.config.ingest.max_line_bytes)
        self.sink = build_sink(self.config.delivery.sinks[0])
        self.lines_in = 0

    def feed(self, lines: list[bytes]) -> None:
        with self.news.open("ab") as handle:
            handle.writelines(line + b"\n" for line in lines)
        self.lines_in += len(lines)
        while (batch := self.follower.read(self.store.position(self.follower.key), 64)).position is not None:
            self.monitor.ingest(self.follower.key, batch.lines, batch.position)
            while self.monitor.score_pending():
                pass

    def deliver(self, timeout: float = 60.0) -> None:
        """Delivery passes until every delivery is delivered or dead-lettered."""
        deadline = time.monotonic() + timeout
        while self.store.undelivered():
            assert time.monotonic() < deadline, self.store.deliveries()
            deliver_due(self.store, self.sink, self.config.delivery)
            time.sleep(0.01)

    def dead(self) -> list[dict]:
        return self.store.dead_letters()

    def assert_lines_accounted(self, identical_replays: int = 0) -> None:
        counts = self.store.item_counts()
        stored = sum(n for status, n in counts.items() if status != "dead")
        dead = len(self.dead())
        assert "pending" not in counts, counts
        assert self.lines_in == stored + dead + identical_replays, (self.lines_in, counts, dead)
        print(f"[counts] lines in {self.lines_in} = items stored {stored} + dead-lettered {dead}"
              f" + identical replays {identical_replays}")

    def assert_alerts_accounted(self) -> Counter:
        statuses = Counter(d["status"] for d in self.store.deliveries())
        assert len(self.store.alerts()) == statuses["delivered"] + statuses["dead_lettered"], statuses
        assert statuses["retrying"] == 0
        print(f"[counts] alerts raised {len(self.store.alerts())} = delivered {statuses['delivered']}"
              f" + in the alert dead-letter queue {statuses['dead_lettered']}")
        return statuses

    def close(self) -> None:
        self.store.close()


def run_stream(store_url, tmp_path, receiver, bad_lines: list[bytes], **overrides) -> Pipeline:
    """The demo stream with ``bad_lines`` in its middle, processed and delivered."""
    lines = good_lines()
    pipeline = Pipeline(store_url, tmp_path, receiver, **overrides)
    pipeline.feed(lines[:150] + bad_lines + lines[150:])
    pipeline.deliver()
    return pipeline


def assert_good_items_all_stored(pipeline: Pipeline) -> None:
    expected = {json.loads(line)["id"] for line in good_lines()}
    assert {i["id"] for i in pipeline.store.scored_items()} >= expected
    assert len(pipeline.store.alerts()) >= 3, "the surge raises alerts"
    assert {d["status"] for d in pipeline.store.deliveries()} == {"delivered"}


def test_lone_surrogate_is_dead_lettered_and_the_stream_goes_on(store_url, tmp_path, receiver):
    lines = [b'{"id": "bad-surrogate", "timestamp": "2026-01-01T01:00:00Z", "text": "Nokia \\ud800 cuts jobs"}',
             b'{"id": "bad-\\udfff", "timestamp": "2026-01-01T01:00:00Z", "text": "Nokia cuts jobs"}']
    pipeline = run_stream(store_url, tmp_path, receiver, lines)
    assert [(d["stage"], d["reason"]) for d in pipeline.dead()] == [
        ("validate", "field 'text' holds a lone surrogate U+D800 at character 6 (not encodable as UTF-8)"),
        ("validate", "field 'id' holds a lone surrogate U+DFFF at character 4 (not encodable as UTF-8)")]
    assert pipeline.dead()[0]["line"] == lines[0].decode(), "the line is kept as it came"
    assert_good_items_all_stored(pipeline)
    pipeline.assert_lines_accounted()
    pipeline.assert_alerts_accounted()


def test_json_nested_100000_deep_is_dead_lettered(store_url, tmp_path, receiver):
    deep = b'{"id": "deep", "timestamp": 1767229200, "text": "Nokia", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    pipeline = run_stream(store_url, tmp_path, receiver, [deep])
    [dead] = pipeline.dead()
    assert (dead["stage"], dead["reason"]) == ("parse", "JSON nested more than 32 levels deep (ingest.max_json_depth)")
    assert dead["line_bytes"] == len(deep) and dead["line"].startswith('{"id": "deep"')
    assert_good_items_all_stored(pipeline)
    pipeline.assert_lines_accounted()
    pipeline.assert_alerts_accounted()
    # With the bound set above Python's recursion limit, the parser's RecursionError is caught as well.
    with pytest.raises(BadItem, match="deeper than the parser's recursion limit"):
        parse_item(deep, limits=ItemLimits(max_json_depth=10_000_000))


def test_nul_is_dead_lettered_alike_on_both_stores(store_url, tmp_path, receiver):
    escaped = b'{"id": "nul", "timestamp": "2026-01-01T01:00:00Z", "text": "Nokia\\u0000 cuts jobs"}'
    raw = b'{"id": "nul-raw", "timestamp": "2026-01-01T01:00:00Z", "text": "Nokia\x00 cuts jobs"}'
    pipeline = run_stream(store_url, tmp_path, receiver, [escaped, raw])
    assert [(d["stage"], d["reason"].split(":")[0]) for d in pipeline.dead()] == [
        ("validate", "field 'text' holds a NUL character (U+0000) at character 5"),
        ("parse", "not JSON")]
    assert pipeline.dead()[1]["line"] == raw.decode().replace("\x00", "\\x00"), "stored as text PostgreSQL takes"
    assert_good_items_all_stored(pipeline)
    pipeline.assert_lines_accounted()
    pipeline.assert_alerts_accounted()


def test_millisecond_timestamp_is_refused_and_one_outlier_cannot_move_the_watermark(store_url, tmp_path, receiver):
    (tmp_path / "reference").mkdir()
    reference_receiver = Receiver()
    reference = run_stream(f"sqlite:///{tmp_path / 'reference' / 'state.db'}", tmp_path / "reference",
                           reference_receiver, [])
    reference_receiver.close()
    millis = bad({"id": "millis", "timestamp": 1767232000000, "text": "Nokia cuts 40 jobs as demand weakens"})
    # Within the wall-clock bound, but 30 days ahead of the stream: counted, yet the watermark stays put.
    ahead = bad({"id": "ahead", "timestamp": T0 + 30 * 86400, "text": "Nokia has 12 employees in Finland"})
    pipeline = run_stream(store_url, tmp_path, receiver, [millis, ahead])
    [dead] = pipeline.dead()
    assert dead["stage"] == "validate" and "milliseconds instead of seconds?" in dead["reason"]
    statuses = {i["id"]: i["status"] for i in pipeline.store.scored_items()}
    assert statuses.pop("ahead") == "counted"
    assert statuses == {i["id"]: i["status"] for i in reference.store.scored_items()}, "no item became late"
    assert sorted(a.alert_id for a in pipeline.store.alerts()) == sorted(a.alert_id for a in reference.store.alerts())
    watermark = json.loads(pipeline.store.state("watermark"))["value"]
    assert watermark < T0 + 7 * 3600, "the watermark is where the stream is, not 30 days ahead"
    pipeline.assert_lines_accounted()
    pipeline.assert_alerts_accounted()
    reference.close()


def test_year_minus_1199_is_refused_and_one_bad_alert_never_blocks_the_others(store_url, tmp_path, receiver):
    lines = [bad({"id": "ancient", "timestamp": -99_999_999_999, "text": "Nokia lowers its profit guidance"}),
             bad({"id": "ancient-iso", "timestamp": "-1199-01-01T00:00:00Z", "text": "Nokia cuts 4 jobs"})]
    pipeline = Pipeline(store_url, tmp_path, receiver)
    stream = good_lines()
    pipeline.feed(stream[:150] + lines + stream[150:])
    assert [(d["stage"], d["reason"].split(" ")[0]) for d in pipeline.dead()] == [("validate", "timestamp")] * 2
    assert "before 2000-01-01T00:00:00Z" in pipeline.dead()[0]["reason"]
    # The two oldest alerts: one the receiver refuses, one it holds past the sink's timeout.
    oldest = sorted(pipeline.store.alerts(), key=lambda a: a.created_at)
    receiver.refused, receiver.stuck, receiver.stuck_seconds = {oldest[0].alert_id}, {oldest[1].alert_id}, 1.0
    pipeline.deliver()
    statuses = pipeline.assert_alerts_accounted()
    assert statuses == {"delivered": len(oldest) - 2, "dead_lettered": 2}
    assert {d["alert_id"] for d in pipeline.store.alert_dead_letters()} == {oldest[0].alert_id, oldest[1].alert_id}
    receiver.refused, receiver.stuck = set(), set()  # The fault clears.
    assert cli.main(["replay", "--set", f"store.url={store_url}"]) == 0
    pipeline.deliver()
    assert pipeline.assert_alerts_accounted() == {"delivered": len(oldest)}
    assert Counter(h["Idempotency-Key"] for h, _ in receiver.requests) == {a.alert_id: 1 for a in oldest}
    pipeline.assert_lines_accounted()


def test_webhook_down_past_its_retry_budget_is_dead_lettered_then_delivered(store_url, tmp_path, receiver):
    receiver.down = True
    pipeline = run_stream(store_url, tmp_path, receiver, [], **{"delivery.max_backoff_seconds": 60})
    raised = [a.alert_id for a in pipeline.store.alerts()]
    assert pipeline.assert_alerts_accounted() == {"dead_lettered": len(raised)} and len(raised) >= 3
    assert {d["attempts"] for d in pipeline.store.deliveries()} == {3}
    metrics = generate_latest(delivery_metrics_registry(lambda read: read(pipeline.store))).decode()
    assert f'sentiment_monitor_alert_dead_letters{{sink="webhook"}} {len(raised)}.0' in metrics
    health = dashboard_data(pipeline.store, pipeline.config)["health"]
    assert health["deliveries"] == {"dead_lettered": len(raised)}
    assert len(health["alert_dead_letters"]) == min(len(raised), pipeline.config.dashboard.recent_alerts)
    pipeline.close()

    receiver.down = False  # Back, and the monitor restarted: one alert replayed by hand, the rest retried.
    pipeline = Pipeline(store_url, tmp_path, receiver, **{"delivery.max_backoff_seconds": 60})
    assert cli.main(["replay", "--set", f"store.url={store_url}", "--alert", raised[0]]) == 0
    assert deliver_due(pipeline.store, pipeline.sink, pipeline.config.delivery) == 1
    assert deliver_due(pipeline.store, pipeline.sink, pipeline.config.delivery) == 0, "the rest wait for the back-off"
    later = time.time() + 61  # The capped back-off has passed: retried, no lifetime limit.
    assert deliver_due(pipeline.store, pipeline.sink, pipeline.config.delivery, now=later) == len(raised) - 1
    assert pipeline.assert_alerts_accounted() == {"delivered": len(raised)}
    assert sorted(h["Idempotency-Key"] for h, _ in receiver.requests) == sorted(raised)
    pipeline.lines_in = len(good_lines())
    pipeline.assert_lines_accounted()
    pipeline.close()


def test_line_over_the_size_limit_is_dead_lettered_as_too_long_with_its_head(store_url, tmp_path, receiver):
    huge = b'{"id": "huge", "timestamp": 1767229200, "text": "' + b"x" * (1 << 20) + b'"}'
    pipeline = run_stream(store_url, tmp_path, receiver, [huge])
    [dead] = pipeline.dead()
    assert (dead["stage"], dead["reason"]) == (
        "parse", f"too long: {len(huge)} bytes, more than the 1048576 allowed (ingest.max_line_bytes)")
    assert dead["line_bytes"] == len(huge) and dead["line"] == huge[:4096].decode()
    [copy] = DeadLetters(tmp_path / "dead.jsonl").read()
    assert copy["reason"] == dead["reason"] and copy["line"] == huge[:4096].decode()
    # The same through a source that hands over whole lines (an HTTP body): same reason, same head.
    result = pipeline.monitor.ingest("http", [(1, huge)], None)
    assert result.rejected == [dead["reason"]] and pipeline.dead()[1]["line"] == dead["line"]
    pipeline.lines_in += 1
    assert_good_items_all_stored(pipeline)
    pipeline.assert_lines_accounted()
    pipeline.assert_alerts_accounted()


def test_reused_id_with_other_text_is_a_conflicting_duplicate_and_a_replay_is_a_no_op(store_url, tmp_path, receiver):
    stream = good_lines()
    first = json.loads(stream[10])
    conflicting = bad({**first, "text": "Nokia raises its full-year outlook"})
    pipeline = run_stream(store_url, tmp_path, receiver, [conflicting, stream[10]])
    [dead] = pipeline.dead()
    assert (dead["stage"], dead["reason"]) == (
        "store", f"conflicting duplicate: id {first['id']!r} is stored already with other text or time")
    assert {i["id"]: i["text"] for i in pipeline.store.scored_items()}[first["id"]] == first["text"]
    assert_good_items_all_stored(pipeline)
    pipeline.assert_lines_accounted(identical_replays=1)
    pipeline.assert_alerts_accounted()


def test_what_the_store_or_the_model_refuses_costs_that_item_only(store_url, tmp_path, receiver):
    stream = good_lines()
    # An id PostgreSQL cannot index (SQLite can): the store stage's boundary, with the id bound lifted.
    long_id = bad({"id": secrets.token_hex(20_000), "timestamp": T0 + 3600, "text": "Kone raises its outlook"})
    refused = bad({"id": "refused", "timestamp": T0 + 3600, "text": "Kone headquarters are located in Espoo!"})
    nan = bad({"id": "nan", "timestamp": T0 + 3600, "text": "Kone has 5 employees in Finland!"})
    pipeline = Pipeline(store_url, tmp_path, receiver, **{"ingest.max_id_chars": 100_000})
    pipeline.scorer.refused.add("Kone headquarters are located in Espoo!")
    pipeline.scorer.nan.add("Kone has 5 employees in Finland!")
    pipeline.feed(stream[:150] + [long_id, refused, nan] + stream[150:])
    pipeline.deliver()
    dead = {d["item_id"] or "long": (d["stage"], d["reason"]) for d in pipeline.dead()}
    refusal = "the model refused it: ScoringError: INVALID_ARGUMENT: the model cannot read this text"
    assert dead.pop("refused") == ("score", refusal)
    assert dead.pop("nan") == ("score", "the model returned non-finite probabilities nan, nan, nan")
    if store_url.startswith("postgresql"):
        stage, reason = dead.pop("long")
        assert stage == "store" and reason.startswith("the store refused it: ProgramLimitExceeded")
    assert dead == {}
    assert PROBE_TEXT not in {i["text"] for i in pipeline.store.scored_items()}
    assert_good_items_all_stored(pipeline)
    pipeline.assert_lines_accounted()
    pipeline.assert_alerts_accounted()
