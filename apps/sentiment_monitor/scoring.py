"""Scores texts with the ``sentiment`` model on a TF Serving compatible
server: one Predict request per micro-batch, over :mod:`serving.client`.

The model's signature maps ``text`` to ``probabilities`` [n, 3] and
``all_class_names`` [n, 3]; the probabilities are read by class name, not by
position, so a model trained with another label order still scores right.

Errors that mean "not now" (server down, restarting, model not loaded yet,
deadline) raise :class:`ScoringUnavailable`: the caller keeps the items and
tries again later.  Anything else (wrong model, wrong signature) raises
:class:`ScoringError`, which retrying cannot fix.

Example::

    with SentimentScorer(ScoringConfig(address="127.0.0.1:8500")) as scorer:
        scorer.score(["Nokia cuts 40 jobs"])[0].label   # 'negative'
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from apps.sentiment_monitor.config import ScoringConfig
from apps.sentiment_monitor.items import LABELS, Score
from serving.client import ClientConfig, RetryPolicy, ServingClient, ServingRpcError

TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.NOT_FOUND,
                       grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED})


class ScoringError(RuntimeError):
    """The server answered in a way retrying will not fix."""


class ScoringUnavailable(ScoringError):
    """The model cannot be reached right now; keep the items and retry."""


class SentimentScorer:
    def __init__(self, config: ScoringConfig, *, client: ServingClient | None = None) -> None:
        self.config = config
        # Few in-client retries: the monitor has its own, slower, back-off for a server that stays down.
        self._client = client or ServingClient(ClientConfig(
            address=config.address, timeout_seconds=config.timeout_seconds,
            retry=RetryPolicy(max_attempts=2, initial_backoff_seconds=0.05, max_backoff_seconds=0.2)))
        self.requests = 0  # Predict calls made (one per batch)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> SentimentScorer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def score(self, texts: Sequence[str]) -> list[Score]:
        """One :class:`Score` per text, from a single Predict request."""
        if not texts:
            return []
        try:
            prediction = self._client.predict(self.config.model, list(texts), signature=self.config.signature)
        except ServingRpcError as exc:
            where = f"model {self.config.model!r} at {self.config.address}"
            if exc.code in TRANSIENT:
                raise ScoringUnavailable(f"{where} unavailable: {exc}") from exc
            raise ScoringError(f"{where} refused the request: {exc}") from exc
        finally:
            self.requests += 1
        outputs = prediction.to_python()
        missing = {"probabilities", "all_class_names"} - set(outputs)
        if missing:
            raise ScoringError(f"model {self.config.model!r} has no output(s) {sorted(missing)}; "
                               f"it returned {sorted(outputs)}")
        probabilities, names = outputs["probabilities"], outputs["all_class_names"]
        if len(probabilities) != len(texts):
            raise ScoringError(f"model {self.config.model!r} returned {len(probabilities)} rows for {len(texts)} texts")
        rows = zip(probabilities, names, strict=True)
        return [_score(dict(zip(row_names, row, strict=True))) for row, row_names in rows]


def _score(by_name: dict[str, float]) -> Score:
    if set(by_name) != set(LABELS):
        raise ScoringError(f"the model's classes are {sorted(by_name)}, expected {list(LABELS)}")
    label = max(LABELS, key=lambda name: by_name[name])
    return Score(label, float(by_name["negative"]), float(by_name["neutral"]), float(by_name["positive"]))
