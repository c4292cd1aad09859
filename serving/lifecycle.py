"""Admission of requests, so a stopping server can drain what it accepted."""

from __future__ import annotations

import threading
import time

from serving import errors
from serving.metrics import ServerMetrics


class RequestGate:
    """Counts in-flight requests and refuses new ones once draining starts."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._cond = threading.Condition()
        self._in_flight = 0
        self._draining = False
        self._metrics = metrics

    @property
    def draining(self) -> bool:
        return self._draining

    def __enter__(self) -> RequestGate:
        with self._cond:
            if self._draining:
                raise errors.unavailable("Server is shutting down")
            self._in_flight += 1
        self._metrics.in_flight.inc()
        return self

    def __exit__(self, *exc_info) -> None:
        self._metrics.in_flight.dec()
        with self._cond:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._cond.notify_all()

    def drain(self, timeout_seconds: float) -> bool:
        """Refuses new requests and waits for admitted ones; False on timeout."""
        deadline = time.monotonic() + timeout_seconds
        with self._cond:
            self._draining = True
            return self._cond.wait_for(lambda: self._in_flight == 0, max(0.0, deadline - time.monotonic()))
