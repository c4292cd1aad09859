"""The HTTP JSON endpoint and the agent's web page (stdlib ``http.server``).

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

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from apps.customer_service.config import HttpConfig
from apps.customer_service.errors import AppError, InvalidMessage, ModelUnavailable
from apps.customer_service.messages import CustomerMessage
from apps.customer_service.service import CustomerService

STATIC = Path(__file__).with_name("static")
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8"}
log = logging.getLogger(__name__)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: a benchmark client reuses its connection
    # Headers and body go out in two writes; with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms on Linux) on every keep-alive response.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (the base class's name)
        log.debug("%s " + format, self.address_string(), *args)

    # -- routing ------------------------------------------------------------------------

    def do_GET(self) -> None:  # noqa: N802  (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/":
            self._send_file(STATIC / "index.html")
        elif path.startswith("/static/") and "/" not in path[len("/static/"):]:
            self._send_file(STATIC / path[len("/static/"):])
        elif path == "/healthz":
            self._send_json(HTTPStatus.OK, {"status": "ok"})
        elif path == "/v1/info":
            self._send_json(HTTPStatus.OK, self.server.service.info())
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not_found", "message": f"no route {path}"})

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        routes = {"/v1/reply": self._reply, "/v1/replies": self._replies}
        if path not in routes:
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not_found", "message": f"no route POST {path}"})
            return
        try:
            status, body = routes[path](self._read_json())
        except ModelUnavailable as exc:
            retry = str(self.server.config.retry_after_seconds)
            self._send_json(exc.status, exc.to_dict(), headers={"Retry-After": retry})
            return
        except AppError as exc:
            self._send_json(exc.status, exc.to_dict())
            return
        except Exception:  # a bug must not take the desk down: log it, answer 500
            log.exception("unexpected error on POST %s", path)
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR,
                            {"error": "internal_error", "message": "unexpected error; see the app's log"})
            return
        self._send_json(status, body)

    # -- handlers -----------------------------------------------------------------------

    def _reply(self, body: object) -> tuple[int, dict]:
        message = CustomerMessage.parse(body, self.server.service.config.limits)
        [suggestion] = self.server.service.reply_many([message])
        return HTTPStatus.OK, suggestion.to_dict()

    def _replies(self, body: object) -> tuple[int, dict]:
        limits = self.server.service.config.limits
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
        suggestions = self.server.service.reply_many(messages)
        return HTTPStatus.OK, {"results": [s.to_dict() for s in suggestions]}

    # -- I/O ----------------------------------------------------------------------------

    def _read_json(self) -> object:
        limit = self.server.service.config.limits.max_request_bytes
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise InvalidMessage("the request needs a Content-Length header", problem="length_required",
                                 status=411) from None
        if length > limit:
            self.close_connection = True  # the unread body would be parsed as the next request
            raise InvalidMessage(f"the request body is {length} bytes; the limit is {limit}",
                                 problem="request_too_large", status=413)
        raw = self.rfile.read(length)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidMessage(f"the request body is not valid UTF-8: byte 0x{raw[exc.start]:02x} at position "
                                 f"{exc.start} cannot be decoded", problem="undecodable_bytes", status=400) from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidMessage(f"the request body is not valid JSON: {exc}", problem="invalid_json",
                                 status=400) from None

    def _send_json(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        # ensure_ascii: lone surrogates echoed from input can't break the UTF-8 response.
        self._send(status, json.dumps(body).encode("ascii"), "application/json", headers or {})

    def _send_file(self, path: Path) -> None:
        if path.suffix not in _CONTENT_TYPES or not path.is_file():
            self._send_json(HTTPStatus.NOT_FOUND, {"error": "not_found", "message": f"no file {path.name}"})
            return
        self._send(HTTPStatus.OK, path.read_bytes(), _CONTENT_TYPES[path.suffix], {"Cache-Control": "no-cache"})

    def _send(self, status: int, payload: bytes, content_type: str, headers: dict[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], service: CustomerService, config: HttpConfig) -> None:
        super().__init__(address, _Handler)
        self.service = service
        self.config = config


class ReplyHttpServer:
    """Serves the endpoint on ``config.host:config.port`` (port 0 picks a free one) in a background thread."""

    def __init__(self, service: CustomerService, config: HttpConfig) -> None:
        self._server = _Server((config.host, config.port), service, config)
        self._thread = threading.Thread(target=self._server.serve_forever, name="customer-service-http", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._server.server_address[0]}:{self.port}"

    def start(self) -> ReplyHttpServer:
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Blocks (the CLI's ``serve``); Ctrl-C stops it."""
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> ReplyHttpServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
