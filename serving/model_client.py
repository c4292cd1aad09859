"""The apps' one way to call a served model, on top of :mod:`serving.client`.

:class:`ModelClient` adds what every app wrapped around ``ServingClient.predict``
itself: a deadline and retries from the app's configuration, rows split into
calls of at most ``max_rows_per_call`` (a server with batching on refuses larger
requests, as TF Serving does) sent ``parallel_calls`` at a time and joined in
order, a check that every wanted output came back with one row per input row,
and gRPC failures turned into one error hierarchy:

- :class:`ModelCallError`: the base, with ``model``, ``address`` and ``code``;
- :class:`ModelUnavailable`: not answered (UNAVAILABLE after the client's
  retries, RESOURCE_EXHAUSTED); retry later.  :class:`ModelTimeout`: its
  DEADLINE_EXCEEDED case;
- :class:`ModelNotServed`: NOT_FOUND, no version of the model is served (not
  loaded yet, or none was pushed); whether that is worth waiting for is the
  app's call;
- :class:`ModelError`: refused (any other code), or an answer without a wanted
  output or with the wrong number of rows.

An app's own errors (with their HTTP status) derive from these, so one
``except ModelUnavailable`` holds for every app.

Example::

    with ModelClient("127.0.0.1:8500", deadline_seconds=2.0) as models:
        answer = models.predict("intent", ["I lost my card"], ("probabilities", "all_class_names"))
        answer.version, answer.outputs["probabilities"].shape      # (1, (1, 8))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import grpc
import numpy as np

from serving.client import (
    DEFAULT_INPUT,
    DEFAULT_SIGNATURE,
    ClientConfig,
    Prediction,
    RetryPolicy,
    ServingClient,
    ServingRpcError,
    to_python,
)
from serving.model_errors import (
    ModelCallError,
    ModelError,
    ModelNotServed,
    ModelTimeout,
    ModelUnavailable,
)

__all__ = ["Answer", "ModelCallError", "ModelClient", "ModelError", "ModelNotServed", "ModelTimeout",
           "ModelUnavailable"]


@dataclass(frozen=True)
class Answer:
    """The outputs of one logical call (all its rows, in order) and the model version that answered."""

    model: str
    version: int
    outputs: dict[str, np.ndarray]

    def to_python(self) -> dict[str, Any]:
        """Outputs as nested Python lists, bytes decoded as UTF-8 text."""
        return {name: to_python(value) for name, value in self.outputs.items()}


class ModelClient:
    """One gRPC channel to a model server; safe to share between threads.

    ``deadline_seconds`` is per attempt; ``max_attempts`` counts the client's
    retries of UNAVAILABLE (``retry`` gives the whole policy instead).
    ``max_rows_per_call`` 0 sends every row in one call.
    """

    def __init__(self, address: str, *, deadline_seconds: float = 10.0, max_attempts: int = 2,
                 retry: RetryPolicy | None = None, signature: str = DEFAULT_SIGNATURE, max_rows_per_call: int = 0,
                 parallel_calls: int = 1, client: ServingClient | None = None) -> None:
        self.address = address
        self.signature = signature
        self.max_rows_per_call = max_rows_per_call
        self.client = client or ServingClient(ClientConfig(
            address=address, timeout_seconds=deadline_seconds,
            retry=retry or RetryPolicy(max_attempts=max_attempts)))
        self._pool = ThreadPoolExecutor(parallel_calls, thread_name_prefix="model-call") if parallel_calls > 1 else None
        self.calls = 0  # Predict calls made (one per chunk of rows)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
        self.client.close()

    def __enter__(self) -> ModelClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def predict(self, model: str, inputs: Sequence[str] | Mapping[str, Sequence[Any]], outputs: Sequence[str], *,
                input_name: str = DEFAULT_INPUT, signature: str | None = None,
                timeout: float | None = None) -> Answer:
        """``outputs`` of ``model`` for ``inputs`` (texts for ``input_name``, or aligned columns by input name),
        each with one row per input row.  ``timeout``: this call's deadline instead of the configured one."""
        columns = {name: list(values) for name, values in inputs.items()} if isinstance(inputs, Mapping) else {
            input_name: list(inputs)}
        rows = {len(values) for values in columns.values()}
        if len(rows) != 1 or 0 in rows:
            lengths = [len(v) for v in columns.values()]
            raise ValueError(f"inputs must be non-empty columns of one length, got lengths {lengths}")
        (count,) = rows
        size = self.max_rows_per_call or count
        chunks = [{name: values[start:start + size] for name, values in columns.items()}
                  for start in range(0, count, size)]

        def call(chunk: dict[str, list[Any]]) -> Prediction:
            return self._call(model, chunk, tuple(outputs), signature or self.signature, timeout)

        if len(chunks) == 1 or self._pool is None:
            parts = [call(chunk) for chunk in chunks]
        else:  # In flight together (the server runs them on its batch threads); back in row order.
            parts = list(self._pool.map(call, chunks))
        joined = {name: parts[0].outputs[name] if len(parts) == 1 else
                  np.concatenate([part.outputs[name] for part in parts]) for name in outputs}
        return Answer(model, parts[-1].version, joined)

    def _call(self, model: str, inputs: dict[str, list[Any]], outputs: tuple[str, ...], signature: str,
              timeout: float | None) -> Prediction:
        where = f"model server {self.address} (model {model!r})"
        self.calls += 1
        try:
            prediction = self.client.predict(model, inputs, signature=signature, output_filter=outputs,
                                             timeout=timeout)
        except ServingRpcError as exc:
            error: ModelCallError
            if exc.code == grpc.StatusCode.DEADLINE_EXCEEDED:
                error = ModelTimeout(f"{where} did not answer in time: {exc.code.name}: {exc.details}")
            elif exc.code == grpc.StatusCode.NOT_FOUND:
                error = ModelNotServed(f"{where} serves no version of it: {exc.code.name}: {exc.details}")
            elif exc.transient:
                error = ModelUnavailable(f"{where} did not answer: {exc.code.name}: {exc.details}")
            else:
                error = ModelError(f"{where} refused the request: {exc.code.name}: {exc.details}")
            raise _located(error, model, self.address, exc.code) from None
        missing = [name for name in outputs if name not in prediction.outputs]
        if missing:
            raise _located(ModelError(f"model {model!r} returned no {missing}; the caller needs outputs "
                                      f"{list(outputs)}"), model, self.address, None)
        rows = len(next(iter(inputs.values())))
        wrong = {name: prediction.outputs[name].shape for name in outputs
                 if prediction.outputs[name].ndim == 0 or prediction.outputs[name].shape[0] != rows}
        if wrong:
            raise _located(ModelError(f"model {model!r} answered {rows} rows with outputs of shapes {wrong}"),
                           model, self.address, None)
        return prediction


def _located(error: ModelCallError, model: str, address: str, code: grpc.StatusCode | None) -> ModelCallError:
    error.model, error.address, error.code = model, address, code
    return error
