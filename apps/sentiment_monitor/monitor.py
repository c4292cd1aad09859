"""The processing steps: lines in, items saved; pending items scored,
counted in their windows, rules evaluated, alerts saved.

Each step is one database transaction, so a crash between steps loses
nothing and repeats nothing:

1. :meth:`Monitor.ingest`: parse and validate lines, find the entities, save
   the items as *pending* with the source's new position.
2. :meth:`Monitor.score_pending`: send the oldest pending items to the model
   in one Predict request; then, in ingest order, count each item in its
   entity buckets (unless it is later than the allowed lateness behind the
   :class:`~apps.sentiment_monitor.windows.Watermark`), evaluate the rules
   on every window holding it, and save the alerts with one pending delivery
   per sink.  If the model is unavailable the items stay pending and
   :class:`~apps.sentiment_monitor.scoring.ScoringUnavailable` propagates.

Every stage is a poison-pill boundary: whatever one line or item does, it
ends stored, dead-lettered (in the store's ``dead_letters`` table, in the
same transaction as the source's position, and in the dead-letter file) with
its stage and reason, or retried; it never stops the others:

- ``parse`` / ``validate``: :class:`~apps.sentiment_monitor.items.BadItem`,
  and any other error of one line's parsing;
- ``store``: an item the database refuses (tried in a savepoint; if the
  database itself is gone, the whole step fails and is retried instead);
  an id seen before with other text or time is a *conflicting duplicate*,
  the same line again a silent no-op;
- ``score``: an item the model refuses while it answers a plain sentence
  (a model that refuses everything is a configuration error, and raised),
  or non-finite probabilities;
- ``window`` / ``alert``: an error counting the item or evaluating the rules
  for it (its savepoint is rolled back, the batch goes on).

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

import dataclasses
import hashlib
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from apps.sentiment_monitor import rules
from apps.sentiment_monitor.alerts import Alert, alert_id
from apps.sentiment_monitor.config import MonitorConfig
from apps.sentiment_monitor.entities import EntityExtractor
from apps.sentiment_monitor.ingest import DeadLetters
from apps.sentiment_monitor.items import BadItem, Item, Score, parse_item
from apps.sentiment_monitor.scoring import ScoringUnavailable
from apps.sentiment_monitor.store import (
    ADDED,
    CONFLICT,
    COUNTED,
    DUPLICATE,
    LATE,
    Store,
)
from apps.sentiment_monitor.windows import (
    Figures,
    Watermark,
    bucket_start,
    windows_containing,
)

log = logging.getLogger(__name__)

WATERMARK = "watermark"
NEWEST_EVENT_TIME = "newest_event_time"  # the watermark's predecessor, read once from older databases
# Scored when one item fails alone: if the model answers this, the item is the problem, not the model.
PROBE_TEXT = "The company published its annual report."


class Scorer(Protocol):
    """What the monitor needs of a scorer (see :class:`~apps.sentiment_monitor.scoring.SentimentScorer`)."""

    def score(self, texts: Sequence[str]) -> list[Score]: ...


@dataclass
class IngestResult:
    added: int = 0  # new items saved
    duplicates: int = 0  # ids seen before with the same text and time (a re-read line)
    rejected: list[str] = field(default_factory=list)  # reasons of the lines dead-lettered


class StageFailure(Exception):
    """An item failed in a stage after scoring; ``stage`` says which."""

    def __init__(self, stage: str, cause: Exception) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.stage = stage


def _line_key(source_key: str, where: int, line: bytes) -> str:
    """Names a line of a re-readable source, so that a re-read after a crash is dead-lettered once."""
    return f"{source_key}@{where}:{hashlib.sha256(line).hexdigest()[:16]}"


class Monitor:
    def __init__(self, config: MonitorConfig, store: Store, scorer: Scorer, *,
                 dead_letters: DeadLetters | None = None, sink_keys: Sequence[str] | None = None,
                 on_alert: Callable[[Alert], None] | None = None) -> None:
        self.config = config
        self.store = store
        self.scorer = scorer
        self.extractor = EntityExtractor.from_config(config.entities)
        self.dead_letters = dead_letters or DeadLetters(Path(config.ingest.dead_letter_path))
        self.sink_keys = tuple(sink_keys if sink_keys is not None else (s.key for s in config.delivery.sinks))
        self.on_alert = on_alert  # called after the alert is committed (e.g. to wake the deliverers)

    # -- step 1 -------------------------------------------------------------------------

    def ingest(self, source_key: str, lines: Sequence[tuple[int, bytes]], position: str | None, *,
               default_source: str = "") -> IngestResult:
        """Saves the lines' items and the source's new position (``None``: a source that cannot be re-read,
        such as an HTTP request) in one transaction; bad lines are dead-lettered in it."""
        result = IngestResult()
        parsed: list[tuple[int, bytes, Item, tuple[str, ...]]] = []
        rejected: list[tuple[int, bytes, str, str]] = []
        now = time.time()
        for where, line in lines:
            try:
                item = parse_item(line, default_source=default_source, limits=self.config.ingest.limits, now=now)
                parsed.append((where, line, item, self.extractor.extract(item.text, item.tickers)))
            except BadItem as reason:
                rejected.append((where, line, reason.stage, str(reason)))
            except Exception as exc:  # A bug in parsing costs this line, not the stream.
                log.exception("%s, line at %s: cannot be parsed", source_key, where)
                rejected.append((where, line, "parse", f"cannot be parsed: {type(exc).__name__}: {exc}"))
        replayable = position is not None
        with self.store.transaction():
            for (where, line, item, _), outcome in zip(parsed, self._store_items(source_key, parsed), strict=True):
                if outcome == ADDED:
                    result.added += 1
                elif outcome == DUPLICATE:
                    result.duplicates += 1
                elif outcome == CONFLICT:
                    conflict = f"conflicting duplicate: id {item.id!r} is stored already with other text or time"
                    rejected.append((where, line, "store", conflict))
                else:
                    rejected.append((where, line, "store", outcome))
            for where, line, stage, why in sorted(rejected, key=lambda r: r[0]):
                self.dead_letter(source_key, where, line, why, stage=stage, replayable=replayable)
                result.rejected.append(why)
            if position is not None:
                self.store.set_position(source_key, position)
        return result

    def dead_letter(self, source_key: str, where: int, line: bytes, reason: str, *, stage: str = "parse",
                    replayable: bool = False) -> None:
        """Records a rejected line (its head, if long) with the reason, in the store and the dead-letter file.

        Inside :meth:`ingest`'s transaction, or on its own (an HTTP body the transport could not split
        into lines, say).  ``replayable``: the source is re-read after a crash, so the same line at the
        same place is recorded once."""
        with self.store.transaction():
            size = getattr(line, "size", len(line))  # a LineHead knows the whole line's length
            key = _line_key(source_key, where, line) if replayable else None
            if self.store.add_dead_letter(source_key, where, stage, reason, line, line_bytes=size, line_key=key):
                self.dead_letters.write(source_key, where, line, reason, stage=stage, line_bytes=size)

    def _store_items(self, source_key: str, parsed: Sequence[tuple[int, bytes, Item, tuple[str, ...]]]) -> list[str]:
        """What :meth:`Store.add_item` did per item, or why the database refused the item."""
        try:
            with self.store.savepoint():
                return [self.store.add_item(source_key, item, entities) for _, _, item, entities in parsed]
        except Exception:  # noqa: BLE001  One item refused: find which, one savepoint each.
            self.store.ping()  # The database itself gone is no item's fault: fail the step, retry it later.
        outcomes = []
        for _, _, item, entities in parsed:
            try:
                with self.store.savepoint():
                    outcomes.append(self.store.add_item(source_key, item, entities))
            except Exception as exc:  # noqa: BLE001
                self.store.ping()
                log.warning("%s: the store refused item %r: %s", source_key, item.id, exc)
                outcomes.append(f"the store refused it: {type(exc).__name__}: {exc}")
        return outcomes

    # -- step 2 -------------------------------------------------------------------------

    def score_pending(self, limit: int | None = None) -> int:
        """Scores and processes up to one batch of pending items; returns how many."""
        pending = self.store.pending(limit or self.config.scoring.batch_size)
        if not pending:
            return 0
        scores = self._score([item.text for item, _, _ in pending])
        alerts: list[Alert] = []
        with self.store.transaction():
            mark = self._watermark()
            for (item, entities, _), score in zip(pending, scores, strict=True):
                if isinstance(score, str):
                    self.store.kill_item(item, "score", score)
                    continue
                trial = dataclasses.replace(mark, recent=list(mark.recent))
                try:
                    with self.store.savepoint():
                        alerts.extend(self._process(item, entities, score, trial))
                except StageFailure as failure:
                    self.store.ping()
                    log.error("item %r dead-lettered at the %s stage: %s", item.id, failure.stage, failure)
                    self.store.kill_item(item, failure.stage, str(failure))
                    continue
                mark = trial
            self.store.set_state(WATERMARK, mark.to_json())
        for alert in alerts:
            log.info("alert %s %s", alert.alert_id, alert.summary())
            if self.on_alert is not None:
                self.on_alert(alert)
        return len(pending)

    def _watermark(self) -> Watermark:
        windows = self.config.windows
        mark = Watermark.from_json(self.store.state(WATERMARK), max_skew=windows.max_watermark_skew_seconds,
                                   sample=windows.watermark_sample)
        newest = self.store.state(NEWEST_EVENT_TIME)
        if mark.value is None and newest is not None:
            mark.value = float(newest)
        return mark

    def _score(self, texts: list[str]) -> list[Score | str]:
        """A score per text, or the reason the model cannot score that text (a poison pill)."""
        try:
            return [_checked(score) for score in self.scorer.score(texts)]
        except ScoringUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001
            if len(texts) > 1:  # Find the text(s) at fault: one request each.
                return [result for text in texts for result in self._score([text])]
            try:
                self.scorer.score([PROBE_TEXT])
            except ScoringUnavailable:
                raise
            except Exception:  # noqa: BLE001  It refuses everything: the model or its configuration.
                raise exc from None
            log.warning("the model refuses one text but answers others: %s", exc)
            return [f"the model refused it: {type(exc).__name__}: {exc}"]

    def _process(self, item: Item, entities: tuple[str, ...], score: Score, mark: Watermark) -> list[Alert]:
        """Counts one scored item and evaluates the rules of its windows; StageFailure says where it failed."""
        try:
            if mark.is_too_late(item.timestamp, self.config.windows.allowed_lateness_seconds):
                self.store.finish_item(item.id, score, LATE)
                return []
            self.store.finish_item(item.id, score, COUNTED)
            for entity in entities:
                self.store.add_item_entity(entity, item, score)
                self.store.add_to_bucket(entity, bucket_start(item.timestamp, self.config.windows.slide_seconds),
                                         Figures.one(score.label, score.value))
            mark.advance(item.timestamp)
        except Exception as exc:
            raise StageFailure("window", exc) from exc
        try:
            return [alert for entity in entities for alert in self._evaluate(entity, item, score)]
        except Exception as exc:
            raise StageFailure("alert", exc) from exc

    def _evaluate(self, entity: str, item: Item, score: Score) -> list[Alert]:
        windows = self.config.windows
        alerts: list[Alert | None] = []
        hit = rules.strong_negative(self.config.rules.strong_negative, score, item.source)
        if hit is not None:
            alerts.append(self._raise(hit, entity, item, score, item.timestamp, item.timestamp, item.id))
        # Every window holding the item has changed, so each is evaluated now (alerts fire early, without
        # waiting for the window to close); the cooldown keeps overlapping windows from repeating an alert.
        spans = windows_containing(item.timestamp, size=windows.size_seconds, slide=windows.slide_seconds)
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


def _checked(score: Score) -> Score | str:
    """The score, or why it cannot be counted (a NaN would poison every window sum it joins)."""
    if all(math.isfinite(p) for p in (score.negative, score.neutral, score.positive)):
        return score
    return f"the model returned non-finite probabilities {score.negative}, {score.neutral}, {score.positive}"
