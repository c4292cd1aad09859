"""A deterministic, time-stamped demo stream of headlines and posts.

The headlines use the companies and templates of the project's demo
training data (:mod:`suite_core.demo_text`), so the tiny demo model scores
them sensibly.  Mentions vary (company name, cashtag, explicit ``tickers``);
sources are ``wire`` (high priority), ``news`` and ``forum``.  The stream has
a *negative surge* for one company, a few items arriving out of order
within the allowed lateness, one arriving far too late, and optionally some
malformed lines for the dead-letter file.

Example:

>>> items = list(demo_items(count=200, start=1_700_000_000.0, seed=3))
>>> len(items), items[-1].id                       # 200 items, then the straggler
(201, 'demo-3-straggler')
>>> sum("Nokia" in i.text or "NOK" in i.tickers or "$NOK" in i.text for i in items) > 20
True
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from apps.sentiment_monitor.items import Item, item_to_record
from suite_core.demo_text import COMPANIES, DAYS, SENTIMENT_TEMPLATES

TICKERS = {"Nokia": "NOK", "Fortum": "FORTUM", "Kone": "KNEBV", "Stora Enso": "STERV", "Elisa": "ELISA",
           "Wartsila": "WRT1V", "Sampo": "SAMPO", "Neste": "NESTE", "UPM": "UPM", "Outokumpu": "OUT1V"}
MALFORMED = [
    '{"id": "bad-json", "timestamp": "2026-01-01T00:00:00Z", "text": "truncated',
    '{"id": "bad-time", "timestamp": "yesterday", "text": "Nokia cuts jobs"}',
    '{"id": "", "timestamp": 1700000000, "text": "no id"}',
    '["not", "an", "object"]',
]


@dataclass(frozen=True)
class Surge:
    """``company`` gets mostly negative news, ``rate`` times as often, from ``start`` for ``duration``
    (both fractions of the stream's span)."""

    company: str = "Nokia"
    start: float = 0.6
    duration: float = 0.15
    negative_share: float = 0.85
    rate: float = 4.0


def _mention(rng: random.Random, company: str, text: str) -> tuple[str, tuple[str, ...]]:
    roll = rng.random()
    if roll < 0.2:  # cashtag
        return text.replace(company, f"{company} (${TICKERS[company]})", 1), ()
    if roll < 0.3:  # explicit ticker, name dropped
        return text.replace(company, "The company", 1), (TICKERS[company],)
    return text, ()


def demo_items(count: int = 1000, *, start: float = 1_767_225_600.0, span_seconds: float = 6 * 3600,
               seed: int = 11, surge: Surge | None = Surge(), late_items: int = 5,
               wire_share: float = 0.1) -> Iterator[Item]:
    """``count`` items over ``span_seconds`` from ``start`` (event time), in arrival order."""
    rng = random.Random(seed)
    surge_start = start + (surge.start * span_seconds if surge else 0.0)
    surge_end = surge_start + (surge.duration * span_seconds if surge else 0.0)
    step = span_seconds / count
    late_at = set(rng.sample(range(count // 4, count), min(late_items, count // 4))) if late_items else set()
    for i in range(count):
        ts = start + i * step + rng.uniform(0, step)
        if surge is not None and surge_start <= ts < surge_end and rng.random() < 1 - 1 / surge.rate:
            company = surge.company
            label = "negative" if rng.random() < surge.negative_share else rng.choice(["neutral", "positive"])
        else:
            company = rng.choice(COMPANIES)
            label = rng.choices(["neutral", "positive", "negative"], weights=[45, 40, 15])[0]
        template = rng.choice(SENTIMENT_TEMPLATES[label])
        text = template.format(co=company, n=rng.randint(2, 60), day=rng.choice(DAYS))
        text, tickers = _mention(rng, company, text)
        source = "wire" if rng.random() < wire_share else rng.choice(["news", "news", "forum"])
        if i in late_at:  # Arrives now but happened a while ago (within the default 15 min lateness).
            ts -= rng.uniform(60, 600)
        yield Item(f"demo-{seed}-{i:06d}", round(ts, 3), text, tickers, source)
    if late_items:  # One straggler far beyond any sensible lateness: stored, not counted.
        yield Item(f"demo-{seed}-straggler", start, f"{COMPANIES[0]} lowers its profit guidance", (), "news")


def write_stream(path: Path, items: Iterator[Item] | list[Item], *, malformed: bool = False,
                 seed: int = 11) -> int:
    """Writes the items as JSON lines (with the malformed lines spread in); returns the lines written."""
    rng = random.Random(seed)
    lines = [json.dumps(item_to_record(item)) for item in items]
    if malformed:
        for bad in MALFORMED:
            lines.insert(rng.randrange(len(lines) + 1), bad)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
    return len(lines)
