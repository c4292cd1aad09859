"""gRPC ``PredictionService`` and ``ModelService`` on the generated servicers."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import grpc
from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

from serving import errors
from serving.errors import ServingError
from serving.lifecycle import RequestGate
from serving.metrics import ServerMetrics
from serving.service import CallInfo, ServingCore

log = logging.getLogger(__name__)

Response = TypeVar("Response")
_NO_DEADLINE = 10.0**7  # seconds


def _request_id(context: grpc.ServicerContext) -> str:
    given = dict(context.invocation_metadata() or ()).get("x-request-id")
    return errors.request_id(given if isinstance(given, str) else None)


class _Dispatcher:
    """Admission, deadlines, error mapping and metrics shared by both services."""

    def __init__(self, core: ServingCore, gate: RequestGate, metrics: ServerMetrics) -> None:
        self.core = core
        self._gate = gate
        self._metrics = metrics

    def call(
        self,
        api: str,
        context: grpc.ServicerContext,
        handler: Callable[[CallInfo, float | None], Response],
    ) -> Response:
        call = CallInfo(api=api)
        started = time.monotonic()
        code = grpc.StatusCode.OK
        try:
            with self._gate:
                remaining = context.time_remaining()
                # Without a client deadline gRPC reports an effectively infinite remainder.
                deadline = None if remaining is None or remaining > _NO_DEADLINE else started + remaining
                return handler(call, deadline)
        except ServingError as exc:
            code = exc.code
            context.abort(exc.code, exc.message)
        except Exception as exc:  # keep serving; say nothing of the internals
            request_id = _request_id(context)
            error = errors.from_unexpected(exc, request_id)
            code = error.code
            if code == grpc.StatusCode.INTERNAL:
                log.exception("%s failed (request id %s)", api, request_id)
            else:
                log.warning("%s refused (request id %s): %s: %s", api, request_id, type(exc).__name__, error.message)
            context.abort(code, error.message)
        finally:
            self._metrics.observe_request(
                model=call.model,
                version=call.version,
                signature=call.signature,
                api=api,
                code=code.name,
                seconds=time.monotonic() - started,
            )
        raise AssertionError("unreachable: context.abort raises")


class PredictionService(prediction_service_pb2_grpc.PredictionServiceServicer):
    """tensorflow.serving.PredictionService."""

    def __init__(self, dispatcher: _Dispatcher) -> None:
        self._dispatch = dispatcher
        self._core = dispatcher.core

    def Predict(self, request, context):
        return self._dispatch.call("predict", context, lambda call, dl: self._core.predict(request, call, dl))

    def Classify(self, request, context):
        return self._dispatch.call("classify", context, lambda call, dl: self._core.classify(request, call, dl))

    def Regress(self, request, context):
        return self._dispatch.call("regress", context, lambda call, dl: self._core.regress(request, call, dl))

    def MultiInference(self, request, context):
        return self._dispatch.call(
            "multi_inference", context, lambda call, dl: self._core.multi_inference(request, call, dl)
        )

    def GetModelMetadata(self, request, context):
        return self._dispatch.call("get_model_metadata", context, lambda call, dl: self._core.metadata(request, call))


class ModelService(model_service_pb2_grpc.ModelServiceServicer):
    """tensorflow.serving.ModelService."""

    def __init__(self, dispatcher: _Dispatcher) -> None:
        self._dispatch = dispatcher
        self._core = dispatcher.core

    def GetModelStatus(self, request, context):
        return self._dispatch.call("get_model_status", context, lambda call, dl: self._core.status(request, call))

    def HandleReloadConfigRequest(self, request, context):
        return self._dispatch.call(
            "reload_config", context, lambda call, dl: self._core.reload_config(request, call)
        )


def add_services(server: grpc.Server, core: ServingCore, gate: RequestGate, metrics: ServerMetrics) -> None:
    """Registers both services on ``server``."""
    dispatcher = _Dispatcher(core, gate, metrics)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionService(dispatcher), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelService(dispatcher), server)


__all__ = ["ModelService", "PredictionService", "add_services"]
