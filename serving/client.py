"""The client the apps use to call a TF Serving compatible server over gRPC.

It speaks only the public ``tensorflow_serving.apis`` protocol, so the same
code works against this repository's server and against a real
``tensorflow_model_server``.  One :class:`ServingClient` holds one channel
(with keepalive, optional TLS) and is safe to share between threads.  Each
call has a deadline; calls failing with UNAVAILABLE (server restarting,
draining, not reachable yet) are retried with exponential backoff and
jitter, every other error is raised at once as :class:`ServingRpcError`.

Example::

    with ServingClient(ClientConfig(address="localhost:8500")) as client:
        prediction = client.predict("intent", ["I lost my card"])
        prediction.outputs["class_names"]        # numpy array of bytes
        prediction.to_python()["class_names"]    # ['lost_or_stolen_card']
        client.predict("reranker", {"query": ["card"], "item_text": ["lost card"]})
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import numpy as np
from tensorflow.core.example import example_pb2, feature_pb2
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    input_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
    regression_pb2,
)

from serving import tensors

DEFAULT_INPUT = "text"
DEFAULT_SIGNATURE = "serving_default"

Response = TypeVar("Response")


@dataclass(frozen=True)
class TlsOptions:
    """PEM bytes for a TLS channel; all optional (system roots by default)."""

    root_certificates: bytes | None = None
    private_key: bytes | None = None  # with certificate_chain: mutual TLS
    certificate_chain: bytes | None = None
    server_name_override: str | None = None  # when the certificate names another host


@dataclass(frozen=True)
class RetryPolicy:
    """Retries of UNAVAILABLE only, with exponential backoff and jitter."""

    max_attempts: int = 4
    initial_backoff_seconds: float = 0.1
    max_backoff_seconds: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.2  # +/- this fraction of each backoff

    def backoff(self, retry: int) -> float:
        base = min(self.max_backoff_seconds, self.initial_backoff_seconds * self.multiplier**retry)
        return max(0.0, base * (1 + random.uniform(-self.jitter, self.jitter)))


@dataclass(frozen=True)
class ClientConfig:
    """Where the server is and how to talk to it."""

    address: str  # host:port of the gRPC endpoint
    timeout_seconds: float = 10.0  # deadline of each attempt
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    keepalive_time_ms: int = 60_000  # ping an idle-but-busy connection this often
    keepalive_timeout_ms: int = 20_000
    # gRPC's default reconnect back-off grows to 120 s, so a server back after 20 s down could be
    # reached up to ~20 s late; capped at 0.5 s, calls resume within a second of it being ready.
    initial_reconnect_backoff_ms: int = 100
    max_reconnect_backoff_ms: int = 500
    tls: TlsOptions | None = None
    max_message_bytes: int = 64 * 1024 * 1024


class ServingRpcError(Exception):
    """A call that failed (after retries, for UNAVAILABLE)."""

    # Worth retrying later: the server is down, slow or shedding load.
    TRANSIENT_CODES = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
                                 grpc.StatusCode.RESOURCE_EXHAUSTED})

    def __init__(self, code: grpc.StatusCode, details: str, attempts: int = 1) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.attempts = attempts

    @property
    def transient(self) -> bool:
        return self.code in self.TRANSIENT_CODES


@dataclass(frozen=True)
class Prediction:
    """A Predict response: which version answered, and its outputs as numpy arrays."""

    model: str
    version: int
    signature: str
    outputs: dict[str, np.ndarray]

    def to_python(self) -> dict[str, Any]:
        """Outputs as nested Python lists, bytes decoded as UTF-8 text."""
        return {name: to_python(value) for name, value in self.outputs.items()}


# -- request/response helpers -------------------------------------------------------


def model_spec(
    model: str, *, signature: str = "", version: int | None = None, label: str | None = None
) -> model_pb2.ModelSpec:
    """A ModelSpec: latest version unless ``version`` or ``label`` is given."""
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    spec = model_pb2.ModelSpec(name=model, signature_name=signature)
    if version is not None:
        spec.version.value = version
    elif label is not None:
        spec.version_label = label
    return spec


def _as_array(values: Any) -> np.ndarray:
    if isinstance(values, np.ndarray):
        return values
    array = np.asarray(values)
    if array.dtype.kind in ("U", "S", "O"):
        return tensors.as_bytes_array(values)
    return array


def build_predict_request(
    model: str,
    inputs: Sequence[Any] | Mapping[str, Any],
    *,
    input_name: str = DEFAULT_INPUT,
    signature: str = DEFAULT_SIGNATURE,
    version: int | None = None,
    label: str | None = None,
    output_filter: Sequence[str] = (),
) -> predict_pb2.PredictRequest:
    """A PredictRequest from a list (one input, ``input_name``) or a dict of lists.

    Lists of ``str``/``bytes`` become DT_STRING tensors; numbers keep numpy's
    dtype (pass a typed ``np.ndarray`` to choose it).
    """
    named = inputs if isinstance(inputs, Mapping) else {input_name: inputs}
    request = predict_pb2.PredictRequest(
        model_spec=model_spec(model, signature=signature, version=version, label=label),
        output_filter=list(output_filter),
    )
    for name, values in named.items():
        request.inputs[name].CopyFrom(tensors.to_tensor_proto(_as_array(values)))
    return request


def _feature(values: Any) -> feature_pb2.Feature:
    items = list(values) if isinstance(values, (list, tuple, np.ndarray)) else [values]
    if all(isinstance(v, (str, bytes)) for v in items):
        return feature_pb2.Feature(
            bytes_list=feature_pb2.BytesList(value=[v.encode("utf-8") if isinstance(v, str) else v for v in items])
        )
    if all(isinstance(v, (bool, int, np.integer)) for v in items):
        return feature_pb2.Feature(int64_list=feature_pb2.Int64List(value=[int(v) for v in items]))
    return feature_pb2.Feature(float_list=feature_pb2.FloatList(value=[float(v) for v in items]))


def make_example(features: Mapping[str, Any]) -> example_pb2.Example:
    """A tf.Example from ``{name: value or list of values}`` (str/bytes, int, float)."""
    example = example_pb2.Example()
    for name, values in features.items():
        example.features.feature[name].CopyFrom(_feature(values))
    return example


def build_examples_input(
    examples: Sequence[Mapping[str, Any]], context: Mapping[str, Any] | None = None
) -> input_pb2.Input:
    """The ``Input`` of a Classify/Regress request."""
    request_input = input_pb2.Input()
    if context is None:
        request_input.example_list.examples.extend(make_example(e) for e in examples)
    else:
        request_input.example_list_with_context.context.CopyFrom(make_example(context))
        request_input.example_list_with_context.examples.extend(make_example(e) for e in examples)
    return request_input


def outputs_to_numpy(response: predict_pb2.PredictResponse) -> dict[str, np.ndarray]:
    """A PredictResponse's outputs as numpy arrays (DT_STRING as object arrays of bytes)."""
    return {name: tensors.to_ndarray(proto) for name, proto in response.outputs.items()}


