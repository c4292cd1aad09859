"""The HTTP/REST API and the Prometheus endpoint, on one port.

Routes follow TF Serving's (tensorflow_serving/model_servers/http_rest_api_util.cc):

- ``GET  /v1/models/{name}[/versions/{v}|/labels/{l}]``             model status
- ``GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata``    signature defs
- ``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict|classify|regress``

Failures answer ``{"error": "..."}`` with the HTTP status TF Serving maps the
canonical code to, also those the HTTP server itself refuses (a malformed
request, a body over the limit or too slow: :mod:`serving.http_server`).
:class:`RestRoutes` is the API, independent of the HTTP server; it runs on
a worker thread of :class:`RestApi`, the API on the suite's HTTP server.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from urllib.parse import unquote

import grpc
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from tensorflow_serving.apis import (
    classification_pb2,
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    regression_pb2,
)

from serving import errors, json_codec
from serving.config import MonitoringConfig
from serving.errors import ServingError
from serving.http_server import (
    HttpLimits,
    HttpRejection,
    HttpServer,
    WorkerPool,
    read_body,
    request_id,
)
from serving.lifecycle import RequestGate
from serving.metrics import CONTENT_TYPE, ServerMetrics
from serving.service import CallInfo, ServingCore

log = logging.getLogger(__name__)

_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE)
_PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)", re.IGNORECASE
)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.IGNORECASE
)
_METHODS = ["GET", "POST", "PUT", "DELETE"]
JSON = "application/json"


def _model_spec(name: str, version: str | None, label: str | None) -> model_pb2.ModelSpec:
    spec = model_pb2.ModelSpec(name=unquote(name))
    if version is not None:
        number = int(version)
        if number >= 2**63:
            raise errors.invalid_argument(f"Failed to convert version: {version} to numeric.")
        spec.version.value = number
    elif label is not None:
        spec.version_label = unquote(label)
    return spec


def tf_serving_error(rejection: HttpRejection) -> bytes:
    """TF Serving's error body for a request the HTTP server refused."""
    return json_codec.error_response(rejection.message)


@dataclass(frozen=True)
class RestReply:
    status: int
    body: bytes
    content_type: str = JSON


