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

gRPC failures become the app's errors: UNAVAILABLE (after the client's
retries), DEADLINE_EXCEEDED and RESOURCE_EXHAUSTED are :class:`ModelUnavailable`,
anything else is :class:`ModelError`.  Two of them are told apart: DEADLINE_EXCEEDED is
:class:`ModelTimeout` (a request's time budget ran out), NOT_FOUND :class:`ModelNotServed`
(no version of the model is served: for the re-ranker, none was blessed).

Example::

    with Models(ServerConfig(address="127.0.0.1:8500")) as models:
        models.embed(["a light tent"]).shape            # (1, D)
        models.rerank("a light tent", ["tent", "pan"])   # (scores, probabilities)
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np

from apps.ranker.config import ServerConfig
from apps.ranker.errors import ModelError, ModelNotServed, ModelTimeout, ModelUnavailable
from serving.client import ClientConfig, Prediction, RetryPolicy, ServingClient, ServingRpcError


class Models:
    """One gRPC channel to the model server; safe to share between threads."""

    def __init__(self, server: ServerConfig, client: ServingClient | None = None) -> None:
        self.server = server
        self.client = client or ServingClient(ClientConfig(
            address=server.address, timeout_seconds=server.deadline_seconds,
            retry=RetryPolicy(max_attempts=server.max_attempts)))
        self._pool = ThreadPoolExecutor(server.parallel_calls, thread_name_prefix="ranker-predict")

    def close(self) -> None:
        self._pool.shutdown(wait=False)
        self.client.close()

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
        predictions = self._predict_rows(self.server.embedder_model, {"text": list(texts)}, ("embedding",), bulk)
        parts = [np.asarray(p.outputs["embedding"], dtype=np.float32) for p in predictions]
        if any(part.ndim != 2 for part in parts) or sum(len(part) for part in parts) != len(texts):
            raise ModelError(f"model {self.server.embedder_model!r} returned embeddings of shapes "
                             f"{[part.shape for part in parts]} for {len(texts)} texts; expected [rows, D]")
        return np.concatenate(parts), predictions[-1].version

    def rerank(self, query: str, item_texts: Sequence[str], *, bulk: bool = False,
               timeout: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, probabilities) of each item for ``query``.  ``timeout`` (seconds): this call's deadline
        instead of the configured one (a request's remaining time budget); past it, :class:`ModelTimeout`."""
        if not item_texts:
            return np.zeros(0, np.float32), np.zeros(0, np.float32)
        predictions = self._predict_rows(self.server.reranker_model,
                                         {"query": [query] * len(item_texts), "item_text": list(item_texts)},
                                         ("score", "probability"), bulk, timeout)
        scores = np.concatenate([np.asarray(p.outputs["score"], np.float32).reshape(-1) for p in predictions])
        probabilities = np.concatenate([np.asarray(p.outputs["probability"], np.float32).reshape(-1)
                                        for p in predictions])
        if scores.shape[0] != len(item_texts) or probabilities.shape[0] != len(item_texts):
            raise ModelError(f"model {self.server.reranker_model!r} scored {scores.shape[0]} of "
                             f"{len(item_texts)} pairs")
        return scores, probabilities

    def _predict_rows(self, model: str, inputs: dict[str, list[str]], outputs: tuple[str, ...],
                      bulk: bool, timeout: float | None = None) -> list[Prediction]:
        """One Predict call per ``max_rows_per_call`` rows, in flight together; predictions in row order."""
        if timeout is None:
            timeout = self.server.ingest_deadline_seconds if bulk else None
        rows = len(next(iter(inputs.values())))
        size = self.server.max_rows_per_call
        chunks = [{name: values[start:start + size] for name, values in inputs.items()}
                  for start in range(0, rows, size)]
        if len(chunks) == 1:
            return [self._predict(model, chunks[0], outputs, timeout)]
        return list(self._pool.map(lambda chunk: self._predict(model, chunk, outputs, timeout), chunks))

    def _predict(self, model: str, inputs: dict, outputs: tuple[str, ...], timeout: float | None) -> Prediction:
        try:
            prediction = self.client.predict(model, inputs, signature=self.server.signature,
                                             output_filter=outputs, timeout=timeout)
        except ServingRpcError as exc:
            where = f"model server {self.server.address} (model {model!r})"
            if exc.code == grpc.StatusCode.DEADLINE_EXCEEDED:
                raise ModelTimeout(f"{where} did not answer in time: {exc.code.name}: {exc.details}") from None
            if exc.code == grpc.StatusCode.NOT_FOUND:
                raise ModelNotServed(f"{where} serves no version of it: {exc.details}") from None
            if exc.transient:
                raise ModelUnavailable(f"{where} did not answer: {exc.code.name}: {exc.details}") from None
            raise ModelError(f"{where} refused the request: {exc.code.name}: {exc.details}") from None
        missing = [name for name in outputs if name not in prediction.outputs]
        if missing:
            raise ModelError(f"model {model!r} returned no {missing}; the app needs outputs {list(outputs)}")
        return prediction
