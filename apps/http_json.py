"""A JSON HTTP endpoint that an app gives its routes to, on the suite's HTTP server.

The HTTP server (uvicorn, limits, timeouts: :mod:`serving.http_server`) is
the model server's; this base does what every app's endpoint does the same
way:

- ``GET /healthz`` -> 200 :meth:`JsonHandler.health` (``{"status": "ok"}`` unless the app adds to it);
- ``POST`` bodies: over ``max_request_bytes`` they are refused before being stored (413), too slow
  408, a malformed request (``Content-Length: abc``, a bad chunk) 400; the body must be UTF-8
  (400 ``undecodable_bytes``) JSON (400 ``invalid_json``, also when nested too deeply);
- errors as ``{"error": code, "message": text}``: an unknown route is 404 ``not_found``; an
  :class:`HttpError` (the apps' errors derive from it) its own status and code, with ``Retry-After`` for
  those in :attr:`JsonHandler.retry_errors`; anything else is logged once with a request id and
  answered 500 ``internal_error`` naming only that id.  One bad request never stops the server;
- routes run on worker threads (the apps' libraries block), at most ``limits.max_in_flight`` at once.

An app subclasses :class:`JsonHandler` for its routes and :class:`JsonHttpServer` for its constructor.
Example::

    class Handler(JsonHandler):
        def _echo(self, body: object) -> tuple[int, object]:
            return 200, {"echo": body}

        post_routes = {"/v1/echo": _echo}

    with JsonHttpServer(Handler, "127.0.0.1", 0, app=None, max_request_bytes=4096) as server:
        server.url        # 'http://127.0.0.1:40123'
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, ClassVar, Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.http_server import (
    HttpLimits,
    HttpRejection,
    HttpServer,
    WorkerPool,
    json_error,
    read_body,
    request_id,
)

__all__ = ["HttpError", "JsonHandler", "JsonHttpServer", "Reply"]

log = logging.getLogger(__name__)
JSON = "application/json"


class HttpError(Exception):
    """An error that carries the HTTP status it maps to and a stable ``problem`` code; the apps' errors derive
    from it, and the base raises it for a body it cannot read.  Answered as :meth:`to_dict`."""

    status = 500
    problem = "internal_error"

    def __init__(self, message: str, *, problem: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.problem = problem or self.problem
        self.status = status or self.status

    def to_dict(self) -> dict[str, str]:
        return {"error": self.problem, "message": str(self)}


@dataclass(frozen=True)
class Reply:
    """One answer: status, body and the headers beyond Content-Type/Length."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, body: object, headers: dict[str, str] | None = None) -> Reply:
        # ensure_ascii: lone surrogates echoed from input can't break the UTF-8 response.
        return cls(status, json.dumps(body).encode("ascii"), JSON, headers or {})


