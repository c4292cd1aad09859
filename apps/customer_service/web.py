"""The HTTP JSON endpoint and the agent's web page (on :mod:`apps.http_json`).

Routes::

    GET  /              the agent page (static/index.html)
    GET  /static/<f>    its script and style
    GET  /healthz       200 {"status": "ok"} while the app runs
    GET  /v1/info       threshold, coverage and precision in force
    POST /v1/reply      {"message": "...", "context": {...}}        -> one suggestion
    POST /v1/replies    {"messages": [{"message": ...}, ...]}       -> {"results": [...]}

Bad input is 4xx with ``{"error": code, "message": text}``; a model server
that is down or too slow is 503 with ``Retry-After``.  One bad request never
stops the server.

Example::

    server = ReplyHttpServer(service, HttpConfig(port=0)).start()
    server.url        # 'http://127.0.0.1:40123'
    server.stop()
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from pathlib import Path
from typing import ClassVar

from apps.customer_service.config import HttpConfig
from apps.customer_service.errors import InvalidMessage, ModelUnavailable
from apps.customer_service.messages import CustomerMessage
from apps.customer_service.service import CustomerService
from apps.http_json import JsonHandler, JsonHttpServer, Reply
from serving.http_server import HttpLimits

STATIC = Path(__file__).with_name("static")
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8"}
log = logging.getLogger(__name__)


class _Handler(JsonHandler):
    """The page, its files and ``/v1/info`` on GET; ``/v1/reply`` and ``/v1/replies`` on POST."""

    retry_errors = (ModelUnavailable,)
    logger = log

    @property
    def service(self) -> CustomerService:
        return self.app

    def get(self, path: str) -> Reply | None:
        if path == "/":
            return self._file(STATIC / "index.html")
        if path.startswith("/static/") and "/" not in path[len("/static/"):]:
            return self._file(STATIC / path[len("/static/"):])
        if path == "/v1/info":
            return Reply.json(HTTPStatus.OK, self.service.info())
        return None

    def _reply(self, body: object) -> tuple[int, dict]:
        message = CustomerMessage.parse(body, self.service.config.limits)
        [suggestion] = self.service.reply_many([message])
        return HTTPStatus.OK, suggestion.to_dict()

    def _replies(self, body: object) -> tuple[int, dict]:
        limits = self.service.config.limits
        items = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise InvalidMessage("the body must be {\"messages\": [ {\"message\": ...}, ... ]} with at least one",
                                 problem="invalid_field", status=400)
        if len(items) > limits.max_messages_per_request:
            raise InvalidMessage(f"{len(items)} messages in one request; the limit is "
                                 f"{limits.max_messages_per_request}", problem="too_many_messages", status=413)
        messages = []
        for i, item in enumerate(items):
            try:
                messages.append(CustomerMessage.parse(item, limits))
            except InvalidMessage as exc:
                raise InvalidMessage(f"messages[{i}]: {exc}", problem=exc.problem, status=exc.status) from None
        suggestions = self.service.reply_many(messages)
        return HTTPStatus.OK, {"results": [s.to_dict() for s in suggestions]}

    post_routes: ClassVar[dict] = {"/v1/reply": _reply, "/v1/replies": _replies}

    @staticmethod
    def _file(path: Path) -> Reply:
        if path.suffix not in _CONTENT_TYPES or not path.is_file():
            return Reply.json(HTTPStatus.NOT_FOUND, {"error": "not_found", "message": f"no file {path.name}"})
        return Reply(HTTPStatus.OK, path.read_bytes(), _CONTENT_TYPES[path.suffix], {"Cache-Control": "no-cache"})


class ReplyHttpServer(JsonHttpServer):
    """Serves the endpoint on ``config.host:config.port`` (port 0 picks a free one) in a background thread.

    ``url``, ``start``/``serve_forever``/``stop`` and the context manager: :class:`apps.http_json.JsonHttpServer`;
    ``limits`` (timeouts, in-flight requests) default to :class:`serving.http_server.HttpLimits`'s.
    """

    def __init__(self, service: CustomerService, config: HttpConfig, limits: HttpLimits | None = None) -> None:
        super().__init__(_Handler, config.host, config.port, app=service,
                         max_request_bytes=service.config.limits.max_request_bytes,
                         retry_after_seconds=config.retry_after_seconds, thread_name="customer-service-http",
                         limits=limits)
