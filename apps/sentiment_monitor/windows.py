"""Event-time windows: fixed buckets of ``slide`` seconds, and sliding
windows of ``size`` seconds made of consecutive buckets.

A window is ``[start, end)``; windows start on multiples of the slide.  An
item at time ``t`` falls in ``size / slide`` windows.  Per entity the store
keeps one :class:`Figures` per bucket; a window's figures are the sum of its
buckets', so late items only touch their own bucket.

Example (1 h windows sliding by 20 min):

>>> [(s, e) for s, e in windows_containing(4000.0, size=3600, slide=1200)]
[(1200.0, 4800.0), (2400.0, 6000.0), (3600.0, 7200.0)]
>>> a, b = Figures(2, 1, 0, 1, 0.5, 1.25), Figures(1, 1, 0, 0, -0.9, 0.81)
>>> total = a + b
>>> total.count, round(total.negative_share, 3), round(total.mean, 3)
(3, 0.667, -0.133)
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Figures:
    """Counts and sums of item scores (``P(positive) - P(negative)``) over some span."""

    count: int = 0
    negative: int = 0
    neutral: int = 0
    positive: int = 0
    score_sum: float = 0.0
    score_sq_sum: float = 0.0

    def __add__(self, other: Figures) -> Figures:
        return Figures(self.count + other.count, self.negative + other.negative, self.neutral + other.neutral,
                       self.positive + other.positive, self.score_sum + other.score_sum,
                       self.score_sq_sum + other.score_sq_sum)

    @classmethod
    def one(cls, label: str, score: float) -> Figures:
        return cls(1, int(label == "negative"), int(label == "neutral"), int(label == "positive"), score, score * score)

    @classmethod
    def total(cls, parts: Iterable[Figures]) -> Figures:
        result = cls()
        for part in parts:
            result = result + part
        return result

    @property
    def negative_share(self) -> float:
        return self.negative / self.count if self.count else 0.0

    @property
    def mean(self) -> float:
        return self.score_sum / self.count if self.count else 0.0

    @property
    def std(self) -> float:
        """Population standard deviation of the scores."""
        if not self.count:
            return 0.0
        return math.sqrt(max(0.0, self.score_sq_sum / self.count - self.mean**2))

    def as_dict(self) -> dict:
        return {"count": self.count, "negative": self.negative, "neutral": self.neutral, "positive": self.positive,
                "negative_share": round(self.negative_share, 4), "mean_score": round(self.mean, 4)}


def bucket_start(timestamp: float, slide: float) -> float:
    """The start of the bucket holding ``timestamp``.

    >>> bucket_start(1250.0, 600), bucket_start(1200.0, 600)
    (1200.0, 1200.0)
    """
    return float(math.floor(timestamp / slide) * slide)


def windows_containing(timestamp: float, *, size: float, slide: float) -> list[tuple[float, float]]:
    """Every sliding window ``(start, end)`` that holds ``timestamp``, oldest first."""
    first = bucket_start(timestamp, slide)
    steps = round(size / slide)
    starts = [first - slide * k for k in range(steps - 1, -1, -1)]
    return [(s, s + size) for s in starts]


def is_too_late(timestamp: float, newest_event_time: float | None, allowed_lateness: float) -> bool:
    """An item older than the newest event time seen minus the allowed lateness is not counted.

    >>> is_too_late(100.0, 1000.0, 900.0), is_too_late(99.0, 1000.0, 900.0), is_too_late(5.0, None, 0.0)
    (False, True, False)
    """
    return newest_event_time is not None and timestamp < newest_event_time - allowed_lateness


@dataclass
class Watermark:
    """The event time lateness is measured against: the newest counted event time, but never more than
    ``max_skew`` past the median of the last ``sample`` counted event times.

    One item dated far ahead (a typo, a wrong clock) therefore moves it at most ``max_skew`` past where
    the stream is, instead of making every later item "late"; a real jump (a feed back after a gap)
    moves it once half the recent items have jumped too.

    >>> mark = Watermark(max_skew=300.0, sample=5)
    >>> for t in (1000.0, 1010.0, 1020.0, 9_000_000.0):
    ...     mark.advance(t)
    >>> mark.value          # the outlier moved it 300 s past the median (1015), not to 9,000,000
    1315.0
    >>> mark.is_too_late(1020.0, allowed_lateness=900.0)
    False
    """

    max_skew: float
    sample: int
    value: float | None = None
    recent: list[float] = field(default_factory=list)

    def advance(self, timestamp: float) -> None:
        self.recent = (self.recent + [timestamp])[-self.sample:]
        candidate = min(timestamp, statistics.median(self.recent) + self.max_skew)
        self.value = candidate if self.value is None else max(self.value, candidate)

    def is_too_late(self, timestamp: float, allowed_lateness: float) -> bool:
        return is_too_late(timestamp, self.value, allowed_lateness)

    def to_json(self) -> str:
        return json.dumps({"value": self.value, "recent": self.recent})

    @classmethod
    def from_json(cls, text: str | None, *, max_skew: float, sample: int) -> Watermark:
        if text is None:
            return cls(max_skew, sample)
        data = json.loads(text)
        return cls(max_skew, sample, data["value"], list(data["recent"])[-sample:])
