"""Rule logic of the sentiment monitor: windows, lateness, cooldown,
de-duplication, the three rules, dead letters and read positions; on both
databases (SQLite, and a real PostgreSQL server).

The model is replaced here by a table of exact scores per text, so that the
window figures, and so the rules' thresholds, can be checked to the item.
The model itself is exercised end to end in test_sentiment_monitor_e2e.py.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from apps.sentiment_monitor.config import (
    BaselineShiftRule,
    ConfigError,
    NegativeShareRule,
    RulesConfig,
    StoreConfig,
    StrongNegativeRule,
    load_config,
)
from apps.sentiment_monitor.entities import EntityExtractor
from apps.sentiment_monitor.ingest import DeadLetters, FileFollower
from apps.sentiment_monitor.items import Score, format_timestamp
from apps.sentiment_monitor.monitor import Monitor
from apps.sentiment_monitor.store import Store

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z, a multiple of every window size used here


class TableScorer:
    """Exact scores by text: the rules' arithmetic is checked, not the model."""

    def __init__(self) -> None:
        self.table: dict[str, Score] = {}
        self.calls: list[int] = []

    def add(self, text: str, label: str, p: float) -> str:
        rest = (1 - p) / 2
        probabilities = {name: (p if name == label else rest) for name in ("negative", "neutral", "positive")}
        self.table[text] = Score(label, probabilities["negative"], probabilities["neutral"], probabilities["positive"])
        return text

    def score(self, texts):
        self.calls.append(len(texts))
        return [self.table[t] for t in texts]


def make_config(store_url: str, tmp_path: Path, **rules):
    config = load_config(overrides={"windows.size_seconds": 3600, "windows.slide_seconds": 600,
                                    "windows.allowed_lateness_seconds": 900,
                                    "ingest.dead_letter_path": str(tmp_path / "dead.jsonl")})
    defaults = dict(negative_share=NegativeShareRule(threshold=0.5, min_items=4, critical_share=0.8),
                    baseline_shift=BaselineShiftRule(enabled=False),
                    strong_negative=StrongNegativeRule(min_negative_probability=0.9, sources=("wire",)),
                    cooldown_seconds=1800.0, evidence_items=3)
    defaults.update(rules)
    return dataclasses.replace(config, store=StoreConfig(url=store_url), rules=RulesConfig(**defaults))


class Harness:
    """A monitor over a real store, fed JSON lines as a source would."""

    def __init__(self, config, batch_size: int = 16) -> None:
        self.config = dataclasses.replace(config, scoring=dataclasses.replace(config.scoring, batch_size=batch_size))
        self.store = Store.open(config.store.url)
        self.scorer = TableScorer()
        self.monitor = Monitor(self.config, self.store, self.scorer, sink_keys=("log",))
        self.lines = 0

    def feed(self, *items: tuple[str, float, str, float] | tuple[str, float, str, float, str]) -> None:
        """Each item: (text, seconds after T0, label, probability of the label[, source])."""
        lines = []
        for text, offset, label, p, *source in items:
            self.scorer.add(text, label, p)
            self.lines += 1
            record = {"id": f"item-{self.lines}", "timestamp": format_timestamp(T0 + offset), "text": text,
                      "source": source[0] if source else "news"}
            lines.append((self.lines, json.dumps(record).encode()))
        self.monitor.ingest("test", lines, str(self.lines))
        while self.monitor.score_pending():
            pass

    def alerts(self, rule: str | None = None):
        return sorted((a for a in self.store.alerts() if rule is None or a.rule == rule),
                      key=lambda a: (a.trigger_time, a.alert_id))


def test_negative_share_fires_at_min_items_above_the_threshold_with_evidence(store_url, tmp_path):
    h = Harness(make_config(store_url, tmp_path))
    h.feed(("Nokia cuts 40 jobs", 60, "negative", 0.91), ("Nokia lowers its profit guidance", 120, "negative", 0.97),
           ("Nokia shares drop 8 percent", 180, "negative", 0.8))
    # Fortum: half negative is not *above* a 0.5 threshold.
    h.feed(("Fortum cuts 10 jobs", 60, "negative", 0.9), ("Fortum raises its outlook", 90, "positive", 0.9),
           ("Fortum net sales fell 3 %", 100, "negative", 0.9), ("Fortum wins a contract", 110, "positive", 0.9))
    assert h.alerts() == [], "three items are fewer than min_items=4, and Fortum's share is not above 0.5"

    h.feed(("Nokia operating loss widened", 240, "negative", 0.95))
    [alert] = h.alerts()
    assert (alert.rule, alert.entity, alert.severity) == ("negative_share", "NOK", "critical")
    assert alert.figures == {"negative_share": 1.0, "threshold": 0.5, "count": 4}
    assert alert.window_start <= T0 + 60 and alert.window_end > T0 + 240
    assert alert.window_end - alert.window_start == 3600
    assert [e["text"] for e in alert.evidence] == ["Nokia lowers its profit guidance", "Nokia operating loss widened",
                                                   "Nokia cuts 40 jobs"], "the three most negative, most first"
    assert [d["status"] for d in h.store.deliveries()] == ["retrying"], "one pending delivery per sink"


