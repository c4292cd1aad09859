"""Hostile HTTP clients for the hostile-input tests of the model server and the apps.

Raw requests on sockets (malformed framing, oversized headers, pipelining),
slow and idle clients, and the peak resident memory of this process (the
servers under test run in it) while an attack runs.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

DEEP_JSON = b"[" * 100_000 + b"]" * 100_000
LONE_SURROGATE = '"broken \\udc80 text"'  # JSON text: decodes to a str no UTF-8 encoder accepts
# Python exception names and traceback lines: none may reach a client.
TRACEBACK_MARKERS = ("Traceback", 'File "', "RecursionError", "UnicodeEncodeError", "UnicodeDecodeError",
                     "ValueError", "TypeError", "KeyError", "AttributeError", "MemoryError")


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def leaks_internals(self) -> bool:
        text = self.body.decode("utf-8", "replace")
        return any(marker in text for marker in TRACEBACK_MARKERS)


def request_bytes(method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None) -> bytes:
    """A well-formed HTTP/1.1 request."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}",
             "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def connect(address: str, timeout: float = 30.0) -> socket.socket:
    host, port = address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=timeout)


def read_answers(sock: socket.socket, count: int = 1) -> list[Answer]:
    """``count`` responses read off one connection (fewer if the server closes it first)."""
    stream = sock.makefile("rb")
    answers = []
    for _ in range(count):
        response = http.client.HTTPResponse(_OneFile(stream))  # type: ignore[arg-type]
        try:
            response.begin()
        except (http.client.RemoteDisconnected, ConnectionResetError):
            break
        answers.append(Answer(response.status, response.headers, response.read()))
    return answers


def send_raw(address: str, data: bytes, *, timeout: float = 30.0) -> Answer | None:
    """Sends ``data`` as is and reads one response; None if the server closed without one."""
    with connect(address, timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may refuse before reading everything; its answer is still readable
        answers = read_answers(sock)
    return answers[0] if answers else None


def closed_by_server(sock: socket.socket, timeout: float) -> tuple[bool, bytes]:
    """Waits up to ``timeout`` for the server to close ``sock``; (closed, what it sent first)."""
    sock.settimeout(timeout)
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except TimeoutError:
        return False, received
    except ConnectionResetError:
        pass
    return True, received


def transport_attacks(path: str) -> list[tuple[str, bytes, int]]:
    """(name, raw request, expected status) of malformed requests any HTTP endpoint must answer."""
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    return [
        ("content_length_abc", (head + "Content-Length: abc\r\n\r\n{}").encode(), 400),
        ("content_length_negative", (head + "Content-Length: -1\r\n\r\n{}").encode(), 400),
        ("chunk_size_zz", (head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n").encode(), 400),
        ("length_and_chunked", (head + "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"
                                ).encode(), 400),
        ("garbage_request_line", b"\x16\x03\x01 hello there\r\n\r\n", 400),
        ("oversized_header", (head + "X-Filler: " + "a" * 200_000 + "\r\nContent-Length: 2\r\n\r\n{}").encode(), 431),
        ("oversized_url", f"GET /{'a' * 200_000} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode(), 431),
    ]


class _OneFile:
    """Lets several HTTPResponse objects read one buffered stream in turn (pipelined responses)."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def makefile(self, *args, **kwargs):
        return self

    def close(self) -> None:
        pass  # a response is done; the stream goes on to the next one

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


# -- memory ----------------------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/self/status")


@dataclass
class PeakMemory:
    growth_mb: float = 0.0


@contextmanager
def peak_memory_growth() -> Iterator[PeakMemory]:
    """The growth of this process's peak resident memory over the block (MB), which runs the servers too."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")  # resets VmHWM to the current resident size
    before = _status_kb("VmRSS")
    result = PeakMemory()
    yield result
    result.growth_mb = (_status_kb("VmHWM") - before) / 1024


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started
