"""``POST /items``: the sentiment monitor's HTTP source, on the suite's HTTP server.

The body is one JSON object or JSON lines.  ``accept(key, lines)`` saves the
lines (good ones as items, bad ones dead-lettered with the reason) and
returns ``(accepted, rejected reasons)``; the reply is 200 with those
figures, or 400 if no line was any good.  Saved before the reply, so a 200
means the items are durable.

A request the transport refuses (``Content-Length: abc``, a bad chunk size,
headers too large or too slow: 400/431/408 from :mod:`serving.http_server`; a
body too slow, 408, or too large, 413) never reaches ``accept``: the head of
what arrived goes to ``dead_letter(key, raw, reason)`` instead, so no input
is dropped without a trace.

Example::

    source = HttpSource("http:items", "127.0.0.1", 0, accept, dead_letter).start()
    source.address      # '127.0.0.1:40123'
    source.stop()
"""

from __future__ import annotations

import json
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from serving.http_server import HttpLimits, HttpRejection, HttpServer, WorkerPool, json_error, read_body

Accept = Callable[[str, list[tuple[int, bytes]]], tuple[int, list[str]]]
DeadLetter = Callable[[str, bytes, str], None]


class HttpSource:
    """``POST /items`` on ``host:port`` (port 0 picks a free one), in a background thread."""

    def __init__(self, key: str, host: str, port: int, accept: Accept, dead_letter: DeadLetter, *,
                 max_body_bytes: int = 10 << 20, limits: HttpLimits | None = None) -> None:
        self.key = key
        self._accept = accept
        self._dead_letter = dead_letter
        self._limits = HttpLimits(max_body_bytes=max_body_bytes, max_in_flight=8) if limits is None else limits
        self._pool = WorkerPool(self._limits.max_in_flight, "http-source")
        app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=["GET", "POST"])])
        self._server = HttpServer(app, host, port, self._limits, name="http-source", on_refused=self._refused)

    @property
    def address(self) -> str:
        return f"{self._server.host}:{self._server.port}"

    def start(self) -> HttpSource:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()
        self._pool.close()

    async def _endpoint(self, request: Request) -> Response:
        if request.method != "POST" or request.url.path.rstrip("/") != "/items":
            return _json(404, {"error": f"no such endpoint {request.method} {request.url.path}; POST to /items"})
        try:
            body = await read_body(request, self._limits)
            if not body.strip():
                raise HttpRejection(400, "empty_body", "the body is empty; send one JSON object or JSON lines")
            accepted, rejected = await self._pool.run(self._accept_body, body)
        except HttpRejection as rejection:
            if not rejection.reported and rejection.problem not in ("overloaded", "empty_body"):
                await self._pool.run(self._refused, rejection)  # (those two the client can simply send again)
            return Response(json_error(rejection), rejection.status, {"Connection": "close"} if rejection.close
                            else {}, "application/json")
        return _json(200 if accepted or not rejected else 400, {"accepted": accepted, "rejected": rejected})

    def _accept_body(self, body: bytes) -> tuple[int, list[str]]:
        lines = [(i, line) for i, line in enumerate(body.splitlines(), 1) if line.strip()]
        return self._accept(self.key, lines)

    def _refused(self, rejection: HttpRejection) -> None:
        self._dead_letter(self.key, rejection.received, f"HTTP {rejection.status}: {rejection.message}")


def _json(status: int, payload: dict) -> Response:
    return Response(json.dumps(payload).encode(), status, media_type="application/json")
