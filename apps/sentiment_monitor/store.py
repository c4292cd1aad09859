"""The database: processed items and their scores, each source's read
position, window aggregates (per entity and bucket), alerts and their
delivery status, and the dead letters (lines and items that could not be
processed, with the stage and the reason), in SQLite (default) or
PostgreSQL.

All SQL of the app is here.  Statements are written once with ``?``
placeholders and portable SQL (``ON CONFLICT``); :class:`Dialect` supplies
the few differences.  A :class:`Store` holds one connection: open one per
thread (SQLite connections are not shared across threads, and each sink's
delivery worker has its own).

Example:

>>> import tempfile, os
>>> store = Store.open("sqlite:///" + os.path.join(tempfile.mkdtemp(), "state.db"))
>>> from apps.sentiment_monitor.items import Item
>>> with store.transaction():
...     store.add_item("file:news.jsonl", Item("n1", 60.0, "Nokia cuts jobs"), ("NOK",))
...     store.set_position("file:news.jsonl", "42")
'added'
>>> store.position("file:news.jsonl"), [i.id for i, _, _ in store.pending(10)]
('42', ['n1'])
>>> with store.transaction():                      # the same id with other text: a conflict, not a no-op
...     [store.add_item("file:news.jsonl", Item("n1", 60.0, text), ()) for text in ("Nokia hires", "Nokia cuts jobs")]
['conflict', 'duplicate']
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apps.sentiment_monitor.alerts import Alert
from apps.sentiment_monitor.items import Item, Score, item_to_record
from apps.sentiment_monitor.windows import Figures

PENDING, COUNTED, LATE, DEAD = "pending", "counted", "late", "dead"  # dead: in the dead letters, not counted
# dead_lettered: the retry budget is spent; still retried at the capped back-off, and `replay` sends it now.
DELIVERED, RETRYING, DEAD_LETTERED = "delivered", "retrying", "dead_lettered"
ADDED, DUPLICATE, CONFLICT = "added", "duplicate", "conflict"  # what add_item did
HEAD_CHARS = 4096  # of a dead-lettered line: enough to diagnose it, bounded for a 1 GiB line


class StoreError(RuntimeError):
    """The database cannot be opened or used; the message says which and why."""


@dataclass(frozen=True)
class Dialect:
    name: str
    placeholder: str
    serial_key: str  # an auto-incrementing integer primary key


SQLITE = Dialect("sqlite", "?", "INTEGER PRIMARY KEY AUTOINCREMENT")
POSTGRES = Dialect("postgresql", "%s", "BIGSERIAL PRIMARY KEY")

SCHEMA = """
CREATE TABLE IF NOT EXISTS items (
    seq {serial_key},
    id TEXT NOT NULL UNIQUE,
    source_key TEXT NOT NULL,
    source TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    text TEXT NOT NULL,
    tickers TEXT NOT NULL,
    entities TEXT NOT NULL,
    status TEXT NOT NULL,
    label TEXT,
    p_negative DOUBLE PRECISION,
    p_neutral DOUBLE PRECISION,
    p_positive DOUBLE PRECISION,
    ingested_at DOUBLE PRECISION NOT NULL,
    scored_at DOUBLE PRECISION
);
CREATE INDEX IF NOT EXISTS items_status ON items (status, seq);
CREATE TABLE IF NOT EXISTS item_entities (
    entity TEXT NOT NULL,
    item_id TEXT NOT NULL,
    ts DOUBLE PRECISION NOT NULL,
    p_negative DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (entity, item_id)
);
CREATE INDEX IF NOT EXISTS item_entities_time ON item_entities (entity, ts);
CREATE TABLE IF NOT EXISTS positions (
    source_key TEXT PRIMARY KEY,
    position TEXT NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS buckets (
    entity TEXT NOT NULL,
    bucket_start DOUBLE PRECISION NOT NULL,
    count INTEGER NOT NULL,
    negative INTEGER NOT NULL,
    neutral INTEGER NOT NULL,
    positive INTEGER NOT NULL,
    score_sum DOUBLE PRECISION NOT NULL,
    score_sq_sum DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (entity, bucket_start)
);
CREATE TABLE IF NOT EXISTS state (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS alerts (
    alert_id TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    entity TEXT NOT NULL,
    severity TEXT NOT NULL,
    window_start DOUBLE PRECISION NOT NULL,
    window_end DOUBLE PRECISION NOT NULL,
    trigger_time DOUBLE PRECISION NOT NULL,
    trigger_item_id TEXT NOT NULL,
    figures TEXT NOT NULL,
    evidence TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_entity_rule ON alerts (entity, rule, trigger_time);
CREATE TABLE IF NOT EXISTS deliveries (
    alert_id TEXT NOT NULL,
    sink TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at DOUBLE PRECISION NOT NULL,
    last_error TEXT NOT NULL,
    delivered_at DOUBLE PRECISION,
    PRIMARY KEY (alert_id, sink)
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (sink, status, next_attempt_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq {serial_key},
    line_key TEXT UNIQUE,
    source_key TEXT NOT NULL,
    position BIGINT,
    stage TEXT NOT NULL,
    reason TEXT NOT NULL,
    line TEXT NOT NULL,
    line_bytes BIGINT NOT NULL,
    item_id TEXT,
    created_at DOUBLE PRECISION NOT NULL
);
UPDATE deliveries SET status = 'dead_lettered' WHERE status = 'failed'
"""

ALERT_COLUMNS = ("alert_id, rule, entity, severity, window_start, window_end, trigger_time, trigger_item_id, "
                 "figures, evidence, created_at")


def _alert_from_row(row: Sequence[Any]) -> Alert:
    return Alert(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], json.loads(row[8]),
                 tuple(json.loads(row[9])), row[10])


class Store:
    """One connection to the state database."""

    def __init__(self, connection: Any, dialect: Dialect) -> None:
        self._connection = connection
        self.dialect = dialect
        self._depth = 0  # nested transaction() calls join the outer one
        self._lock = threading.Lock()

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, url: str) -> Store:
        """``sqlite:///relative.db``, ``sqlite:////absolute.db`` or ``postgresql://...``; creates the tables."""
        if url.startswith("sqlite:///"):
            path = Path(url[len("sqlite:///"):])
            if not path.parent.is_dir():
                raise StoreError(f"store.url {url}: the directory {path.parent} does not exist")
            # Autocommit mode; transaction() issues BEGIN IMMEDIATE so concurrent writers queue up.
            connection: Any = sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA synchronous=FULL")  # a committed position survives a power cut
            store = cls(connection, SQLITE)
        elif url.startswith(("postgresql://", "postgres://")):
            try:
                import psycopg
            except ImportError:
                raise StoreError("store.url is PostgreSQL but psycopg is not installed: pip install "
                                 "'psycopg[binary]'") from None
            try:
                connection = psycopg.connect(url, autocommit=True, connect_timeout=10)
            except psycopg.OperationalError as exc:
                raise StoreError(f"cannot connect to PostgreSQL at {_redact(url)}: {exc}") from None
            store = cls(connection, POSTGRES)
        else:
            raise StoreError(f"store.url must start with sqlite:/// or postgresql://, got {_redact(url)!r}")
        store._create_schema()
        return store

    def _create_schema(self) -> None:
        with self.transaction():
            for statement in SCHEMA.format(serial_key=self.dialect.serial_key).split(";"):
                if statement.strip():
                    self._connection.execute(statement)

    def close(self) -> None:
        self._connection.close()

    # -- plumbing -----------------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        return statement if self.dialect.placeholder == "?" else statement.replace("?", self.dialect.placeholder)

    def _execute(self, statement: str, params: Sequence[Any] = ()) -> Any:
        return self._connection.execute(self._sql(statement), tuple(params))

    def _rows(self, statement: str, params: Sequence[Any] = ()) -> list[tuple]:
        return list(self._execute(statement, params).fetchall())

    @contextmanager
    def savepoint(self) -> Iterator[Store]:
        """Inside :meth:`transaction`: what fails in here is undone alone, the transaction goes on."""
        if self.dialect is SQLITE:
            with _sqlite_block(self._connection, "SAVEPOINT item", "RELEASE item", "ROLLBACK TO item", "RELEASE item"):
                yield self
        else:
            with self._connection.transaction():  # psycopg: nested means a savepoint
                yield self

    def ping(self) -> None:
        """Raises if the database cannot be reached (tells a bad item from a lost connection)."""
        self._rows("SELECT 1")

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """All statements inside commit together or not at all; nesting joins the outer transaction."""
        with self._lock:
            self._depth += 1
            outer = self._depth == 1
        try:
            if not outer:
                yield self
                return
            if self.dialect is SQLITE:
                with _sqlite_block(self._connection, "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK"):
                    yield self
            else:
                with self._connection.transaction():
                    yield self
        finally:
            with self._lock:
                self._depth -= 1

    # -- sources ------------------------------------------------------------------------

    def position(self, source_key: str) -> str | None:
        rows = self._rows("SELECT position FROM positions WHERE source_key = ?", (source_key,))
        return rows[0][0] if rows else None

    def set_position(self, source_key: str, position: str) -> None:
        self._execute("INSERT INTO positions (source_key, position, updated_at) VALUES (?, ?, ?) "
                      "ON CONFLICT (source_key) DO UPDATE SET position = excluded.position, "
                      "updated_at = excluded.updated_at", (source_key, position, time.time()))

    def add_item(self, source_key: str, item: Item, entities: tuple[str, ...]) -> str:
        """Stores a new item as pending: :data:`ADDED`; the same id, text and time again (a re-read line):
        :data:`DUPLICATE`, a no-op; the id with other text or time: :data:`CONFLICT`, nothing stored."""
        cursor = self._execute(
            "INSERT INTO items (id, source_key, source, ts, text, tickers, entities, status, ingested_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
            (item.id, source_key, item.source, item.timestamp, item.text, json.dumps(list(item.tickers)),
             json.dumps(list(entities)), PENDING, time.time()))
        if cursor.rowcount == 1:
            return ADDED
        [(text, ts)] = self._rows("SELECT text, ts FROM items WHERE id = ?", (item.id,))
        return DUPLICATE if (text, ts) == (item.text, item.timestamp) else CONFLICT

    # -- dead letters -------------------------------------------------------------------

    def add_dead_letter(self, source_key: str, position: int | None, stage: str, reason: str, line: bytes | str,
                        *, line_bytes: int | None = None, item_id: str | None = None,
                        line_key: str | None = None) -> bool:
        """Records what could not be processed; a ``line_key`` seen before (a line re-read after a crash)
        is not recorded twice.  Returns whether it was new."""
        text = line if isinstance(line, str) else line[:HEAD_CHARS * 4].decode("utf-8", "backslashreplace")
        size = line_bytes if line_bytes is not None else len(line.encode() if isinstance(line, str) else line)
        # Stored as text both databases take: no NUL, no lone surrogate; the head only.
        text = text[:HEAD_CHARS].replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode()
        cursor = self._execute(
            "INSERT INTO dead_letters (line_key, source_key, position, stage, reason, line, line_bytes, item_id, "
            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (line_key) DO NOTHING",
            (line_key, source_key, position, stage, reason[:1000], text, size, item_id, time.time()))
        return cursor.rowcount == 1

    def kill_item(self, item: Item, stage: str, reason: str) -> None:
        """A stored item that a later stage cannot process: status dead, and into the dead letters."""
        self._execute("UPDATE items SET status = ? WHERE id = ?", (DEAD, item.id))
        rows = self._rows("SELECT source_key FROM items WHERE id = ?", (item.id,))
        self.add_dead_letter(rows[0][0] if rows else "", None, stage, reason, json.dumps(item_to_record(item)),
                             item_id=item.id, line_key=f"item:{item.id}")

    def dead_letters(self, limit: int | None = None, *, newest_first: bool = False) -> list[dict]:
        """Dead letters, oldest (or newest) first."""
        statement = ("SELECT source_key, position, stage, reason, line, line_bytes, item_id, created_at "
                     f"FROM dead_letters ORDER BY seq{' DESC' if newest_first else ''}")
        rows = self._rows(statement + " LIMIT ?", (limit,)) if limit is not None else self._rows(statement)
        return [{"source": r[0], "position": r[1], "stage": r[2], "reason": r[3], "line": r[4], "line_bytes": r[5],
                 "item_id": r[6], "created_at": r[7]} for r in rows]

    def dead_letter_counts(self) -> dict[str, int]:
        """``{stage: number of dead letters}``."""
        return dict(self._rows("SELECT stage, COUNT(*) FROM dead_letters GROUP BY stage"))

    # -- items --------------------------------------------------------------------------

    def pending(self, limit: int) -> list[tuple[Item, tuple[str, ...], int]]:
        """The oldest pending items (ingest order): ``(item, entities, seq)``."""
        rows = self._rows("SELECT id, ts, text, tickers, source, entities, seq FROM items WHERE status = ? "
                          "ORDER BY seq LIMIT ?", (PENDING, limit))
        return [(Item(r[0], r[1], r[2], tuple(json.loads(r[3])), r[4]), tuple(json.loads(r[5])), r[6])
                for r in rows]

    def finish_item(self, item_id: str, score: Score, status: str) -> None:
        """Saves the item's score and status (counted or late)."""
        self._execute("UPDATE items SET status = ?, label = ?, p_negative = ?, p_neutral = ?, p_positive = ?, "
                      "scored_at = ? WHERE id = ?",
                      (status, score.label, score.negative, score.neutral, score.positive, time.time(), item_id))

    def item_counts(self) -> dict[str, int]:
        """``{status: number of items}``."""
        return {status: count for status, count in self._rows("SELECT status, COUNT(*) FROM items GROUP BY status")}

    def scored_items(self) -> list[dict]:
        rows = self._rows("SELECT id, ts, text, source, entities, status, label, p_negative, p_neutral, p_positive "
                          "FROM items WHERE status <> ? ORDER BY seq", (PENDING,))
        return [{"id": r[0], "timestamp": r[1], "text": r[2], "source": r[3], "entities": json.loads(r[4]),
                 "status": r[5], "label": r[6], "p_negative": r[7], "p_neutral": r[8], "p_positive": r[9]}
                for r in rows]

    def state(self, key: str) -> str | None:
        rows = self._rows("SELECT value FROM state WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_state(self, key: str, value: str) -> None:
        self._execute("INSERT INTO state (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET "
                      "value = excluded.value", (key, value))

    # -- aggregates ---------------------------------------------------------------------

    def add_to_bucket(self, entity: str, bucket_start: float, f: Figures) -> None:
        self._execute(
            "INSERT INTO buckets (entity, bucket_start, count, negative, neutral, positive, score_sum, score_sq_sum) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (entity, bucket_start) DO UPDATE SET "
            "count = buckets.count + excluded.count, negative = buckets.negative + excluded.negative, "
            "neutral = buckets.neutral + excluded.neutral, positive = buckets.positive + excluded.positive, "
            "score_sum = buckets.score_sum + excluded.score_sum, "
            "score_sq_sum = buckets.score_sq_sum + excluded.score_sq_sum",
            (entity, bucket_start, f.count, f.negative, f.neutral, f.positive, f.score_sum, f.score_sq_sum))

    def buckets(self, entity: str, start: float, end: float) -> dict[float, Figures]:
        """``{bucket_start: figures}`` for buckets starting in ``[start, end)``."""
        rows = self._rows("SELECT bucket_start, count, negative, neutral, positive, score_sum, score_sq_sum "
                          "FROM buckets WHERE entity = ? AND bucket_start >= ? AND bucket_start < ?",
                          (entity, start, end))
        return {r[0]: Figures(*r[1:]) for r in rows}

    def all_buckets(self) -> dict[str, dict[float, Figures]]:
        """Every entity's buckets (for charts)."""
        result: dict[str, dict[float, Figures]] = {}
        for r in self._rows("SELECT entity, bucket_start, count, negative, neutral, positive, score_sum, "
                            "score_sq_sum FROM buckets ORDER BY entity, bucket_start"):
            result.setdefault(r[0], {})[r[1]] = Figures(*r[2:])
        return result

    def add_item_entity(self, entity: str, item: Item, score: Score) -> None:
        self._execute("INSERT INTO item_entities (entity, item_id, ts, p_negative) VALUES (?, ?, ?, ?) "
                      "ON CONFLICT (entity, item_id) DO NOTHING", (entity, item.id, item.timestamp, score.negative))

    def most_negative(self, entity: str, start: float, end: float, limit: int) -> list[dict]:
        """The evidence: the entity's most negative counted items in ``[start, end)``."""
        rows = self._rows(
            "SELECT i.id, i.ts, i.text, i.source, i.label, e.p_negative FROM item_entities e "
            "JOIN items i ON i.id = e.item_id WHERE e.entity = ? AND e.ts >= ? AND e.ts < ? AND i.status = ? "
            "ORDER BY e.p_negative DESC, i.id LIMIT ?", (entity, start, end, COUNTED, limit))
        return [{"id": r[0], "timestamp": r[1], "text": r[2], "source": r[3], "label": r[4],
                 "p_negative": round(r[5], 4)} for r in rows]

    # -- alerts -------------------------------------------------------------------------

    def in_cooldown(self, entity: str, rule: str, trigger_time: float, cooldown: float) -> bool:
        """Whether an alert of this entity and rule was raised within ``cooldown`` (event time) of this one."""
        rows = self._rows("SELECT 1 FROM alerts WHERE entity = ? AND rule = ? AND trigger_time > ? "
                          "AND trigger_time < ? LIMIT 1",
                          (entity, rule, trigger_time - cooldown, trigger_time + cooldown))
        return bool(rows)

    def add_alert(self, alert: Alert, sinks: Sequence[str]) -> bool:
        """Stores the alert and one pending delivery per sink; False if this alert id exists already."""
        cursor = self._execute(
            f"INSERT INTO alerts ({ALERT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (alert_id) DO NOTHING",
            (alert.alert_id, alert.rule, alert.entity, alert.severity, alert.window_start, alert.window_end,
             alert.trigger_time, alert.trigger_item_id, json.dumps(alert.figures), json.dumps(list(alert.evidence)),
             alert.created_at))
        if cursor.rowcount != 1:
            return False
        for sink in sinks:
            self._execute("INSERT INTO deliveries (alert_id, sink, status, attempts, next_attempt_at, last_error) "
                          "VALUES (?, ?, ?, 0, 0, '')", (alert.alert_id, sink, RETRYING))
        return True

    def alerts(self, limit: int | None = None) -> list[Alert]:
        """Alerts, newest event time first."""
        statement = f"SELECT {ALERT_COLUMNS} FROM alerts ORDER BY trigger_time DESC, alert_id"
        if limit is not None:
            return [_alert_from_row(r) for r in self._rows(statement + " LIMIT ?", (limit,))]
        return [_alert_from_row(r) for r in self._rows(statement)]

    # -- deliveries ---------------------------------------------------------------------

    def due_deliveries(self, sink: str, now: float, limit: int = 50) -> list[tuple[str, int]]:
        """This sink's deliveries whose next attempt is due, longest waiting first (new ones in the order
        they were raised): ``(alert id, attempts so far)``; dead-lettered ones too (they are retried at the
        capped back-off)."""
        return self._rows("SELECT d.alert_id, d.attempts FROM deliveries d JOIN alerts a ON a.alert_id = d.alert_id "
                          "WHERE d.sink = ? AND d.status IN (?, ?) AND d.next_attempt_at <= ? "
                          "ORDER BY d.next_attempt_at, a.created_at, d.alert_id LIMIT ?",
                          (sink, RETRYING, DEAD_LETTERED, now, limit))

    def alert(self, alert_id: str) -> Alert:
        [row] = self._rows(f"SELECT {ALERT_COLUMNS} FROM alerts WHERE alert_id = ?", (alert_id,))
        return _alert_from_row(row)

    def record_attempt(self, alert_id: str, sink: str, *, status: str, attempts: int, next_attempt_at: float = 0.0,
                       error: str = "") -> None:
        self._execute("UPDATE deliveries SET status = ?, attempts = ?, next_attempt_at = ?, last_error = ?, "
                      "delivered_at = ? WHERE alert_id = ? AND sink = ?",
                      (status, attempts, next_attempt_at, error[:500], time.time() if status == DELIVERED else None,
                       alert_id, sink))

    def undelivered(self) -> int:
        """Deliveries within their retry budget, still to be attempted (the dead-lettered ones not counted)."""
        return self._rows("SELECT COUNT(*) FROM deliveries WHERE status = ?", (RETRYING,))[0][0]

    def deliveries(self, status: str | None = None) -> list[dict]:
        where, params = (" WHERE status = ?", (status,)) if status else ("", ())
        rows = self._rows(f"SELECT alert_id, sink, status, attempts, last_error FROM deliveries{where} "
                          "ORDER BY alert_id, sink", params)
        return [{"alert_id": r[0], "sink": r[1], "status": r[2], "attempts": r[3], "last_error": r[4]} for r in rows]

    def delivery_counts(self) -> dict[str, int]:
        """``{status: number of deliveries}``."""
        return dict(self._rows("SELECT status, COUNT(*) FROM deliveries GROUP BY status"))

    def alert_dead_letters(self, limit: int | None = None) -> list[dict]:
        """The alert dead-letter queue: deliveries past their retry budget, with their alert, oldest first."""
        statement = ("SELECT d.alert_id, d.sink, d.attempts, d.last_error, d.next_attempt_at, a.rule, a.entity, "
                     "a.severity, a.trigger_time FROM deliveries d JOIN alerts a ON a.alert_id = d.alert_id "
                     "WHERE d.status = ? ORDER BY a.created_at, d.alert_id, d.sink")
        params: tuple = (DEAD_LETTERED,)
        if limit is not None:
            statement, params = statement + " LIMIT ?", (DEAD_LETTERED, limit)
        return [{"alert_id": r[0], "sink": r[1], "attempts": r[2], "last_error": r[3], "next_attempt_at": r[4],
                 "rule": r[5], "entity": r[6], "severity": r[7], "trigger_time": r[8]}
                for r in self._rows(statement, params)]

    def replay(self, *, sink: str | None = None, alert_id: str | None = None) -> int:
        """Makes dead-lettered deliveries (of one sink, or one alert) due now; returns how many."""
        statement = "UPDATE deliveries SET status = ?, next_attempt_at = 0 WHERE status = ?"
        params: list[Any] = [RETRYING, DEAD_LETTERED]
        for column, value in (("sink", sink), ("alert_id", alert_id)):
            if value is not None:
                statement += f" AND {column} = ?"
                params.append(value)
        return self._execute(statement, params).rowcount


@contextmanager
def _sqlite_block(connection: sqlite3.Connection, begin: str, commit: str, *rollback: str) -> Iterator[None]:
    """``begin``, then ``commit``, or the ``rollback`` statements if anything inside raises (the
    connection is in autocommit mode: the store issues these itself)."""
    connection.execute(begin)
    try:
        yield
    except BaseException:
        for statement in rollback:
            connection.execute(statement)
        raise
    connection.execute(commit)


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    credentials, host = rest.rsplit("@", 1)
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