def to_python(array: np.ndarray) -> Any:
    """Nested Python lists; bytes decoded as UTF-8."""
    if array.dtype == object:
        decode = np.vectorize(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v, otypes=[object])
        return decode(array).tolist() if array.size else array.tolist()
    return array.tolist()


# -- the client -------------------------------------------------------------------------


class ServingClient:
    """gRPC client for PredictionService and ModelService."""

    def __init__(self, config: ClientConfig, *, channel: grpc.Channel | None = None) -> None:
        self.config = config
        self._channel = channel if channel is not None else self._open_channel(config)
        self._predictions = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._lock = threading.Lock()
        self.attempts = 0  # RPC attempts made, retries included (for observability)

    @staticmethod
    def _open_channel(config: ClientConfig) -> grpc.Channel:
        options: list[tuple[str, int | str]] = [
            ("grpc.keepalive_time_ms", config.keepalive_time_ms),
            ("grpc.keepalive_timeout_ms", config.keepalive_timeout_ms),
            ("grpc.max_receive_message_length", config.max_message_bytes),
            ("grpc.max_send_message_length", config.max_message_bytes),
            ("grpc.initial_reconnect_backoff_ms", config.initial_reconnect_backoff_ms),
            ("grpc.max_reconnect_backoff_ms", config.max_reconnect_backoff_ms),
        ]
        if config.tls is None:
            return grpc.insecure_channel(config.address, options=options)
        tls = config.tls
        if tls.server_name_override:
            options.append(("grpc.ssl_target_name_override", tls.server_name_override))
        credentials = grpc.ssl_channel_credentials(
            root_certificates=tls.root_certificates,
            private_key=tls.private_key,
            certificate_chain=tls.certificate_chain,
        )
        return grpc.secure_channel(config.address, credentials, options=options)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> ServingClient:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _call(self, method: Callable[..., Response], request: Any, timeout: float | None) -> Response:
        policy = self.config.retry
        deadline = self.config.timeout_seconds if timeout is None else timeout
        for attempt in range(1, policy.max_attempts + 1):
            with self._lock:
                self.attempts += 1
            try:
                return method(request, timeout=deadline)
            except grpc.RpcError as exc:
                code = exc.code()
                if code != grpc.StatusCode.UNAVAILABLE or attempt == policy.max_attempts:
                    raise ServingRpcError(code, exc.details() or "", attempt) from None
            time.sleep(policy.backoff(attempt - 1))
        raise AssertionError("unreachable")

    # -- PredictionService --------------------------------------------------------

    def predict(
        self,
        model: str,
        inputs: Sequence[Any] | Mapping[str, Any],
        *,
        input_name: str = DEFAULT_INPUT,
        signature: str = DEFAULT_SIGNATURE,
        version: int | None = None,
        label: str | None = None,
        output_filter: Sequence[str] = (),
        timeout: float | None = None,
    ) -> Prediction:
        """Runs a Predict call; see :func:`build_predict_request` for ``inputs``."""
        request = build_predict_request(
            model,
            inputs,
            input_name=input_name,
            signature=signature,
            version=version,
            label=label,
            output_filter=output_filter,
        )
        return self.predict_request(request, timeout=timeout)

    def predict_request(self, request: predict_pb2.PredictRequest, *, timeout: float | None = None) -> Prediction:
        response = self._call(self._predictions.Predict, request, timeout)
        return Prediction(
            model=response.model_spec.name,
            version=response.model_spec.version.value,
            signature=response.model_spec.signature_name,
            outputs=outputs_to_numpy(response),
        )

    def classify(
        self,
        model: str,
        examples: Sequence[Mapping[str, Any]],
        *,
        context: Mapping[str, Any] | None = None,
        signature: str = DEFAULT_SIGNATURE,
        version: int | None = None,
        label: str | None = None,
        timeout: float | None = None,
    ) -> list[list[tuple[str, float]]]:
        """(label, score) pairs per example."""
        request = classification_pb2.ClassificationRequest(
            model_spec=model_spec(model, signature=signature, version=version, label=label),
            input=build_examples_input(examples, context),
        )
        response = self._call(self._predictions.Classify, request, timeout)
        return [[(c.label, c.score) for c in row.classes] for row in response.result.classifications]

    def regress(
        self,
        model: str,
        examples: Sequence[Mapping[str, Any]],
        *,
        context: Mapping[str, Any] | None = None,
        signature: str = DEFAULT_SIGNATURE,
        version: int | None = None,
        label: str | None = None,
        timeout: float | None = None,
    ) -> list[float]:
        """One value per example."""
        request = regression_pb2.RegressionRequest(
            model_spec=model_spec(model, signature=signature, version=version, label=label),
            input=build_examples_input(examples, context),
        )
        response = self._call(self._predictions.Regress, request, timeout)
        return [r.value for r in response.result.regressions]

    def signatures(
        self, model: str, *, version: int | None = None, label: str | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """The model's signature defs (``SignatureDef`` protos by key)."""
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            model_spec=model_spec(model, version=version, label=label), metadata_field=["signature_def"]
        )
        response = self._call(self._predictions.GetModelMetadata, request, timeout)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        response.metadata["signature_def"].Unpack(signature_map)
        return dict(signature_map.signature_def)

    # -- ModelService -------------------------------------------------------------------

    def model_status(
        self, model: str, *, version: int | None = None, label: str | None = None, timeout: float | None = None
    ) -> dict[int, str]:
        """``{version: state name}``, e.g. ``{2: "AVAILABLE", 1: "END"}``."""
        request = get_model_status_pb2.GetModelStatusRequest(model_spec=model_spec(model, version=version, label=label))
        response = self._call(self._models.GetModelStatus, request, timeout)
        return {
            s.version: get_model_status_pb2.ModelVersionStatus.State.Name(s.state)
            for s in response.model_version_status
        }

    def wait_until_available(self, model: str, timeout_seconds: float = 60.0, poll_seconds: float = 0.5) -> int:
        """Blocks until some version of ``model`` is AVAILABLE; returns the newest such version."""
        deadline = time.monotonic() + timeout_seconds
        while True:
            try:
                available = [v for v, state in self.model_status(model).items() if state == "AVAILABLE"]
                if available:
                    return max(available)
            except ServingRpcError as exc:
                if exc.code not in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNAVAILABLE):
                    raise
            if time.monotonic() >= deadline:
                raise TimeoutError(f"model {model} not available after {timeout_seconds}s")
            time.sleep(poll_seconds)
