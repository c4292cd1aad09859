"""The live dashboard: ``GET /`` is the chart page, ``GET /api/data`` the
per-entity sentiment series, the recent alerts and what did not go through
(dead letters by stage, the alert dead-letter queue) as JSON, ``GET /metrics``
the delivery metrics for Prometheus, ``GET /healthz`` a liveness check that
also reads the database.

It only reads the database, on its own connection, so it can run beside
the monitor (or on its own: ``python -m apps.sentiment_monitor dashboard``).

Example::

    dashboard = Dashboard(config, open_store=lambda: Store.open(config.store.url)).start()
    print(dashboard.address)   # 127.0.0.1:8765
    dashboard.stop()
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from apps.sentiment_monitor.charts import alert_markers, html_page, sentiment_series
from apps.sentiment_monitor.config import MonitorConfig
from apps.sentiment_monitor.metrics import delivery_metrics_registry
from apps.sentiment_monitor.store import Store


def dashboard_data(store: Store, config: MonitorConfig) -> dict:
    return {"series": sentiment_series(store.all_buckets(), size=config.windows.size_seconds,
                                       slide=config.windows.slide_seconds),
            "alerts": alert_markers(store.alerts(limit=config.dashboard.recent_alerts)),
            "health": health_data(store, config)}


def health_data(store: Store, config: MonitorConfig) -> dict:
    """What did not go through: dead letters by stage (and the latest ones), deliveries by status (and the
    oldest of the alert dead-letter queue)."""
    latest = store.dead_letters(config.dashboard.recent_alerts, newest_first=True)
    return {"items": store.item_counts(), "dead_letters": store.dead_letter_counts(),
            "recent_dead_letters": [{k: d[k] for k in ("source", "position", "stage", "reason", "line_bytes")}
                                    for d in latest],
            "deliveries": store.delivery_counts(),
            "alert_dead_letters": store.alert_dead_letters(limit=config.dashboard.recent_alerts)}


class Dashboard:
    def __init__(self, config: MonitorConfig, open_store: Callable[[], Store]) -> None:
        self.config = config
        self._open_store = open_store
        self._store: Store | None = None
        self._lock = threading.Lock()  # one connection, requests take turns
        page = html_page(live=True, refresh_seconds=config.dashboard.refresh_seconds).encode()
        self.metrics = delivery_metrics_registry(self.read)
        dashboard = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                if self.path in ("/", "/index.html"):
                    return self._reply(200, "text/html; charset=utf-8", page)
                if self.path == "/api/data":
                    return self._reply(200, "application/json", json.dumps(dashboard.data()).encode())
                if self.path == "/metrics":
                    return self._reply(200, CONTENT_TYPE_LATEST, generate_latest(dashboard.metrics))
                if self.path == "/healthz":
                    undelivered = dashboard.read(lambda store: store.undelivered())
                    return self._reply(200, "text/plain", f"ok; {undelivered} deliveries pending\n".encode())
                self._reply(404, "text/plain",
                            f"no page {self.path}; try /, /api/data, /metrics or /healthz".encode())

            def _reply(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer((config.dashboard.host, config.dashboard.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="dashboard", daemon=True)

    @property
    def address(self) -> str:
        host, port = self._server.server_address[:2]
        return f"{host}:{port}"

    def read(self, query: Callable[[Store], Any]) -> Any:
        """Runs `query` on the dashboard's own connection, one request at a time."""
        with self._lock:
            if self._store is None:
                self._store = self._open_store()
            return query(self._store)

    def data(self) -> dict:
        return self.read(lambda store: dashboard_data(store, self.config))

    def start(self) -> Dashboard:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            if self._store is not None:
                self._store.close()
