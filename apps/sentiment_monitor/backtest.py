"""Replays a historical JSON-lines file through the same steps as the live
monitor (with a fresh database, no sinks) and reports the alerts that would
have fired, with the per-entity sentiment chart as PNG and HTML.

Example::

    result = backtest(config, Path("history.jsonl"), Path("out"))
    for alert in result.alerts:
        print(alert.summary())
    result.png, result.html     # out/sentiment.png, out/sentiment.html
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from apps.sentiment_monitor.alerts import Alert
from apps.sentiment_monitor.charts import alert_markers, html_page, sentiment_series, write_png
from apps.sentiment_monitor.config import DeliveryConfig, MonitorConfig, StoreConfig
from apps.sentiment_monitor.ingest import DeadLetters, FileFollower
from apps.sentiment_monitor.monitor import Monitor, Scorer
from apps.sentiment_monitor.scoring import SentimentScorer
from apps.sentiment_monitor.store import Store


@dataclass(frozen=True)
class BacktestResult:
    alerts: list[Alert]  # oldest first
    items: dict[str, int]  # items by status (counted, late)
    rejected: int  # lines sent to the dead-letter file
    png: Path
    html: Path
    database: Path


def backtest(config: MonitorConfig, history: Path, out_dir: Path, *, scorer: Scorer | None = None) -> BacktestResult:
    if not history.is_file():
        raise FileNotFoundError(f"backtest input {history} does not exist")
    out_dir.mkdir(parents=True, exist_ok=True)
    database = out_dir / "backtest.db"
    for stale in [*out_dir.glob("backtest.db*"), *out_dir.glob("dead_letters.jsonl")]:  # Always from nothing.
        stale.unlink()
    config = dataclasses.replace(
        config, store=StoreConfig(url=f"sqlite:///{database}"),
        ingest=dataclasses.replace(config.ingest, sources=(), dead_letter_path=str(out_dir / "dead_letters.jsonl")),
        delivery=DeliveryConfig())
    store = Store.open(config.store.url)
    own_scorer = scorer is None
    scorer = scorer or SentimentScorer(config.scoring)
    try:
        monitor = Monitor(config, store, scorer, dead_letters=DeadLetters(Path(config.ingest.dead_letter_path)))
        follower = FileFollower(history, f"backtest:{history}", max_line_bytes=config.ingest.max_line_bytes)
        rejected = 0
        while True:
            batch = follower.read(store.position(follower.key), config.scoring.batch_size)
            if batch.position is None:
                break
            rejected += len(monitor.ingest(follower.key, batch.lines, batch.position).rejected)
            while monitor.score_pending():
                pass
        alerts = sorted(store.alerts(), key=lambda a: (a.trigger_time, a.alert_id))
        series = sentiment_series(store.all_buckets(), size=config.windows.size_seconds,
                                  slide=config.windows.slide_seconds)
        png = write_png(out_dir / "sentiment.png", series, alerts)
        html = out_dir / "sentiment.html"
        html.write_text(html_page({"series": series, "alerts": alert_markers(alerts)}), encoding="utf-8")
        return BacktestResult(alerts, store.item_counts(), rejected, png, html, database)
    finally:
        store.close()
        if own_scorer:
            scorer.close()  # type: ignore[attr-defined]
