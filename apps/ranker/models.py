"""The two served models, called over the TF Serving gRPC API (``serving.client``).

- the embedder (``server.embedder_model``): ``text`` [-1] -> ``embedding`` [-1, D],
  rows L2-normalised, so cosine similarity is a dot product;
- the re-ranker (``server.reranker_model``): ``query``, ``item_text`` [-1] (aligned)
  -> ``score`` [-1] (a logit, higher is more relevant) and ``probability`` [-1].

A call carries at most ``server.max_rows_per_call`` rows: a server with batching
on refuses a request larger than its ``max_batch_size`` (TF Serving does too),
so a larger batch goes out as several calls at once, ``parallel_calls`` in
flight, and comes back in order.  With ``max_rows_per_call >= rerank_depth`` a
re-rank is one Predict call.

Calls go through ``serving.model_client``; its errors become the app's:
UNAVAILABLE (after the client's retries), DEADLINE_EXCEEDED and
RESOURCE_EXHAUSTED are :class:`ModelUnavailable`, anything else is
:class:`ModelError`.  Two of them are told apart: DEADLINE_EXCEEDED is
:class:`ModelTimeout` (a request's time budget ran out), NOT_FOUND :class:`ModelNotServed`
(no version of the model is served: for the re-ranker, none was blessed).

Example::

    with Models(ServerConfig(address="127.0.0.1:8500")) as models:
        models.embed(["a light tent"]).shape            # (1, D)
        models.rerank("a light tent", ["tent", "pan"])   # (scores, probabilities)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from apps.ranker.config import ServerConfig
from apps.ranker.errors import ModelError, ModelNotServed, ModelTimeout, ModelUnavailable
from serving import model_errors
from serving.client import ServingClient
from serving.model_client import Answer, ModelClient

# The model client's errors as the ranker's (which carry HTTP statuses), most specific first.
_APP_ERRORS: tuple[tuple[type[model_errors.ModelCallError], type[Exception]], ...] = (
    (model_errors.ModelTimeout, ModelTimeout), (model_errors.ModelUnavailable, ModelUnavailable),
    (model_errors.ModelNotServed, ModelNotServed))


class Models:
    """One gRPC channel to the model server; safe to share between threads."""

    def __init__(self, server: ServerConfig, client: ServingClient | None = None) -> None:
        self.server = server
        self._models = ModelClient(
            server.address, deadline_seconds=server.deadline_seconds, max_attempts=server.max_attempts,
            signature=server.signature, max_rows_per_call=server.max_rows_per_call,
            parallel_calls=server.parallel_calls, client=client)
        self.client = self._models.client  # The gRPC client (its `attempts` count the calls made).

    def close(self) -> None:
        self._models.close()

    def __enter__(self) -> Models:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def embed(self, texts: Sequence[str], *, bulk: bool = False) -> np.ndarray:
        """[len(texts), D] float32 unit vectors.  ``bulk`` (ingestion, evaluation): the longer deadline."""
        return self.embed_with_version(texts, bulk=bulk)[0]

    def embed_with_version(self, texts: Sequence[str], *, bulk: bool = False) -> tuple[np.ndarray, int]:
        """:meth:`embed`, and the model version that answered."""
        if not texts:
            return np.zeros((0, 0), dtype=np.float32), 0
        answer = self._predict(self.server.embedder_model, {"text": list(texts)}, ("embedding",), bulk)
        embeddings = np.asarray(answer.outputs["embedding"], dtype=np.float32)
        if embeddings.ndim != 2:
            raise ModelError(f"model {self.server.embedder_model!r} returned embeddings of shape "
                             f"{embeddings.shape} for {len(texts)} texts; expected [rows, D]")
        return embeddings, answer.version

    def rerank(self, query: str, item_texts: Sequence[str], *, bulk: bool = False,
               timeout: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, probabilities) of each item for ``query``.  ``timeout`` (seconds): this call's deadline
        instead of the configured one (a request's remaining time budget); past it, :class:`ModelTimeout`."""
        if not item_texts:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        answer = self._predict(self.server.reranker_model,
                               {"query": [query] * len(item_texts), "item_text": list(item_texts)},
                               ("score", "probability"), bulk, timeout)
        scores = np.asarray(answer.outputs["score"], np.float32).reshape(-1)
        probabilities = np.asarray(answer.outputs["probability"], np.float32).reshape(-1)
        if scores.shape[0] != len(item_texts) or probabilities.shape[0] != len(item_texts):
            raise ModelError(f"model {self.server.reranker_model!r} scored {scores.shape[0]} of "
                             f"{len(item_texts)} pairs")
        return scores, probabilities

    def _predict(self, model: str, inputs: Mapping[str, list[str]], outputs: tuple[str, ...],
                 bulk: bool, timeout: float | None = None) -> Answer:
        """Through the model client: ``max_rows_per_call`` rows a call, in flight together, in row order."""
        if timeout is None:
            timeout = self.server.ingest_deadline_seconds if bulk else None
        try:
            return self._models.predict(model, inputs, outputs, timeout=timeout)
        except model_errors.ModelCallError as exc:
            app_error = next((app for client, app in _APP_ERRORS if isinstance(exc, client)), ModelError)
            raise app_error(str(exc)) from None
