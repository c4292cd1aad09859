"""The HTTP server under every HTTP endpoint of the suite, with its limits in one place.

The model server's REST API and the apps' endpoints (:mod:`apps.http_json`,
the sentiment monitor's ingest and dashboard) are Starlette applications
served by uvicorn with its C parser (httptools), each on a background thread
with an event loop of its own.  Chosen over the standard library's
``http.server`` (a thread per connection, no timeouts) and aiohttp by
``python -m benchmarks rest_front`` and because uvicorn + Starlette add two
small packages to the stack.  What a hostile or broken client can do is
bounded by :class:`HttpLimits`:

- the request line and headers must arrive within ``header_timeout_seconds``
  (408) and fit ``max_header_bytes`` (431); a connection that sends nothing
  is closed after that time, so slow or idle clients hold no thread and
  little memory;
- the body must arrive within ``body_timeout_seconds`` (408) and fit
  ``max_body_bytes`` (413, declared or counted, before it is stored); an
  over-long body of up to ``drain_body_bytes`` is read away first, so a
  client that sends it whole still reads its 413 instead of a reset;
- a malformed request (``Content-Length: abc``, a bad chunk size) is a 400;
- at most ``max_in_flight`` requests are worked on at once (on threads:
  models and databases block), more are refused with 503; idle keep-alive
  connections close after ``keep_alive_timeout_seconds``, and past
  ``max_connections`` open connections requests get 503.

Every error the server itself writes goes through the endpoint's
:data:`ErrorWriter`, so each API keeps its own error body.

Example::

    async def hello(request):
        return PlainTextResponse("hello")

    server = HttpServer(Starlette(routes=[Route("/", hello)]), "127.0.0.1", 0, HttpLimits(), name="hello")
    server.start()
    server.url          # 'http://127.0.0.1:40123'
    server.stop()
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from serving import errors

__all__ = ["HttpLimits", "HttpRejection", "HttpServer", "WorkerPool", "json_error", "read_body", "request_id"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class HttpLimits:
    """What one client may cost an HTTP endpoint."""

    max_body_bytes: int = 256 * 1024 * 1024
    max_header_bytes: int = 64 * 1024  # request line and headers together
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keep_alive_timeout_seconds: float = 15.0
    max_in_flight: int = 128  # requests being worked on at once
    max_connections: int = 4096
    drain_body_bytes: int = 64 * 1024 * 1024  # an over-long body up to this size is read away before the 413

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_header_bytes", "max_in_flight", "max_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"HttpLimits.{name} must be positive, got {getattr(self, name)}")
        for name in ("header_timeout_seconds", "body_timeout_seconds", "keep_alive_timeout_seconds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"HttpLimits.{name} must be positive, got {getattr(self, name)}")


class HttpRejection(Exception):
    """A request refused by the server itself: its status, a stable ``problem`` code and a message."""

    def __init__(self, status: int, problem: str, message: str, *, close: bool = False,
                 received: bytes = b"") -> None:
        super().__init__(message)
        self.status = status
        self.problem = problem
        self.message = message
        self.close = close  # the connection cannot be reused (part of the request is unread)
        self.received = received  # the head of what arrived, for an endpoint that keeps refused input
        self.reported = False  # the transport has told the endpoint's RefusalListener already


LINGER_SECONDS = 2.0  # how long a refused client may go on sending before the connection is closed
_REFUSED = "serving.http_server.refused"  # scope key: the transport refused this request mid-body
RECEIVED_HEAD_BYTES = 4096  # how much of a refused request is kept for :attr:`HttpRejection.received`


#: Turns a rejection into the body an API answers errors with.
ErrorWriter = Callable[[HttpRejection], bytes]
#: Told of each request refused before it reached the app (on a worker thread), e.g. to dead-letter it.
RefusalListener = Callable[[HttpRejection], None]


def json_error(rejection: HttpRejection) -> bytes:
    """``{"error": problem, "message": text}``: the apps' error body."""
    return json.dumps({"error": rejection.problem, "message": rejection.message}).encode()


def request_id(request: Request) -> str:
    """The client's ``X-Request-Id`` if it is a sane token, else a new one (for logs and the reply)."""
    return errors.request_id(request.headers.get("x-request-id"))


# -- reading a body -------------------------------------------------------------------