class JsonHandler:
    """Routing, request parsing and JSON answers; subclasses set the class attributes and hooks below.

    One instance serves every request, on worker threads; ``self.app`` is what the app passed to
    :class:`JsonHttpServer` (its service, ranker, ...).
    """

    #: POST path -> handler method ``(self, parsed JSON body) -> (status, JSON-able body)``.
    post_routes: ClassVar[dict[str, Callable[[Any, object], tuple[int, object]]]] = {}
    #: The :class:`HttpError` types answered with ``Retry-After: <retry_after_seconds>`` (model server down).
    retry_errors: ClassVar[tuple[type[HttpError], ...]] = ()
    #: The ``error`` code of a body that is not UTF-8.
    undecodable_problem: ClassVar[str] = "undecodable_bytes"
    #: Where unexpected errors are logged.
    logger: ClassVar[logging.Logger] = log

    def __init__(self, app: Any, *, max_request_bytes: int, retry_after_seconds: int) -> None:
        self.app = app
        self.max_request_bytes = max_request_bytes
        self.retry_after_seconds = retry_after_seconds

    # -- hooks ---------------------------------------------------------------------------

    def health(self) -> dict:
        """The body of ``GET /healthz``."""
        return {"status": "ok"}

    def get(self, path: str) -> Reply | None:
        """The answer to a GET of ``path`` (other than ``/healthz``); None: no such route (404)."""
        return None

    # -- answering -----------------------------------------------------------------------

    def answer(self, method: str, path: str, body: bytes, rid: str) -> Reply:
        """The reply to one request; never raises."""
        try:
            if method == "GET":
                reply = Reply.json(HTTPStatus.OK, self.health()) if path == "/healthz" else self.get(path)
                return reply or Reply.json(HTTPStatus.NOT_FOUND, {"error": "not_found", "message": f"no route {path}"})
            route = self.post_routes.get(path)
            if route is None:
                return Reply.json(HTTPStatus.NOT_FOUND, {"error": "not_found", "message": f"no route POST {path}"})
            status, answer = route(self, self.parse_json(body))
            return Reply.json(status, answer)
        except self.retry_errors as exc:
            return Reply.json(exc.status, exc.to_dict(), {"Retry-After": str(self.retry_after_seconds)})
        except HttpError as exc:
            return Reply.json(exc.status, exc.to_dict())
        except Exception:  # a bug must not take the endpoint down: log it once, answer 500
            self.logger.exception("unexpected error on %s %s (request id %s)", method, path, rid)
            return Reply.json(HTTPStatus.INTERNAL_SERVER_ERROR, {
                "error": "internal_error", "message": f"unexpected error; request id {rid} in the app's log"})

    def parse_json(self, raw: bytes) -> object:
        """The request body, parsed; :class:`HttpError` (400) when it cannot be."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise HttpError(f"the request body is not valid UTF-8: byte 0x{raw[exc.start]:02x} at position "
                            f"{exc.start} cannot be decoded", problem=self.undecodable_problem, status=400) from None
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise HttpError(f"the request body is not valid JSON: {exc}", problem="invalid_json",
                            status=400) from None
        except RecursionError:
            raise HttpError("the request body is not valid JSON here: it is nested too deeply",
                            problem="invalid_json", status=400) from None


class JsonHttpServer:
    """Serves ``handler`` on ``host:port`` (port 0 picks a free one) in a background thread; the handler
    reaches ``app`` as ``self.app``.  ``limits`` bound what a client may cost (their body limit is
    ``max_request_bytes``)."""

    def __init__(self, handler: type[JsonHandler], host: str, port: int, *, app: object, max_request_bytes: int,
                 retry_after_seconds: int = 5, thread_name: str = "json-http",
                 limits: HttpLimits | None = None) -> None:
        self._handler = handler(app, max_request_bytes=max_request_bytes, retry_after_seconds=retry_after_seconds)
        self._limits = dataclasses.replace(limits or HttpLimits(max_in_flight=32), max_body_bytes=max_request_bytes)
        self._pool = WorkerPool(self._limits.max_in_flight, thread_name)
        routes = [Route("/{path:path}", self._endpoint, methods=["GET", "POST"])]
        self._server = HttpServer(Starlette(routes=routes), host, port, self._limits, name=thread_name)

    async def _endpoint(self, request: Request) -> Response:
        rid = request_id(request)
        try:
            body = await read_body(request, self._limits) if request.method == "POST" else b""
            reply = await self._pool.run(self._handler.answer, request.method, request.url.path, body, rid)
        except HttpRejection as rejection:
            headers = {"Connection": "close"} if rejection.close else {}
            reply = Reply(rejection.status, json_error(rejection), JSON, headers)
        return Response(reply.body, reply.status, {"X-Request-Id": rid, **reply.headers}, reply.content_type)

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> Self:
        self._server.start()
        return self

    def serve_forever(self) -> None:
        """Serves until :meth:`stop` (from another thread) or an exception such as Ctrl-C."""
        self.start()
        self._server.wait()

    def serve_until_interrupted(self) -> None:
        """Serves in this thread until Ctrl-C, then stops (the CLIs' ``serve``)."""
        try:
            self.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        self._server.stop()
        self._pool.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
