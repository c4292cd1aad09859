"""Scores texts with the ``sentiment`` model on a TF Serving compatible
server: one Predict request per micro-batch, through the suite's model client
(:mod:`serving.model_client`: deadline, retries, output and row checks).

The model's signature maps ``text`` to ``probabilities`` [n, 3] and
``all_class_names`` [n, 3]; the probabilities are read by class name, not by
position, so a model trained with another label order still scores right.

Errors that mean "not now" (server down, restarting, model not loaded yet,
deadline, call aborted or cancelled) raise :class:`ScoringUnavailable`: the caller keeps the items and
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
from serving.client import RetryPolicy, ServingClient
from serving.model_client import ModelCallError, ModelClient, ModelNotServed, ModelUnavailable

OUTPUTS = ("probabilities", "all_class_names")
# Besides no answer and no version served yet (the model is loading): calls the server gave up on.
RETRYABLE_CODES = frozenset({grpc.StatusCode.ABORTED, grpc.StatusCode.CANCELLED})


class ScoringError(RuntimeError):
    """The server answered in a way retrying will not fix."""


class ScoringUnavailable(ScoringError):
    """The model cannot be reached right now; keep the items and retry."""


class SentimentScorer:
    def __init__(self, config: ScoringConfig, *, client: ServingClient | None = None) -> None:
        self.config = config
        # Few in-client retries: the monitor has its own, slower, back-off for a server that stays down.
        self._models = ModelClient(
            config.address, deadline_seconds=config.timeout_seconds, signature=config.signature, client=client,
            retry=RetryPolicy(max_attempts=2, initial_backoff_seconds=0.05, max_backoff_seconds=0.2))
        self.requests = 0  # Predict calls made (one per batch)

    def close(self) -> None:
        self._models.close()

    def __enter__(self) -> SentimentScorer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def score(self, texts: Sequence[str]) -> list[Score]:
        """One :class:`Score` per text, from a single Predict request."""
        if not texts:
            return []
        try:
            answer = self._models.predict(self.config.model, list(texts), OUTPUTS)
        except (ModelUnavailable, ModelNotServed) as exc:
            raise ScoringUnavailable(str(exc)) from exc
        except ModelCallError as exc:
            if exc.code in RETRYABLE_CODES:
                raise ScoringUnavailable(str(exc)) from exc
            raise ScoringError(str(exc)) from exc  # A wrong model or signature: retrying will not fix it.
        finally:
            self.requests += 1
        outputs = answer.to_python()
        rows = zip(outputs["probabilities"], outputs["all_class_names"], strict=True)
        return [_score(dict(zip(row_names, row, strict=True))) for row, row_names in rows]


def _score(by_name: dict[str, float]) -> Score:
    if set(by_name) != set(LABELS):
        raise ScoringError(f"the model's classes are {sorted(by_name)}, expected {list(LABELS)}")
    label = max(LABELS, key=lambda name: by_name[name])
    return Score(label, float(by_name["negative"]), float(by_name["neutral"]), float(by_name["positive"]))