def test_late_items_within_the_allowed_lateness_count_and_older_ones_do_not(store_url, tmp_path):
    h = Harness(make_config(store_url, tmp_path))
    h.feed(*[(f"Nokia bad news {i}", 60 * i, "negative", 0.9) for i in range(3)])
    # Event time moves on to T0+1530 (four items: one alone would move the watermark only
    # max_watermark_skew_seconds past the median of the recent event times).
    h.feed(*[(f"Elisa appoints a new CFO {i}", 1500 + 10 * i, "neutral", 0.9) for i in range(4)])

    h.feed(("Nokia old bad news", 500, "negative", 0.9))  # 1030 s behind the newest: beyond 900 s.
    assert h.alerts() == []
    statuses = {i["text"]: i["status"] for i in h.store.scored_items()}
    assert statuses["Nokia old bad news"] == "late"
    assert sum(f.count for f in h.store.buckets("NOK", T0 - 7200, T0 + 7200).values()) == 3

    h.feed(("Nokia recent bad news", 700, "negative", 0.9))  # 830 s behind: still counted.
    [alert] = h.alerts()
    assert alert.entity == "NOK" and alert.figures["count"] == 4
    assert alert.trigger_item_id == "item-9"
    assert statuses["Elisa appoints a new CFO 0"] == "counted"


def test_cooldown_suppresses_repeats_per_entity_and_rule_then_fires_again(store_url, tmp_path):
    h = Harness(make_config(store_url, tmp_path))
    h.feed(*[(f"Nokia bad {i}", 60 * i, "negative", 0.9) for i in range(4)])
    h.feed(*[(f"Nokia worse {i}", 900 + 60 * i, "negative", 0.9) for i in range(4)])  # Other windows, within 1800 s.
    assert len(h.alerts()) == 1
    h.feed(*[(f"Kone bad {i}", 1000 + 60 * i, "negative", 0.9) for i in range(4)])  # Another entity: own cooldown.
    assert [a.entity for a in h.alerts()] == ["NOK", "KNEBV"]
    h.feed(*[(f"Nokia again {i}", 7200 + 60 * i, "negative", 0.9) for i in range(4)])  # After the cooldown.
    assert [(a.entity, a.trigger_time - T0) for a in h.alerts()] == [("NOK", 180), ("KNEBV", 1180), ("NOK", 7380)]


def test_the_same_items_again_raise_no_new_alert_and_alerts_do_not_depend_on_batching(store_url, tmp_path):
    items = [(f"Nokia bad {i}", 60 * i, "negative", 0.9) for i in range(10)]
    items += [(f"Neste fine {i}", 30 * i, "positive", 0.9) for i in range(5)]
    config = make_config(store_url, tmp_path, cooldown_seconds=0.0)  # Every window may fire once.
    h = Harness(config, batch_size=1)
    h.feed(*items)
    first = [a.alert_id for a in h.alerts()]
    assert len(first) == len(set(first)) > 1, "without a cooldown, each window fires once"
    assert len({(a.window_start, a.window_end) for a in h.alerts()}) == len(first)

    h.monitor.ingest("test", [(1, json.dumps({"id": "item-1", "timestamp": T0, "text": "Nokia bad 0"}).encode())],
                     "1")  # A re-read line: same id.
    assert h.store.pending(10) == [] and [a.alert_id for a in h.alerts()] == first

    other = tmp_path / "other"
    other.mkdir()
    replay_url = f"sqlite:///{other / 'replay.db'}"
    replay = Harness(make_config(replay_url, other, cooldown_seconds=0.0), batch_size=7)
    replay.feed(*items)
    assert [a.alert_id for a in replay.alerts()] == first, "same input order, same alert ids"
    assert replay.scorer.calls[:2] == [7, 7] and h.scorer.calls[:2] == [1, 1]


def test_baseline_shift_fires_on_a_drop_against_the_entitys_own_history(store_url, tmp_path):
    config = make_config(store_url, tmp_path, negative_share=NegativeShareRule(enabled=False),
                         baseline_shift=BaselineShiftRule(z_threshold=3.0, min_items=5, min_baseline_items=20))
    h = Harness(config)
    # Twenty hours of mostly good news for Fortum: the baseline.
    history = [(f"Fortum good {i}", -20 * 3600 + 3000 * i, "positive" if i % 5 else "neutral", 0.8)
               for i in range(24)]
    h.feed(*history)
    h.feed(*[(f"Fortum mixed {i}", 3600 + 60 * i, "neutral" if i < 2 else "positive", 0.8) for i in range(5)])
    assert h.alerts() == [], "a slightly less positive window is within three standard errors of the baseline"
    h.feed(*[(f"Fortum bad {i}", 7200 + 60 * i, "negative", 0.9) for i in range(5)])
    [alert] = h.alerts()
    assert (alert.rule, alert.entity) == ("baseline_shift", "FORTUM")
    assert alert.figures["z"] <= -3.0 and alert.figures["baseline_count"] >= 20
    assert alert.figures["mean_score"] == pytest.approx(-0.85)


