"""The item record, and the parsing of one input line into it.

An input line is one JSON object: ``id`` (text), ``timestamp`` (ISO 8601
with a zone, or seconds since the epoch), ``text``, and optionally
``tickers`` (list of text) and ``source`` (text).  Anything else about the
line is a :class:`BadItem` whose message says what is wrong; the caller
dead-letters it and carries on.

Validation refuses what a later stage could not hold, so that it fails here,
for this line alone, with a reason, instead of in the store or the windows
for every restart (:class:`ItemLimits`): a line over the size limit, JSON
nested too deep, text with a lone surrogate (not UTF-8, so neither database
takes it) or a NUL (PostgreSQL refuses it, SQLite would keep it: refused on
both so that both stores hold the same), an over-long id, and a timestamp
outside the configured range (milliseconds sent as seconds land in year
57971 and are refused, not read as a date).

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
>>> try:
...     parse_item('{"id": "n3", "timestamp": 1767232000000, "text": "Nokia"}', now=1767232000.0)
... except BadItem as reason:
...     print(reason)
timestamp 1767232000000 is after 2026-01-01T02:46:40Z (now + 3600 s); milliseconds instead of seconds?
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Self

LABELS = ("negative", "neutral", "positive")  # Financial PhraseBank


class BadItem(ValueError):
    """A line that is not a valid item; the message is the reason, ``stage`` where it failed
    (``parse``: not a JSON object; ``validate``: a JSON object, but not a valid item)."""

    def __init__(self, reason: str, stage: str = "validate") -> None:
        super().__init__(reason)
        self.stage = stage


@dataclass(frozen=True)
class ItemLimits:
    """What an item may be (``ingest.*`` in the configuration)."""

    max_line_bytes: int = 1 << 20
    max_text_chars: int = 2000
    max_id_chars: int = 200  # PostgreSQL cannot index a key of more than ~2,700 bytes
    max_json_depth: int = 32
    earliest_timestamp: float = 946_684_800.0  # 2000-01-01T00:00:00Z
    max_future_seconds: float = 3600.0  # later than the wall clock by more than this: refused


class LineHead(bytes):
    """The first bytes of a line too long to read whole; ``size`` is the whole line's length."""

    size: int

    def __new__(cls, head: bytes, size: int) -> Self:
        line = super().__new__(cls, head)
        line.size = size
        return line


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
        parsed = datetime.fromisoformat(value)  # Python 3.11 reads "Z" too
    except ValueError:
        raise BadItem(f"timestamp is not ISO 8601: {value!r}") from None
    if parsed.tzinfo is None:  # A naive time is ambiguous across desks; refuse it.
        raise BadItem(f"timestamp has no time zone: {value!r}")
    return parsed.timestamp()


def check_timestamp(seconds: float, raw: object, limits: ItemLimits, now: float) -> float:
    """``seconds`` if it lies in ``[earliest_timestamp, now + max_future_seconds]``, else :class:`BadItem`."""
    latest = now + limits.max_future_seconds
    if seconds > latest:
        hint = "; milliseconds instead of seconds?" if limits.earliest_timestamp <= seconds / 1000 <= latest else ""
        raise BadItem(f"timestamp {raw!r} is after {format_timestamp(latest)} (now + "
                      f"{limits.max_future_seconds:g} s){hint}")
    if seconds < limits.earliest_timestamp:
        raise BadItem(f"timestamp {raw!r} is before {format_timestamp(limits.earliest_timestamp)}, the earliest "
                      "accepted (ingest.earliest_timestamp)")
    return seconds


def format_timestamp(seconds: float) -> str:
    """ISO 8601 in UTC, to the second.

    >>> format_timestamp(1767315845.0)
    '2026-01-02T01:04:05Z'
    """
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):  # Out of datetime's range: still say something.
        return f"{seconds!r} s since the epoch"


_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_text(name: str, value: str) -> str:
    """Text either database stores as given: no lone surrogate (not UTF-8), no NUL (PostgreSQL refuses it)."""
    surrogate = _SURROGATE.search(value)
    if surrogate:
        raise BadItem(f"field {name!r} holds a lone surrogate U+{ord(surrogate.group()):04X} at character "
                      f"{surrogate.start()} (not encodable as UTF-8)")
    nul = value.find("\x00")
    if nul >= 0:
        raise BadItem(f"field {name!r} holds a NUL character (U+0000) at character {nul}")
    return value