class RestRoutes:
    """TF Serving's REST API over a :class:`ServingCore`; blocking, called on a worker thread."""

    def __init__(
        self,
        core: ServingCore,
        gate: RequestGate,
        metrics: ServerMetrics,
        monitoring: MonitoringConfig,
        *,
        timeout_seconds: float,
    ) -> None:
        self._core = core
        self._gate = gate
        self._metrics = metrics
        self._monitoring = monitoring
        self._timeout = timeout_seconds

    @property
    def draining(self) -> bool:
        return self._gate.draining

    def answer(self, method: str, path: str, body: bytes, request_id: str) -> RestReply:
        """The reply to one request; ``path`` is the raw (still %-encoded) path."""
        if self._monitoring.prometheus_enabled and path == self._monitoring.prometheus_path:
            if method != "GET":
                return RestReply(405, b"Method Not Allowed\n", "text/plain")
            return RestReply(200, self._metrics.exposition(), CONTENT_TYPE)
        if not _API_PATH.fullmatch(path):
            return RestReply(404, b"Not Found\n", "text/plain")
        call = CallInfo(api="rest")
        started = time.monotonic()
        code = grpc.StatusCode.OK
        try:
            with self._gate:
                payload = self._route(method, path, body, call, started + self._timeout)
            return RestReply(200, payload)
        except ServingError as exc:
            code = exc.code
            return RestReply(errors.http_status_for(exc.code), json_codec.error_response(exc.message))
        except Exception as exc:  # keep serving after any bad request; say nothing of the internals
            error = errors.from_unexpected(exc, request_id)
            code = error.code
            if code == grpc.StatusCode.INTERNAL:
                log.exception("REST %s %s failed (request id %s)", method, path, request_id)
            else:
                log.warning("REST %s %s refused (request id %s): %s: %s", method, path, request_id,
                            type(exc).__name__, error.message)
            return RestReply(errors.http_status_for(code), json_codec.error_response(error.message))
        finally:
            self._metrics.observe_request(
                model=call.model,
                version=call.version,
                signature=call.signature,
                api=call.api,
                code=code.name,
                seconds=time.monotonic() - started,
            )

    def _route(self, method: str, path: str, body: bytes, call: CallInfo, deadline: float) -> bytes:
        if method == "POST" and (match := _PREDICTION_PATH.fullmatch(path)):
            name, version, label, verb = match.groups()
            call.api = f"rest_{verb.lower()}"
            spec = _model_spec(name, version, label)
            document = json_codec.parse_document(body)
            spec.signature_name = json_codec.signature_name(document)
            verb = verb.lower()
            if verb == "predict":
                input_specs = self._core.input_specs(spec, call)
                inputs, fmt = json_codec.parse_predict(document, input_specs)
                _, _, outputs = self._core.predict_arrays(spec, inputs, (), call, deadline)
                return json_codec.predict_response(outputs, fmt)
            request_input = json_codec.parse_examples(document, verb)
            if verb == "classify":
                request = classification_pb2.ClassificationRequest(model_spec=spec, input=request_input)
                return json_codec.classify_response(self._core.classify(request, call, deadline).result)
            request = regression_pb2.RegressionRequest(model_spec=spec, input=request_input)
            return json_codec.regress_response(self._core.regress(request, call, deadline).result)
        if method == "GET" and (match := _STATUS_PATH.fullmatch(path)):
            name, version, label, subresource = match.groups()
            if not name:
                raise errors.invalid_argument("Missing model name in request.")
            spec = _model_spec(name, version, label)
            if subresource:
                call.api = "rest_metadata"
                request = get_model_metadata_pb2.GetModelMetadataRequest(
                    model_spec=spec, metadata_field=["signature_def"]
                )
                return json_codec.metadata_response(self._core.metadata(request, call))
            call.api = "rest_status"
            request = get_model_status_pb2.GetModelStatusRequest(model_spec=spec)
            return json_codec.status_response(self._core.status(request, call))
        raise errors.invalid_argument(f"Malformed request: {method} {path}")


class RestApi:
    """The REST API on the suite's HTTP server (:mod:`serving.http_server`)."""

    def __init__(self, routes: RestRoutes, *, bind_address: str, port: int, limits: HttpLimits) -> None:
        self._routes = routes
        self._limits = limits
        self._pool = WorkerPool(limits.max_in_flight, "rest")
        app = Starlette(routes=[Route("/{path:path}", self._endpoint, methods=_METHODS)])
        try:
            self._server = HttpServer(app, bind_address, port, limits, name="rest-api",
                                      write_error=tf_serving_error)
        except OSError as exc:
            raise errors.unavailable(f"cannot listen for REST on {bind_address}:{port}: {exc.strerror}") from None

    @property
    def port(self) -> int:
        return self._server.port

    def start(self) -> None:
        self._server.start()

    def stop(self) -> None:
        self._server.stop()
        self._pool.close()

    async def _endpoint(self, request: Request) -> Response:
        rid = request_id(request)
        path = request.scope.get("raw_path", request.url.path.encode()).decode("latin-1")
        try:
            body = await read_body(request, self._limits)
            reply = await self._pool.run(self._routes.answer, request.method, path, body, rid)
        except HttpRejection as rejection:
            headers = {"X-Request-Id": rid, **({"Connection": "close"} if rejection.close else {})}
            return Response(tf_serving_error(rejection), rejection.status, headers, JSON)
        headers = {"X-Request-Id": rid}
        if self._routes.draining:
            headers["Connection"] = "close"  # send clients to another replica
        return Response(reply.body, reply.status, headers, reply.content_type)
