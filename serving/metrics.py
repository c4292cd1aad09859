"""Prometheus metrics of one server, in a registry of its own.

Each :class:`ServerMetrics` owns a ``CollectorRegistry`` (never the global
one), so several servers in one process -- as in the tests -- keep separate
counts.  Exposed at the monitoring config's path on the REST port.
"""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# The states of ``ModelVersionStatus.State`` a version can be in.
VERSION_STATES = ["START", "LOADING", "AVAILABLE", "UNLOADING", "END"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
_LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class ServerMetrics:
    """Request, batching and model-lifecycle metrics for one server."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        request_labels = ["model", "version", "signature", "api", "code"]
        self.requests = Counter(
            "serving_requests",
            "Requests handled, by model, version, signature, API and status code.",
            request_labels,
            registry=self.registry,
        )
        self.request_latency = Histogram(
            "serving_request_latency_seconds",
            "Time from receiving a request to answering it.",
            request_labels,
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        batch_labels = ["model", "version", "signature"]
        self.batch_size = Histogram(
            "serving_batch_size",
            "Rows of real requests per batched call (before padding).",
            batch_labels,
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_padding_rows = Counter(
            "serving_batch_padding_rows",
            "Rows added to reach an allowed batch size.",
            batch_labels,
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "serving_batch_queue_depth",
            "Requests waiting in a batching queue.",
            batch_labels,
            registry=self.registry,
        )
        self.model_load_seconds = Histogram(
            "serving_model_load_seconds",
            "Time to load a model version, including warm-up.",
            ["model", "version"],
            buckets=_LOAD_BUCKETS,
            registry=self.registry,
        )
        self.model_load_failures = Counter(
            "serving_model_load_failures",
            "Model versions that failed to load.",
            ["model", "version"],
            registry=self.registry,
        )
        self.model_load_error = Gauge(
            "serving_model_version_load_error",
            "1 while a model version's last load failed (it is retried), 0 once it loaded.",
            ["model", "version"],
            registry=self.registry,
        )
        self.version_state = Enum(
            "serving_model_version_state",
            "Lifecycle state of each model version.",
            ["model", "version"],
            states=VERSION_STATES,
            registry=self.registry,
        )
        self.in_flight = Gauge("serving_in_flight_requests", "Requests being handled.", registry=self.registry)

    def observe_request(
        self, *, model: str, version: str, signature: str, api: str, code: str, seconds: float
    ) -> None:
        labels = {"model": model, "version": version, "signature": signature, "api": api, "code": code}
        self.requests.labels(**labels).inc()
        self.request_latency.labels(**labels).observe(seconds)

    def set_version_state(self, model: str, version: int, state: str) -> None:
        self.version_state.labels(model=model, version=str(version)).state(state)

    def forget_queue(self, model: str, version: int, signature: str) -> None:
        """Drops the queue gauge of a retired version so series do not pile up."""
        try:
            self.queue_depth.remove(model, str(version), signature)
        except KeyError:
            pass

    def exposition(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)