async def read_body(request: Request, limits: HttpLimits) -> bytes:
    """The whole body, within ``limits`` (413, 408); raises :class:`HttpRejection`."""
    declared = int(request.headers.get("content-length") or 0)  # the parser has checked it is a number
    if declared > limits.max_body_bytes:
        await _read_away(request, declared, limits)
        raise _too_large(f"of {declared} bytes", limits)
    body = bytearray()
    try:
        async with asyncio.timeout(limits.body_timeout_seconds):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limits.max_body_bytes:
                    await _read_away(request, limits.drain_body_bytes, limits)
                    raise _too_large(f"over {limits.max_body_bytes} bytes", limits)
    except TimeoutError:
        raise HttpRejection(408, "request_timeout", f"the request body did not arrive within "
                            f"{limits.body_timeout_seconds:g}s ({len(body)} bytes came)", close=True,
                            received=bytes(body[:RECEIVED_HEAD_BYTES])) from None
    except ClientDisconnect:
        if (refused := request.scope.get(_REFUSED)) is not None:
            raise refused from None  # already answered and reported by the transport
        raise HttpRejection(400, "client_disconnected", "the client went away while sending the body",
                            close=True, received=bytes(body[:RECEIVED_HEAD_BYTES])) from None
    except HttpRejection as rejection:
        rejection.received = bytes(body[:RECEIVED_HEAD_BYTES])
        raise
    return bytes(body)


def _too_large(what: str, limits: HttpLimits) -> HttpRejection:
    return HttpRejection(413, "request_too_large",
                         f"the request body {what} exceeds the limit of {limits.max_body_bytes} bytes")


async def _read_away(request: Request, declared: int, limits: HttpLimits) -> None:
    """Reads and drops the rest of an over-long body, so the client gets to read the 413.

    Closing with unread bytes makes the kernel answer a reset, which a client
    still sending sees as EPIPE instead of the reply.  Bodies past
    ``drain_body_bytes``, ``Expect: 100-continue`` ones (never sent) and
    slow ones (past the body timeout) are cut off and the connection closed.
    """
    if declared > limits.drain_body_bytes or request.headers.get("expect", "").lower() == "100-continue":
        raise _closing(_too_large(f"of {declared} bytes", limits))
    drained = 0
    try:
        async with asyncio.timeout(limits.body_timeout_seconds):
            async for chunk in request.stream():
                drained += len(chunk)
                if drained > limits.drain_body_bytes:
                    raise _closing(_too_large(f"over {limits.drain_body_bytes} bytes", limits))
    except (TimeoutError, ClientDisconnect):
        raise _closing(_too_large(f"over {limits.max_body_bytes} bytes", limits)) from None


def _closing(rejection: HttpRejection) -> HttpRejection:
    rejection.close = True
    return rejection


# -- bounded blocking work --------------------------------------------------------------


class WorkerPool:
    """Runs the blocking part of requests on threads, at most ``max_in_flight`` at once; more get 503."""

    def __init__(self, max_in_flight: int, name: str) -> None:
        self._max = max_in_flight
        self._active = 0  # only touched on the event loop's thread
        self._executor = ThreadPoolExecutor(max_in_flight, thread_name_prefix=name)

    async def run(self, function: Callable[..., T], *args: Any) -> T:
        if self._active >= self._max:
            raise HttpRejection(503, "overloaded", f"{self._max} requests are already being worked on; retry later")
        self._active += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, function, *args)
        finally:
            self._active -= 1

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


# -- the connection protocol -------------------------------------------------------------


