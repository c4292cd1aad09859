"""The alert record and its stable id.

An alert's id is a hash of what makes it *the same alert* (rule, entity and
window, or the item for a single-item rule), never of when it was computed.
So re-processing after a crash yields the same id, the store's primary key
refuses the duplicate, and sinks pass the id on as an idempotency key.

Example:

>>> alert_id("negative_share", "NOK", 3600.0, 7200.0) == alert_id("negative_share", "NOK", 3600.0, 7200.0)
True
>>> alert_id("negative_share", "NOK", 3600.0, 7200.0) == alert_id("negative_share", "NOK", 4200.0, 7800.0)
False
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field

from apps.sentiment_monitor.items import format_timestamp


def alert_id(rule: str, entity: str, window_start: float, window_end: float, item_id: str = "") -> str:
    key = f"{rule}|{entity}|{window_start:.3f}|{window_end:.3f}|{item_id}"
    return "alert-" + hashlib.sha256(key.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class Alert:
    alert_id: str
    rule: str
    entity: str
    severity: str
    window_start: float
    window_end: float
    trigger_time: float  # event time of the item that made the rule fire
    trigger_item_id: str
    figures: dict = field(default_factory=dict)
    evidence: tuple[dict, ...] = ()  # the most negative items of the window
    created_at: float = 0.0  # wall clock

    def to_payload(self) -> dict:
        """The JSON the sinks send (times also as ISO 8601 text)."""
        payload = asdict(self)
        payload["evidence"] = list(self.evidence)
        payload["window"] = {"start": format_timestamp(self.window_start), "end": format_timestamp(self.window_end)}
        payload["trigger_timestamp"] = format_timestamp(self.trigger_time)
        return payload

    def summary(self) -> str:
        """One line for people: ``[critical] NOK negative_share 2026-11-23T09:00Z..10:00Z negative_share=0.83``."""
        figures = " ".join(f"{k}={v}" for k, v in self.figures.items() if k in ("negative_share", "z",
                                                                                  "negative_probability", "count"))
        return (f"[{self.severity}] {self.entity} {self.rule} {format_timestamp(self.window_start)}.."
                f"{format_timestamp(self.window_end)} {figures}")
