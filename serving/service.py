"""The serving API, independent of transport.

gRPC and REST both call :class:`ServingCore`: it resolves a ``ModelSpec`` to
a held model version, runs the request (through the batching layer when the
signature allows it), and builds TF Serving's response protos.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass

import numpy as np
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    inference_pb2,
    model_management_pb2,
    model_pb2,
    predict_pb2,
    regression_pb2,
    status_pb2,
)

from serving import errors, inference, tensors
from serving.batching import BatchScheduler, QueueId
from serving.config import ConfigError, model_configs_from_proto
from serving.model_manager import ModelManager, ServableHandle
from serving.servable import Servable, Signature, TensorSpec

SIGNATURE_DEF_FIELD = "signature_def"


@dataclass
class CallInfo:
    """What a request turned out to address; filled in as it resolves (for metrics)."""

    api: str
    model: str = ""
    version: str = ""
    signature: str = ""


def _version_choice(spec: model_pb2.ModelSpec) -> tuple[int | None, str | None]:
    choice = spec.WhichOneof("version_choice")
    if choice == "version":
        return spec.version.value, None
    if choice == "version_label":
        return None, spec.version_label
    return None, None


def _response_spec(target: model_pb2.ModelSpec, servable: Servable, signature: str | None) -> None:
    target.name = servable.name
    target.version.value = servable.version
    if signature is not None:
        target.signature_name = signature


class ServingCore:
    """Predict, Classify, Regress, MultiInference, metadata, status and reload."""

    def __init__(self, manager: ModelManager, scheduler: BatchScheduler | None, *,
                 max_tensor_bytes: int | None = None) -> None:
        self._manager = manager
        self._scheduler = scheduler
        self._max_tensor_bytes = max_tensor_bytes  # no input may decode to more

    # -- resolution and execution ---------------------------------------------------

    def _acquire(self, spec: model_pb2.ModelSpec, call: CallInfo) -> ServableHandle:
        call.model = spec.name
        version, label = _version_choice(spec)
        handle = self._manager.acquire(spec.name, version, label)
        call.version = str(handle.servable.version)
        return handle

    def _runner(self, deadline: float | None) -> inference.Runner:
        def run(servable: Servable, signature: Signature, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            if self._scheduler is None or not signature.batchable or not next(iter(inputs.values())).shape[0]:
                return servable.run(signature, inputs)
            queue = self._scheduler.queue(
                QueueId(servable.name, servable.version, signature.key),
                lambda merged: servable.run(signature, merged),
            )
            future = queue.submit(inputs)
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                return future.result(timeout)
            except FutureTimeout:
                future.cancel()
                raise errors.deadline_exceeded("Deadline exceeded while waiting in the batch queue") from None

        return run

    # -- prediction APIs --------------------------------------------------------

    def predict_arrays(
        self,
        spec: model_pb2.ModelSpec,
        inputs: dict[str, np.ndarray],
        output_filter: Sequence[str],
        call: CallInfo,
        deadline: float | None,
    ) -> tuple[Servable, Signature, dict[str, np.ndarray]]:
        """Predict on numpy inputs (REST builds these straight from JSON)."""
        with self._acquire(spec, call) as servable:
            call.signature = inference.signature_key(spec.signature_name)
            signature, outputs = inference.predict(
                servable, self._runner(deadline), spec.signature_name, inputs, output_filter
            )
            return servable, signature, outputs

    def predict(
        self, request: predict_pb2.PredictRequest, call: CallInfo, deadline: float | None
    ) -> predict_pb2.PredictResponse:
        inputs = {}
        for name, proto in request.inputs.items():
            try:
                inputs[name] = tensors.to_ndarray(proto, self._max_tensor_bytes)
            except tensors.TensorConversionError as exc:
                raise errors.invalid_argument(f"input '{name}': {exc}") from None
        servable, signature, outputs = self.predict_arrays(
            request.model_spec, inputs, request.output_filter, call, deadline
        )
        response = predict_pb2.PredictResponse()
        _response_spec(response.model_spec, servable, signature.key)
        for name, value in outputs.items():
            dtype = signature.outputs[name].dtype
            try:
                response.outputs[name].CopyFrom(tensors.to_tensor_proto(value, dtype))
            except tensors.TensorConversionError as exc:
                raise errors.internal(f"output '{name}': {exc}") from None
        return response

    def classify(
        self, request: classification_pb2.ClassificationRequest, call: CallInfo, deadline: float | None
    ) -> classification_pb2.ClassificationResponse:
        with self._acquire(request.model_spec, call) as servable:
            call.signature = inference.signature_key(request.model_spec.signature_name)
            signature, result = inference.classify(
                servable, self._runner(deadline), request.model_spec.signature_name, request.input
            )
            response = classification_pb2.ClassificationResponse(result=result)
            _response_spec(response.model_spec, servable, signature.key)
            return response

    def regress(
        self, request: regression_pb2.RegressionRequest, call: CallInfo, deadline: float | None
    ) -> regression_pb2.RegressionResponse:
        with self._acquire(request.model_spec, call) as servable:
            call.signature = inference.signature_key(request.model_spec.signature_name)
            signature, result = inference.regress(
                servable, self._runner(deadline), request.model_spec.signature_name, request.input
            )
            response = regression_pb2.RegressionResponse(result=result)
            _response_spec(response.model_spec, servable, signature.key)
            return response

    def multi_inference(
        self, request: inference_pb2.MultiInferenceRequest, call: CallInfo, deadline: float | None
    ) -> inference_pb2.MultiInferenceResponse:
        inference.validate_multi_inference_tasks(request.tasks)
        with self._acquire(request.tasks[0].model_spec, call) as servable:
            call.signature = ",".join(inference.signature_key(t.model_spec.signature_name) for t in request.tasks)
            results = inference.multi_inference(servable, self._runner(deadline), request.tasks, request.input)
            response = inference_pb2.MultiInferenceResponse()
            for signature, result in results:
                entry = response.results.add()
                _response_spec(entry.model_spec, servable, signature.key)
                if isinstance(result, classification_pb2.ClassificationResult):
                    entry.classification_result.CopyFrom(result)
                else:
                    entry.regression_result.CopyFrom(result)
            return response

    # -- model information ------------------------------------------------------

    def input_specs(self, spec: model_pb2.ModelSpec, call: CallInfo) -> Mapping[str, TensorSpec]:
        """A signature's inputs, for decoding REST JSON (TF Serving's REST wording)."""
        with self._acquire(spec, call) as servable:
            key = inference.signature_key(spec.signature_name)
            call.signature = key
            signature = servable.signatures.get(key)
            if signature is None:
                raise errors.invalid_argument(f'Serving signature name: "{key}" not found in signature def')
            return signature.inputs

    def metadata(
        self, request: get_model_metadata_pb2.GetModelMetadataRequest, call: CallInfo
    ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        if not request.HasField("model_spec"):
            raise errors.invalid_argument("Missing ModelSpec")
        if not request.metadata_field:
            raise errors.invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
        for name in request.metadata_field:
            if name != SIGNATURE_DEF_FIELD:
                raise errors.invalid_argument(f"Metadata field {name} is not supported")
        with self._acquire(request.model_spec, call) as servable:
            response = get_model_metadata_pb2.GetModelMetadataResponse()
            _response_spec(response.model_spec, servable, None)
            signature_map = get_model_metadata_pb2.SignatureDefMap()
            for key, proto in servable.signature_defs.items():
                signature_map.signature_def[key].CopyFrom(proto)
            response.metadata[SIGNATURE_DEF_FIELD].Pack(signature_map)
            return response

    def status(
        self, request: get_model_status_pb2.GetModelStatusRequest, call: CallInfo
    ) -> get_model_status_pb2.GetModelStatusResponse:
        if not request.HasField("model_spec"):
            raise errors.invalid_argument("Missing ModelSpec")
        spec = request.model_spec
        call.model = spec.name
        version, label = _version_choice(spec)
        response = get_model_status_pb2.GetModelStatusResponse()
        for entry in self._manager.status(spec.name, version, label):
            status = response.model_version_status.add(version=entry.version, state=entry.state.value)
            if entry.error is None:
                status.status.CopyFrom(status_pb2.StatusProto(error_code=0, error_message=""))
            else:
                status.status.CopyFrom(
                    status_pb2.StatusProto(error_code=entry.error.number, error_message=entry.error.message)
                )
        return response

    def reload_config(
        self, request: model_management_pb2.ReloadConfigRequest, call: CallInfo
    ) -> model_management_pb2.ReloadConfigResponse:
        if request.config.WhichOneof("config") != "model_config_list":
            raise errors.invalid_argument(
                "ServerModelConfig type not supported by HandleReloadConfigRequest. "
                "Only ModelConfigList is currently supported"
            )
        try:
            models = model_configs_from_proto(request.config, source="ReloadConfigRequest")
        except ConfigError as exc:
            raise errors.invalid_argument(str(exc)) from None
        self._manager.reload(models)
        return model_management_pb2.ReloadConfigResponse(status=status_pb2.StatusProto(error_code=0))
