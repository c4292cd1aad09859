"""The item record, and the parsing of one input line into it.

An input line is one JSON object: ``id`` (text), ``timestamp`` (ISO 8601
with a zone, or seconds since the epoch), ``text``, and optionally
``tickers`` (list of text) and ``source`` (text).  Anything else about the
line is a :class:`BadItem` whose message says what is wrong; the caller
sends it to the dead-letter file and carries on.

Example:

>>> item = parse_item('{"id": "n1", "timestamp": "2026-11-23T09:30:00Z", "text": "Nokia cuts 40 jobs", '
...                   '"tickers": ["nok"], "source": "wire"}')
>>> item.id, item.timestamp, item.tickers, item.source
('n1', 1795426200.0, ('NOK',), 'wire')
>>> try:
...     parse_item('{"id": "n2", "text": "no time"}')
... except BadItem as reason:
...     print(reason)
missing field 'timestamp'
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

LABELS = ("negative", "neutral", "positive")  # Financial PhraseBank


class BadItem(ValueError):
    """A line that is not a valid item; the message is the reason."""


@dataclass(frozen=True)
class Item:
    id: str
    timestamp: float  # event time, seconds since the epoch (UTC)
    text: str
    tickers: tuple[str, ...] = ()
    source: str = ""


@dataclass(frozen=True)
class Score:
    """The model's verdict on one text."""

    label: str
    negative: float
    neutral: float
    positive: float

    @property
    def value(self) -> float:
        """One number in [-1, 1]: P(positive) - P(negative)."""
        return self.positive - self.negative


@dataclass(frozen=True)
class ScoredItem:
    item: Item
    score: Score
    entities: tuple[str, ...] = field(default=())
    seq: int = 0  # ingest order; processing follows it


def parse_timestamp(value: object) -> float:
    """Seconds since the epoch from a number or an ISO 8601 text with a zone.

    >>> parse_timestamp("2026-01-02T03:04:05+02:00"), parse_timestamp(1767315845)
    (1767315845.0, 1767315845.0)
    """
    if isinstance(value, bool):
        raise BadItem(f"timestamp must be ISO 8601 text or a number, got {value!r}")
    if isinstance(value, (int, float)):
        if not math.isfinite(value):
            raise BadItem(f"timestamp is not finite: {value!r}")
        return float(value)
    if not isinstance(value, str):
        raise BadItem(f"timestamp must be ISO 8601 text or a number, got {value!r}")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadItem(f"timestamp is not ISO 8601: {value!r}") from None
    if parsed.tzinfo is None:  # A naive time is ambiguous across desks; refuse it.
        raise BadItem(f"timestamp has no time zone: {value!r}")
    return parsed.timestamp()


def format_timestamp(seconds: float) -> str:
    """ISO 8601 in UTC, to the second.

    >>> format_timestamp(1767315845.0)
    '2026-01-02T01:04:05Z'
    """
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text_field(record: dict, name: str, *, required: bool) -> str:
    if name not in record:
        if required:
            raise BadItem(f"missing field {name!r}")
        return ""
    value = record[name]
    if not isinstance(value, str):
        raise BadItem(f"field {name!r} must be text, got {type(value).__name__}")
    return value


def item_from_record(record: object, *, default_source: str = "", max_text_chars: int = 2000) -> Item:
    """An :class:`Item` from a decoded JSON value."""
    if not isinstance(record, dict):
        raise BadItem(f"expected a JSON object, got {type(record).__name__}")
    item_id = _text_field(record, "id", required=True).strip()
    if not item_id:
        raise BadItem("field 'id' is empty")
    if "timestamp" not in record:
        raise BadItem("missing field 'timestamp'")
    timestamp = parse_timestamp(record["timestamp"])
    text = _text_field(record, "text", required=True).strip()
    if not text:
        raise BadItem("field 'text' is empty")
    if len(text) > max_text_chars:
        raise BadItem(f"field 'text' has {len(text)} characters, more than the {max_text_chars} allowed")
    tickers = record.get("tickers", [])
    if not isinstance(tickers, list) or not all(isinstance(t, str) and t.strip() for t in tickers):
        raise BadItem("field 'tickers' must be a list of non-empty texts")
    source = _text_field(record, "source", required=False) or default_source
    return Item(item_id, timestamp, text, tuple(t.strip().lstrip("$").upper() for t in tickers), source)


def parse_item(line: str | bytes, *, default_source: str = "", max_text_chars: int = 2000) -> Item:
    """One JSON line -> :class:`Item`, or :class:`BadItem` saying why not."""
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadItem(f"not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadItem(f"not JSON: {exc.msg} at column {exc.colno}") from None
    return item_from_record(record, default_source=default_source, max_text_chars=max_text_chars)


def item_to_record(item: Item) -> dict:
    """The JSON form of an item (what :func:`parse_item` reads)."""
    record = {"id": item.id, "timestamp": format_timestamp(item.timestamp), "text": item.text}
    if item.tickers:
        record["tickers"] = list(item.tickers)
    if item.source:
        record["source"] = item.source
    return record