class _BoundedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol plus a header deadline, a header size limit and the API's error bodies."""

    limits: HttpLimits = HttpLimits()
    write_error: ErrorWriter = staticmethod(json_error)
    on_refused: RefusalListener | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # asyncio turns Nagle's algorithm off only on sockets it created itself; with it on, a response
        # written in two parts (headers, body) waits for the client's delayed ACK, ~40 ms on Linux.
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._in_headers = False
        self._header_bytes = 0
        self._too_large = False
        self._received = bytearray()  # the head of the current request, should it be refused
        self._lingering = False
        self._lingered = 0
        self._header_timer = self.loop.call_later(self.limits.header_timeout_seconds, self._header_deadline)

    def connection_lost(self, exc: Exception | None) -> None:
        self._header_timer.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._lingered += len(data)
            if self._lingered > self.limits.drain_body_bytes:
                self.transport.close()
            return
        if self.on_refused is not None and len(self._received) < RECEIVED_HEAD_BYTES:
            self._received += data[:RECEIVED_HEAD_BYTES - len(self._received)]
        super().data_received(data)
        if self._in_headers and not self.transport.is_closing():
            # httptools buffers a header until it is complete: count what is fed to it meanwhile.
            self._header_bytes += len(data)
            if self._header_bytes > self.limits.max_header_bytes:
                self._too_large = True
                self.send_400_response("")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_headers = True
        self._header_bytes = 0
        self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.limits.header_timeout_seconds, self._header_deadline)

    def on_response_complete(self) -> None:
        self._received.clear()  # what comes next is the next request
        super().on_response_complete()

    def on_headers_complete(self) -> None:
        self._in_headers = False
        self._header_timer.cancel()
        super().on_headers_complete()

    def _header_deadline(self) -> None:
        if self.transport.is_closing() or self._lingering:
            return
        if self._in_headers:
            self._reject(HttpRejection(408, "request_timeout", f"the request headers did not arrive within "
                                       f"{self.limits.header_timeout_seconds:g}s"))
        elif self.cycle is None:
            self.transport.close()  # connected, never sent a byte

    def send_400_response(self, msg: str) -> None:
        """uvicorn calls this for a request its parser refuses; answered in the API's error format."""
        if self._too_large:
            self._reject(HttpRejection(431, "headers_too_large", f"the request line and headers exceed "
                                       f"{self.limits.max_header_bytes} bytes"))
        else:
            self._reject(HttpRejection(400, "malformed_request", "malformed HTTP request (request line, "
                                       "headers, Content-Length or chunked encoding)"))

    def _reject(self, rejection: HttpRejection) -> None:
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # mid-response: nothing can be said any more
            return
        body = self.write_error(rejection)
        self.transport.write(b"".join([
            STATUS_LINE[rejection.status],
            b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body),
            body,
        ]))
        self._linger()
        if self.on_refused is not None:
            rejection.received = bytes(self._received)
            rejection.reported = True
            self.loop.run_in_executor(None, self.on_refused, rejection)
        if self.cycle is not None:  # the app waiting for this request's body learns it is gone
            self.cycle.scope[_REFUSED] = rejection  # type: ignore[literal-required]
            self.cycle.disconnected = True
            self.cycle.message_event.set()


    def _linger(self) -> None:
        """Stops reading requests, and closes once the client stops sending (or after a while).

        Closing with the client's bytes still unread makes the kernel reset the
        connection, and the client loses the answer it has not read yet.
        """
        self._lingering = True
        self._in_headers = False
        self._header_timer.cancel()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)


# -- the server ---------------------------------------------------------------------------


class HttpServer:
    """Serves an ASGI app on ``host:port`` (port 0 picks a free one) on a background thread."""

    def __init__(self, app: ASGIApp, host: str, port: int, limits: HttpLimits, *, name: str,
                 write_error: ErrorWriter = json_error, on_refused: RefusalListener | None = None) -> None:
        self.limits = limits
        self._socket = socket.create_server((host, port), backlog=2048)  # raises OSError if taken
        protocol = type(f"{name}Protocol", (_BoundedProtocol,), {
            "limits": limits, "write_error": staticmethod(write_error),
            "on_refused": staticmethod(on_refused) if on_refused is not None else None})
        config = uvicorn.Config(
            app, http=protocol, loop="asyncio", lifespan="off", log_config=None, access_log=False,
            server_header=False, timeout_keep_alive=limits.keep_alive_timeout_seconds,  # type: ignore[arg-type]
            limit_concurrency=limits.max_connections, timeout_graceful_shutdown=5, backlog=2048,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name=name, daemon=True)

    @property
    def port(self) -> int:
        return self._socket.getsockname()[1]

    @property
    def host(self) -> str:
        return self._socket.getsockname()[0]

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout_seconds: float = 30.0) -> HttpServer:
        """Returns once the server accepts connections."""
        self._thread.start()
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"HTTP server {self._thread.name} failed to start; see the log")
            if waited > timeout_seconds:
                raise RuntimeError(f"HTTP server {self._thread.name} did not start within {timeout_seconds}s")
            self._thread.join(0.01)
            waited += 0.01
        return self

    def wait(self) -> None:
        """Blocks until the server has stopped (timed joins keep Ctrl-C working)."""
        while self._thread.is_alive():
            self._thread.join(0.5)

    def stop(self) -> None:
        """Stops accepting, lets requests being answered finish (5 s at most), closes every connection."""
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join()
        else:
            self._socket.close()
