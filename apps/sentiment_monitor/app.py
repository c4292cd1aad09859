"""The running monitor: sources polled, items scored, alerts delivered,
optionally the dashboard and the HTTP ingest endpoint.

One main loop does the ingest and scoring steps in order (so alerts depend
only on the input order), waiting with a growing back-off while the model
server is unavailable; the sinks' delivery workers, the dashboard and the
HTTP endpoint run on their own threads with their own database connections.

Example::

    app = MonitorApp(load_config("monitor.yaml"))
    app.run()              # until app.stop() or Ctrl-C
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from apps.sentiment_monitor.config import MonitorConfig, SourceConfig
from apps.sentiment_monitor.dashboard import Dashboard
from apps.sentiment_monitor.delivery import Deliverer
from apps.sentiment_monitor.http_ingest import HttpSource
from apps.sentiment_monitor.ingest import DeadLetters, DirectorySource, FileFollower, StdinSource
from apps.sentiment_monitor.monitor import Monitor
from apps.sentiment_monitor.scoring import ScoringUnavailable, SentimentScorer
from apps.sentiment_monitor.sinks import build_sink
from apps.sentiment_monitor.store import Store

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """What the loop has done so far (for logs, tests and the benchmark)."""

    ingested: int = 0
    processed: int = 0
    rejected: int = 0
    scoring_unavailable: int = 0  # times the model could not be reached
    batch_sizes: list[int] = field(default_factory=list)


class MonitorApp:
    def __init__(self, config: MonitorConfig, *, scorer: SentimentScorer | None = None) -> None:
        self.config = config
        self.store = Store.open(config.store.url)
        self.scorer = scorer or SentimentScorer(config.scoring)
        self.deliverer = Deliverer(config.delivery, [build_sink(s) for s in config.delivery.sinks],
                                   open_store=lambda: Store.open(config.store.url))
        self.monitor = Monitor(config, self.store, self.scorer,
                               dead_letters=DeadLetters(Path(config.ingest.dead_letter_path)),
                               on_alert=lambda alert: self.deliverer.wake())
        self.progress = Progress()
        self._stop = threading.Event()
        sources = config.ingest.sources
        self._files: list[tuple[FileFollower, SourceConfig]] = [
            (FileFollower(Path(s.path), s.key, max_line_bytes=config.ingest.max_line_bytes), s)
            for s in sources if s.kind == "file"]
        self._directories = [(DirectorySource(Path(s.path), s.key, s.pattern,
                                              max_line_bytes=config.ingest.max_line_bytes), s)
                             for s in sources if s.kind == "directory"]
        self._stdin = [(StdinSource(s.key), s) for s in sources if s.kind == "stdin"]
        self._http = [HttpSource(s.key, s.host, s.port,
                                 functools.partial(self._accept_http, default_source=s.default_source),
                                 self._dead_letter_http)
                      for s in sources if s.kind == "http"]
        self._http_lock = threading.Lock()
        self._http_monitor: Monitor | None = None  # opened on the first request
        self.dashboard = Dashboard(config, lambda: Store.open(config.store.url)) if config.dashboard.enabled else None

    # -- sources ------------------------------------------------------------------------

    def _accept_http(self, key: str, lines: list[tuple[int, bytes]], *,
                     default_source: str = "") -> tuple[int, list[str]]:
        with self._http_lock:
            result = self._http_ingest_monitor().ingest(key, lines, None, default_source=default_source)
        self.progress.ingested += result.added
        return result.added + result.duplicates, result.rejected

    def _dead_letter_http(self, key: str, raw: bytes, reason: str) -> None:
        """A request the HTTP transport refused: what arrived of it is dead-lettered with the reason."""
        with self._http_lock:
            self._http_ingest_monitor().dead_letter(key, 0, raw, reason, stage="transport")
        self.progress.rejected += 1

    def _http_ingest_monitor(self) -> Monitor:
        # HTTP requests arrive on server threads; the store's connection belongs to the loop, so
        # requests take turns (lock held) on a connection of their own.
        if self._http_monitor is None:
            self._http_monitor = Monitor(self.config, Store.open(self.config.store.url), self.scorer,
                                         dead_letters=self.monitor.dead_letters)
        return self._http_monitor

    def _followers(self) -> list[tuple[FileFollower | StdinSource, str]]:
        followers: list[tuple[FileFollower | StdinSource, str]] = [(f, s.default_source) for f, s in self._files]
        for directory, source in self._directories:
            followers += [(f, source.default_source) for f in directory.followers()]
        followers += [(s, c.default_source) for s, c in self._stdin]
        return followers

    def poll_sources(self) -> int:
        """Reads what the sources have and saves it; returns the number of lines read."""
        lines = 0
        for follower, default_source in self._followers():
            batch = follower.read(self.store.position(follower.key), self.config.ingest.max_lines_per_poll)
            if batch.position is None:
                continue
            result = self.monitor.ingest(follower.key, batch.lines, batch.position, default_source=default_source)
            self.progress.ingested += result.added
            self.progress.rejected += len(result.rejected)
            lines += len(batch.lines)
        return lines

    @property
    def http_addresses(self) -> list[str]:
        """``host:port`` of each HTTP source (bound already, so port 0 has become a real port)."""
        return [source.address for source in self._http]

    @property
    def stdin_finished(self) -> bool:
        return bool(self._stdin) and all(source.finished for source, _ in self._stdin)

    # -- the loop -----------------------------------------------------------------------

    def start_services(self) -> None:
        self.deliverer.start()
        for source in self._http:
            source.start()
            log.info("HTTP ingest on http://%s/items", source.address)
        if self.dashboard is not None:
            self.dashboard.start()
            log.info("dashboard on http://%s/", self.dashboard.address)

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, until_idle: bool = False) -> Progress:
        """Polls, scores and delivers until :meth:`stop` (or, with ``until_idle``, until nothing is left)."""
        self.start_services()
        backoff = self.config.scoring.unavailable_backoff_seconds
        try:
            while not self._stop.is_set():
                read = self.poll_sources()
                try:
                    processed = self.monitor.score_pending()
                except ScoringUnavailable as exc:
                    self.progress.scoring_unavailable += 1
                    log.warning("%s; items stay pending, retrying in %.1fs", exc, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.config.scoring.max_unavailable_backoff_seconds)
                    continue
                backoff = self.config.scoring.unavailable_backoff_seconds
                if processed:
                    self.progress.processed += processed
                    self.progress.batch_sizes.append(processed)
                elif not read:
                    if until_idle and (not self._stdin or self.stdin_finished):
                        self._drain_deliveries()
                        break
                    self._stop.wait(self.config.ingest.poll_seconds)
        finally:
            self.close()
        return self.progress

    def _drain_deliveries(self) -> None:
        """Before an idle exit: give the sinks up to ``delivery.drain_seconds`` to deliver what is due."""
        deadline = time.monotonic() + self.config.delivery.drain_seconds
        while self.store.undelivered() and time.monotonic() < deadline and not self._stop.is_set():
            self._stop.wait(self.config.delivery.poll_seconds)

    def close(self) -> None:
        self.deliverer.stop()
        for source in self._http:
            source.stop()
        if self.dashboard is not None:
            self.dashboard.stop()
        self.scorer.close()
        if self._http_monitor is not None:
            self._http_monitor.store.close()
        self.store.close()
