"""The ranker's HTTP JSON endpoint (on :mod:`apps.http_json`).

Routes::

    GET  /healthz    200 {"status": "ok", "index": {"generation", "items"}} while the app runs
    GET  /metrics    Prometheus text: ranker_requests_total{rerank_status=reranked|off|no_reranker|time_budget|
                     unavailable}, so a fallback to hybrid order (no blessed re-ranker, budget spent) shows
    POST /v1/rank    {"text", "recent", "candidates", "filters", "exclude", "exclude_recent", "k", "rerank"}
                     -> {"items": [...], "warnings": [...], "degraded", "degraded_reason", "stages",
                         "rerank": {"status", "depth", "reason"}, ...}

Bad input is 4xx with ``{"error": code, "message": text}`` (400 malformed
JSON or field, 411/413 length, 422 a request that cannot be ranked, 409 an
empty index); a model server that is down or too slow is 503 with
``Retry-After`` (unless degraded mode is on).  One bad request never stops
the server.

Example::

    with RankHttpServer(ranker, HttpConfig(port=0)) as server:
        server.url        # 'http://127.0.0.1:40123'
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import ClassVar

from apps.http_json import JsonHandler, JsonHttpServer, Reply
from apps.ranker.config import HttpConfig
from apps.ranker.errors import ModelUnavailable
from apps.ranker.ranker import Ranker, RankRequest
from serving.http_server import HttpLimits

log = logging.getLogger(__name__)


class _Handler(JsonHandler):
    """``/healthz`` with the index's size; ``/v1/rank`` on POST."""

    retry_errors = (ModelUnavailable,)
    undecodable_problem = "invalid_json"  # the ranker's code for any body that is not UTF-8 JSON
    logger = log

    def health(self) -> dict:
        index = self.app.index
        return {"status": "ok", "index": {"generation": index.generation, "items": len(index)}}

    def get(self, path: str) -> Reply | None:
        if path != "/metrics":
            return None
        lines = ["# HELP ranker_requests_total Ranking requests answered, by what stage 2 did (rerank.status).",
                 "# TYPE ranker_requests_total counter"]
        lines += [f'ranker_requests_total{{rerank_status="{status}"}} {count}'
                  for status, count in self.app.rerank_outcomes().items()]
        return Reply(HTTPStatus.OK, ("\n".join(lines) + "\n").encode(), "text/plain; version=0.0.4; charset=utf-8")

    def _rank(self, body: object) -> tuple[int, dict]:
        return HTTPStatus.OK, self.app.rank(RankRequest.parse(body)).to_dict()

    post_routes: ClassVar[dict] = {"/v1/rank": _rank}


class RankHttpServer(JsonHttpServer):
    """Serves the endpoint on ``config.host:config.port`` (port 0 picks a free one) in a background thread.

    ``url``, ``start``/``serve_forever``/``stop`` and the context manager: :class:`apps.http_json.JsonHttpServer`;
    ``limits`` (timeouts, in-flight requests) default to :class:`serving.http_server.HttpLimits`'s.
    """

    def __init__(self, ranker: Ranker, config: HttpConfig, limits: HttpLimits | None = None) -> None:
        super().__init__(_Handler, config.host, config.port, app=ranker, max_request_bytes=config.max_request_bytes,
                         retry_after_seconds=config.retry_after_seconds, thread_name="ranker-http", limits=limits)