def test_strong_negative_item_alerts_only_from_a_high_priority_source(store_url, tmp_path):
    h = Harness(make_config(store_url, tmp_path))
    h.feed(("Outokumpu cuts 400 jobs", 60, "negative", 0.99, "forum"),
           ("Outokumpu lowers guidance", 120, "negative", 0.85, "wire"))
    assert h.alerts() == []
    h.feed(("Outokumpu shares drop 30 percent after a profit warning", 180, "negative", 0.95, "wire"))
    [alert] = h.alerts()
    assert (alert.rule, alert.entity, alert.severity) == ("strong_negative", "OUT1V", "critical")
    assert alert.window_start == alert.window_end == T0 + 180
    assert [e["id"] for e in alert.evidence] == [alert.trigger_item_id]
    assert alert.figures["negative_probability"] == 0.95


def test_malformed_lines_go_to_the_dead_letter_file_and_the_rest_is_processed(tmp_path):
    h = Harness(make_config(f"sqlite:///{tmp_path / 'state.db'}", tmp_path))
    good = json.dumps({"id": "ok-1", "timestamp": T0, "text": "Kone wins a contract"}).encode()
    lines = [(0, b'{"id": "x", "timestamp": '), (10, b'{"id": "y", "timestamp": "soon", "text": "Kone"}'),
             (20, b"\xff\xfe not utf-8"), (30, good), (40, b'{"id": "z", "timestamp": 1767225600, "text": 5}')]
    h.scorer.add("Kone wins a contract", "positive", 0.9)
    result = h.monitor.ingest("feed", lines, "50")
    assert (result.added, len(result.rejected)) == (1, 4)
    while h.monitor.score_pending():
        pass
    assert h.store.item_counts() == {"counted": 1}
    dead = DeadLetters(tmp_path / "dead.jsonl").read()
    assert [(d["position"], d["reason"].split(":")[0]) for d in dead] == [
        (0, "not JSON"), (10, "timestamp is not ISO 8601"), (20, "not UTF-8"),
        (40, "field 'text' must be text, got int")]
    assert h.store.position("feed") == "50"


def test_file_follower_reads_complete_lines_resumes_and_restarts_a_truncated_file(tmp_path):
    path = tmp_path / "news.jsonl"
    follower = FileFollower(path, "news")
    assert follower.read(None, 10).position is None, "a file that does not exist yet is simply not read"
    path.write_bytes(b"one\n\ntwo\nthr")
    batch = follower.read(None, 10)
    assert batch.lines == [(0, b"one"), (5, b"two")] and batch.position == "9"
    assert follower.read("9", 10).position is None, "a partial line waits for its newline"
    with path.open("ab") as handle:
        handle.write(b"ee\nfour\n")
    assert follower.read("9", 1).lines == [(9, b"three")]
    assert follower.read("15", 10).lines == [(15, b"four")]
    path.write_bytes(b"new\n")  # Replaced by a shorter file.
    assert follower.read("20", 10).lines == [(0, b"new")]


def test_entities_come_from_cashtags_tickers_and_the_watchlist():
    extractor = EntityExtractor.from_config(load_config().entities)
    assert extractor.extract("Stora Enso and Wärtsilä fall; $AAPL up", ("nok",)) == ("AAPL", "NOK", "STERV", "WRT1V")
    assert extractor.extract("Konecranes orders rise; a 5$ fee; US$40") == ()
    watch_only = EntityExtractor({"NOK": ("Nokia",)}, only_watchlist=True)
    assert watch_only.extract("$AAPL and Nokia") == ("NOK",)


def test_configuration_errors_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="windows: size_seconds .* must be a multiple of slide_seconds"):
        load_config(overrides={"windows.size_seconds": 1000, "windows.slide_seconds": 300})
    with pytest.raises(ConfigError, match=r"rules.negative_share.threshold: expected float, got 'high'"):
        load_config(overrides={"rules.negative_share.threshold": "high"})
    bad = tmp_path / "bad.yaml"
    bad.write_text("delivery:\n  sinks:\n    - {kind: pager}\n")
    with pytest.raises(ConfigError, match="unknown kind 'pager'"):
        load_config(bad)


def test_the_docstring_examples_hold():
    import doctest
    import importlib

    modules = ["alerts", "charts", "config", "delivery", "demo_stream", "entities", "ingest", "items", "rules",
               "sinks", "store", "windows"]
    for name in modules:
        result = doctest.testmod(importlib.import_module(f"apps.sentiment_monitor.{name}"))
        assert result.failed == 0 and result.attempted > 0, name


def test_the_shipped_example_configuration_loads():
    config = load_config(Path(__file__).resolve().parents[2] / "apps/sentiment_monitor/example.yaml")
    assert [s.kind for s in config.ingest.sources] == ["file", "directory", "http"]
    assert [s.key for s in config.delivery.sinks] == ["webhook", "slack", "email", "jsonl"]
