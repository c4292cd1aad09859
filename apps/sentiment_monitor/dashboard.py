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
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from apps.sentiment_monitor.charts import alert_markers, html_page, sentiment_series
from apps.sentiment_monitor.config import MonitorConfig
from apps.sentiment_monitor.metrics import delivery_metrics_registry
from apps.sentiment_monitor.store import Store
from serving.http_server import HttpLimits, HttpRejection, HttpServer, WorkerPool, json_error


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
    """The page and its data on the suite's HTTP server (:mod:`serving.http_server`); reads on worker threads."""

    def __init__(self, config: MonitorConfig, open_store: Callable[[], Store]) -> None:
        self.config = config
        self._open_store = open_store
        self._store: Store | None = None
        self._lock = threading.Lock()  # one connection, requests take turns
        self._page = html_page(live=True, refresh_seconds=config.dashboard.refresh_seconds).encode()
        self.metrics = delivery_metrics_registry(self.read)
        limits = HttpLimits(max_body_bytes=64 * 1024, max_in_flight=8)  # GET only: no body worth the name
        self._pool = WorkerPool(limits.max_in_flight, "dashboard")
        app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET"])])
        self._server = HttpServer(app, config.dashboard.host, config.dashboard.port, limits, name="dashboard")

    async def _endpoint(self, request: Request) -> Response:
        try:
            status, content_type, body = await self._pool.run(self._answer, request.url.path)
        except HttpRejection as rejection:
            status, content_type, body = rejection.status, "application/json", json_error(rejection)
        return Response(body, status, {"Cache-Control": "no-store"}, content_type)

    def _answer(self, path: str) -> tuple[int, str, bytes]:
        if path in ("/", "/index.html"):
            return 200, "text/html; charset=utf-8", self._page
        if path == "/api/data":
            return 200, "application/json", json.dumps(self.data()).encode()
        if path == "/metrics":
            return 200, CONTENT_TYPE_LATEST, generate_latest(self.metrics)
        if path == "/healthz":
            undelivered = self.read(lambda store: store.undelivered())
            return 200, "text/plain", f"ok; {undelivered} deliveries pending\n".encode()
        return 404, "text/plain", f"no page {path}; try /, /api/data, /metrics or /healthz".encode()

    @property
    def address(self) -> str:
        return f"{self._server.host}:{self._server.port}"

    def read(self, query: Callable[[Store], Any]) -> Any:
        """Runs `query` on the dashboard's own connection, one request at a time."""
        with self._lock:
            if self._store is None:
                self._store = self._open_store()
            return query(self._store)

    def data(self) -> dict:
        return self.read(lambda store: dashboard_data(store, self.config))

    def start(self) -> Dashboard:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._pool.close()
        with self._lock:
            if self._store is not None:
                self._store.close()
