"""The model client's error hierarchy (:mod:`serving.model_client`), apart from the client so
that an app's own errors can derive from it without loading gRPC's stubs and TensorFlow's protos
(a command line's ``--help`` imports the app's errors)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc


class ModelCallError(Exception):
    """A model call that did not give a usable answer."""

    model: str = ""
    address: str = ""
    code: grpc.StatusCode | None = None  # None: the server answered, but not usably.


class ModelUnavailable(ModelCallError):
    """The server did not answer (down, restarting, shedding load, too slow); retry later."""


class ModelTimeout(ModelUnavailable):
    """The server did not answer within the call's deadline (DEADLINE_EXCEEDED)."""


class ModelNotServed(ModelCallError):
    """The server serves no version of the model (NOT_FOUND)."""


class ModelError(ModelCallError):
    """The server refused the request, or answered with outputs the caller cannot use."""
