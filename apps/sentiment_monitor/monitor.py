"""The processing steps: lines in, items saved; pending items scored,
counted in their windows, rules evaluated, alerts saved.

Each step is one database transaction, so a crash between steps loses
nothing and repeats nothing:

1. :meth:`Monitor.ingest`: parse lines (bad ones to the dead-letter file),
   find the entities, save the items as *pending* with the source's new
   position.
2. :meth:`Monitor.score_pending`: send the oldest pending items to the model
   in one Predict request; then, in ingest order, count each item in its
   entity buckets (unless it is later than the allowed lateness), evaluate
   the rules on every window holding it, and save the alerts with one
   pending delivery per sink.  If the model is unavailable the items stay
   pending and :class:`~apps.sentiment_monitor.scoring.ScoringUnavailable`
   propagates.

Items are processed one by one in ingest order, so the alerts depend only on
the input order, not on batch boundaries or on where a crash happened: a
replay yields the same alert ids, which the store refuses twice.

Example::

    monitor = Monitor(config, store, scorer)
    monitor.ingest("file:news.jsonl", batch.lines, batch.position)
    while monitor.score_pending():
        pass
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from apps.sentiment_monitor import rules
from apps.sentiment_monitor.alerts import Alert, alert_id
from apps.sentiment_monitor.config import MonitorConfig
from apps.sentiment_monitor.entities import EntityExtractor
from apps.sentiment_monitor.ingest import DeadLetters
from apps.sentiment_monitor.items import BadItem, Item, Score, parse_item
from apps.sentiment_monitor.store import COUNTED, LATE, Store
from apps.sentiment_monitor.windows import Figures, bucket_start, is_too_late, windows_containing

log = logging.getLogger(__name__)

NEWEST_EVENT_TIME = "newest_event_time"


class Scorer(Protocol):
    """What the monitor needs of a scorer (see :class:`~apps.sentiment_monitor.scoring.SentimentScorer`)."""

    def score(self, texts: Sequence[str]) -> list[Score]: ...


@dataclass
class IngestResult:
    added: int = 0  # new items saved
    duplicates: int = 0  # ids seen before
    rejected: list[str] = field(default_factory=list)  # reasons of the lines sent to the dead-letter file


class Monitor:
    def __init__(self, config: MonitorConfig, store: Store, scorer: Scorer, *,
                 dead_letters: DeadLetters | None = None, sink_keys: Sequence[str] | None = None,
                 on_alert: Callable[[Alert], None] | None = None) -> None:
        self.config = config
        self.store = store
        self.scorer = scorer
        self.extractor = EntityExtractor.from_config(config.entities)
        self.dead_letters = dead_letters or DeadLetters(config.ingest.dead_letter_path)
        self.sink_keys = tuple(sink_keys if sink_keys is not None else (s.key for s in config.delivery.sinks))
        self.on_alert = on_alert  # called after the alert is committed (e.g. to wake the deliverers)

    # -- step 1 -------------------------------------------------------------------------

    def ingest(self, source_key: str, lines: Sequence[tuple[int, bytes]], position: str | None, *,
               default_source: str = "") -> IngestResult:
        items: list[tuple[Item, tuple[str, ...]]] = []
        rejected = []
        for where, line in lines:
            try:
                item = parse_item(line, default_source=default_source,
                                  max_text_chars=self.config.ingest.max_text_chars)
            except BadItem as reason:
                rejected.append(str(reason))
                self.dead_letters.write(source_key, where, line, str(reason))
                continue
            items.append((item, self.extractor.extract(item.text, item.tickers)))
        with self.store.transaction():
            added = self.store.add_items(source_key, items, position)
        return IngestResult(added, len(items) - added, rejected)

    # -- step 2 -------------------------------------------------------------------------

    def score_pending(self, limit: int | None = None) -> int:
        """Scores and processes up to one batch of pending items; returns how many."""
        pending = self.store.pending(limit or self.config.scoring.batch_size)
        if not pending:
            return 0
        scores = self.scorer.score([item.text for item, _, _ in pending])
        alerts: list[Alert] = []
        with self.store.transaction():
            newest_text = self.store.state(NEWEST_EVENT_TIME)
            newest = float(newest_text) if newest_text is not None else None
            for (item, entities, _), score in zip(pending, scores, strict=True):
                if is_too_late(item.timestamp, newest, self.config.windows.allowed_lateness_seconds):
                    self.store.finish_item(item.id, score, LATE)
                    continue
                self.store.finish_item(item.id, score, COUNTED)
                for entity in entities:
                    alerts.extend(self._count(entity, item, score))
                newest = item.timestamp if newest is None else max(newest, item.timestamp)
            if newest is not None:
                self.store.set_state(NEWEST_EVENT_TIME, repr(newest))
        for alert in alerts:
            log.info("alert %s %s", alert.alert_id, alert.summary())
            if self.on_alert is not None:
                self.on_alert(alert)
        return len(pending)

    def _count(self, entity: str, item: Item, score: Score) -> list[Alert]:
        windows = self.config.windows
        slide = windows.slide_seconds
        self.store.add_item_entity(entity, item, score)
        self.store.add_to_bucket(entity, bucket_start(item.timestamp, slide), Figures.one(score.label, score.value))
        alerts: list[Alert | None] = []
        hit = rules.strong_negative(self.config.rules.strong_negative, score, item.source)
        if hit is not None:
            alerts.append(self._raise(hit, entity, item, score, item.timestamp, item.timestamp, item.id))
        # Every window holding the item has changed, so each is evaluated now (alerts fire early, without
        # waiting for the window to close); the cooldown keeps overlapping windows from repeating an alert.
        spans = windows_containing(item.timestamp, size=windows.size_seconds, slide=slide)
        buckets = self.store.buckets(entity, spans[0][0] - windows.baseline_seconds, spans[-1][1])
        for start, end in spans:
            window = Figures.total(f for b, f in buckets.items() if start <= b < end)
            baseline = Figures.total(f for b, f in buckets.items() if start - windows.baseline_seconds <= b < start)
            for hit in (rules.negative_share(self.config.rules.negative_share, window),
                        rules.baseline_shift(self.config.rules.baseline_shift, window, baseline)):
                if hit is not None:
                    alerts.append(self._raise(hit, entity, item, score, start, end))
        return [a for a in alerts if a is not None]

    def _raise(self, hit: rules.RuleHit, entity: str, item: Item, score: Score, start: float, end: float,
               item_key: str = "") -> Alert | None:
        """Saves the alert unless it is a duplicate or within the cooldown of the same entity and rule."""
        if self.store.in_cooldown(entity, hit.rule, item.timestamp, self.config.rules.cooldown_seconds):
            return None
        alert = Alert(
            alert_id=alert_id(hit.rule, entity, start, end, item_key), rule=hit.rule, entity=entity,
            severity=hit.severity, window_start=start, window_end=end, trigger_time=item.timestamp,
            trigger_item_id=item.id, figures=hit.figures,
            evidence=tuple(self._evidence(entity, item, score, start, end)), created_at=time.time())
        return alert if self.store.add_alert(alert, self.sink_keys) else None

    def _evidence(self, entity: str, item: Item, score: Score, start: float, end: float) -> list[dict]:
        if start == end:  # A single-item rule: the item is the evidence.
            return [{"id": item.id, "timestamp": item.timestamp, "text": item.text, "source": item.source,
                     "label": score.label, "p_negative": round(score.negative, 4)}]
        return self.store.most_negative(entity, start, end, self.config.rules.evidence_items)
