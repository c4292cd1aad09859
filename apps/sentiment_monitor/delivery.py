"""At-least-once delivery of stored alerts, one worker thread per sink.

A worker takes its sink's due deliveries from the store, sends each, and
records the outcome: ``delivered``; or ``retrying`` with the next attempt
after an exponential back-off capped at ``max_backoff_seconds``.  After
``max_attempts`` the delivery is ``dead_lettered``: the alert dead-letter
queue, counted in the metrics and listed on the dashboard; it is still
retried at the capped back-off (there is no lifetime limit), and
``python -m apps.sentiment_monitor replay`` makes it due at once.  The
status is written only after the attempt, so a crash in between means one
more send of the same alert id (never a lost alert).

Isolation: each sink has its own worker, so a sink that hangs or fails
delays only itself; within a sink each alert is attempted on its own, so an
alert that cannot even be rendered (a bug, a bad stored value) is retried
and dead-lettered like a refused one while the others go out; due
deliveries are taken longest-waiting first, so a failing alert goes to the
back of the line.

Example::

    deliverer = Deliverer(config.delivery, sinks, open_store=lambda: Store.open(url))
    deliverer.start()
    deliverer.wake()         # after new alerts were stored
    deliverer.stop()
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from apps.sentiment_monitor.config import DeliveryConfig
from apps.sentiment_monitor.sinks import Sink, SinkError
from apps.sentiment_monitor.store import DEAD_LETTERED, DELIVERED, RETRYING, Store

log = logging.getLogger(__name__)


def backoff_seconds(config: DeliveryConfig, attempts: int) -> float:
    """Wait before attempt ``attempts + 1``.

    >>> [backoff_seconds(DeliveryConfig(initial_backoff_seconds=1, max_backoff_seconds=5), n) for n in (1, 2, 3, 4)]
    [1.0, 2.0, 4.0, 5.0]
    """
    return float(min(config.max_backoff_seconds, config.initial_backoff_seconds * 2 ** (attempts - 1)))


def deliver_due(store: Store, sink: Sink, config: DeliveryConfig, now: float | None = None) -> int:
    """One pass over the sink's due deliveries, each alert on its own; returns how many were delivered."""
    delivered = 0

    def clock() -> float:  # The back-off runs from the failure, not from the start of the pass.
        return time.time() if now is None else now

    for alert_id, attempts in store.due_deliveries(sink.name, clock()):
        attempts += 1
        try:
            sink.send(store.alert(alert_id))
        except Exception as exc:  # Whatever this alert does, the next one is still sent.
            if not isinstance(exc, SinkError):
                log.exception("sink %s, alert %s: cannot be sent", sink.name, alert_id)
            error = str(exc) if isinstance(exc, SinkError) else f"{type(exc).__name__}: {exc}"
            dead = attempts >= config.max_attempts
            log.warning("sink %s, alert %s, attempt %d: %s%s", sink.name, alert_id, attempts, error,
                        f" (in the alert dead-letter queue; retried every {config.max_backoff_seconds:g}s)"
                        if dead else "")
            with store.transaction():
                store.record_attempt(alert_id, sink.name, status=DEAD_LETTERED if dead else RETRYING,
                                     attempts=attempts, error=error,
                                     next_attempt_at=clock() + (config.max_backoff_seconds if dead
                                                                else backoff_seconds(config, attempts)))
            continue
        with store.transaction():
            store.record_attempt(alert_id, sink.name, status=DELIVERED, attempts=attempts)
        delivered += 1
    return delivered


class Deliverer:
    def __init__(self, config: DeliveryConfig, sinks: Sequence[Sink], open_store: Callable[[], Store]) -> None:
        self.config = config
        self.sinks = list(sinks)
        self._open_store = open_store
        self._stop = threading.Event()
        self._wake = {sink.name: threading.Event() for sink in self.sinks}
        self._threads = [threading.Thread(target=self._work, args=(sink,), name=f"sink-{sink.name}", daemon=True)
                         for sink in self.sinks]

    def start(self) -> Deliverer:
        for thread in self._threads:
            thread.start()
        return self

    def wake(self) -> None:
        for event in self._wake.values():
            event.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake()
        for thread in self._threads:
            thread.join(timeout)

    def _work(self, sink: Sink) -> None:
        store = self._open_store()
        wake = self._wake[sink.name]
        try:
            while not self._stop.is_set():
                wake.clear()
                try:
                    deliver_due(store, sink, self.config)
                except Exception:  # A bug or a database hiccup must not end delivery for good.
                    log.exception("sink %s: delivery pass failed; retrying", sink.name)
                wake.wait(self.config.poll_seconds)
        finally:
            store.close()