def _text_field(record: dict, name: str, *, required: bool) -> str:
    if name not in record:
        if required:
            raise BadItem(f"missing field {name!r}")
        return ""
    value = record[name]
    if not isinstance(value, str):
        raise BadItem(f"field {name!r} must be text, got {type(value).__name__}")
    return _check_text(name, value)


def item_from_record(record: object, *, default_source: str = "", limits: ItemLimits = ItemLimits(),
                     now: float | None = None) -> Item:
    """An :class:`Item` from a decoded JSON value; ``now`` (the wall clock by default) bounds the timestamp."""
    if not isinstance(record, dict):
        raise BadItem(f"expected a JSON object, got {type(record).__name__}")
    item_id = _text_field(record, "id", required=True).strip()
    if not item_id:
        raise BadItem("field 'id' is empty")
    if len(item_id) > limits.max_id_chars:
        raise BadItem(f"field 'id' has {len(item_id)} characters, more than the {limits.max_id_chars} allowed")
    if "timestamp" not in record:
        raise BadItem("missing field 'timestamp'")
    timestamp = check_timestamp(parse_timestamp(record["timestamp"]), record["timestamp"], limits,
                                time.time() if now is None else now)
    text = _text_field(record, "text", required=True).strip()
    if not text:
        raise BadItem("field 'text' is empty")
    if len(text) > limits.max_text_chars:
        raise BadItem(f"field 'text' has {len(text)} characters, more than the {limits.max_text_chars} allowed")
    tickers = record.get("tickers", [])
    if not isinstance(tickers, list) or not all(isinstance(t, str) and t.strip() for t in tickers):
        raise BadItem("field 'tickers' must be a list of non-empty texts")
    for ticker in tickers:
        _check_text("tickers", ticker)
    source = _text_field(record, "source", required=False) or default_source
    return Item(item_id, timestamp, text, tuple(t.strip().lstrip("$").upper() for t in tickers), source)


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether arrays and objects nest deeper than ``limit`` (strings ignored), without recursion.

    >>> json_depth_exceeds('{"a": [[1]], "b": "[[[["}', 3), json_depth_exceeds('[[[[1]]]]', 3)
    (False, True)
    """
    if text.count("[") + text.count("{") <= limit:  # The usual line: too few brackets to matter.
        return False
    depth = 0
    for bracket in re.findall(r'[\[\]{}]', re.sub(r'"(?:[^"\\]|\\.)*"', "", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > limit:
            return True
    return False


def parse_item(line: str | bytes, *, default_source: str = "", limits: ItemLimits = ItemLimits(),
               now: float | None = None) -> Item:
    """One JSON line -> :class:`Item`, or :class:`BadItem` saying why not."""
    size = line.size if isinstance(line, LineHead) else len(line if isinstance(line, bytes) else line.encode())
    if size > limits.max_line_bytes:
        raise BadItem(f"too long: {size} bytes, more than the {limits.max_line_bytes} allowed "
                      "(ingest.max_line_bytes)", stage="parse")
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadItem(f"not UTF-8: {exc.reason} at byte {exc.start}", stage="parse") from None
    if json_depth_exceeds(line, limits.max_json_depth):
        raise BadItem(f"JSON nested more than {limits.max_json_depth} levels deep (ingest.max_json_depth)",
                      stage="parse")
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadItem(f"not JSON: {exc.msg} at column {exc.colno}", stage="parse") from None
    except RecursionError:  # Deeper than Python's recursion limit, should max_json_depth be set above it.
        raise BadItem("JSON nested deeper than the parser's recursion limit", stage="parse") from None
    return item_from_record(record, default_source=default_source, limits=limits, now=now)


def item_to_record(item: Item) -> dict:
    """The JSON form of an item (what :func:`parse_item` reads)."""
    record: dict[str, object] = {"id": item.id, "timestamp": format_timestamp(item.timestamp), "text": item.text}
    if item.tickers:
        record["tickers"] = list(item.tickers)
    if item.source:
        record["source"] = item.source
    return record
