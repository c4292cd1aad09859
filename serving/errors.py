"""Errors that carry TF Serving's canonical status codes.

Every failure the server reports to a client is a :class:`ServingError`: the
gRPC layer aborts the call with its code, the REST layer maps the code to an
HTTP status the way ``tensorflow_serving/model_servers/http_server.cc`` does
and writes ``{"error": message}``.  Messages follow TF Serving's wording where
clients (or people) are known to match on them.
"""

from __future__ import annotations

import re
import uuid

import grpc

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")

_HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}

_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def status_code_from_number(number: int) -> grpc.StatusCode:
    """The gRPC status code whose canonical number is ``number`` (UNKNOWN if none)."""
    return _BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def http_status_for(code: grpc.StatusCode) -> int:
    """HTTP status TF Serving's REST server uses for a canonical code."""
    return _HTTP_STATUS.get(code, 500)


class ServingError(Exception):
    """A request or load failure with a canonical status code."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def number(self) -> int:
        """Canonical code number (as in ``tensorflow.error.Code``)."""
        return self.code.value[0]

    def __repr__(self) -> str:
        return f"ServingError({self.code.name}, {self.message!r})"


def invalid_argument(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.NOT_FOUND, message)


def failed_precondition(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.FAILED_PRECONDITION, message)


def resource_exhausted(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.RESOURCE_EXHAUSTED, message)


def unavailable(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.UNAVAILABLE, message)


def internal(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.INTERNAL, message)


def deadline_exceeded(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.DEADLINE_EXCEEDED, message)


def unimplemented(message: str) -> ServingError:
    return ServingError(grpc.StatusCode.UNIMPLEMENTED, message)


def from_tensorflow(exc: Exception) -> ServingError:
    """Maps a TensorFlow runtime error (``tf.errors.OpError``) to its code.

    TF's error codes are the canonical codes, so the number carries over; any
    other exception from inside a graph call is reported as INTERNAL.
    """
    number = getattr(exc, "error_code", None)
    message = getattr(exc, "message", None) or str(exc)
    if isinstance(number, int):
        return ServingError(status_code_from_number(number), message)
    return internal(f"{type(exc).__name__}: {message}")


def from_unexpected(exc: BaseException, request_id: str) -> ServingError:
    """The answer for an exception no layer turned into a :class:`ServingError`.

    Kinds that a request can cause get their own code and a plain message;
    anything else is INTERNAL naming only the request id (the log has the
    traceback under that id): no exception text reaches the client.
    """
    if isinstance(exc, RecursionError):
        return invalid_argument("the request is nested too deeply to be processed")
    if isinstance(exc, UnicodeError):
        return invalid_argument("the request holds text that is not valid Unicode (e.g. a lone surrogate)")
    if isinstance(exc, MemoryError):
        return resource_exhausted("the request needs more memory than the server can give it")
    return internal(f"internal error while handling the request; request id {request_id}")


def request_id(given: str | None = None) -> str:
    """The id a request is logged and answered under: the client's, if it is a sane token, else a new one."""
    return given if given and _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex[:16]
