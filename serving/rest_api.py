"""The HTTP/REST API and the Prometheus endpoint, on one port.

Routes follow TF Serving's (tensorflow_serving/model_servers/http_rest_api_util.cc):

- ``GET  /v1/models/{name}[/versions/{v}|/labels/{l}]``             model status
- ``GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata``    signature defs
- ``POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict|classify|regress``

Failures answer ``{"error": "..."}`` with the HTTP status TF Serving maps the
canonical code to.  The server is a stdlib ``ThreadingHTTPServer`` (a thread
per connection, HTTP/1.1 keep-alive), which is enough in front of a model
whose calls take milliseconds.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

import grpc
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
REST_TIMEOUT_SECONDS = 30.0  # TF Serving's --rest_api_timeout_in_ms default


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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for clients that reuse connections
    server_version = "ServingREST/1.0"

    def do_GET(self) -> None:
        self.server.api.handle(self, "GET")

    def do_POST(self) -> None:
        self.server.api.handle(self, "POST")

    def do_PUT(self) -> None:
        self.server.api.handle(self, "PUT")

    def do_DELETE(self) -> None:
        self.server.api.handle(self, "DELETE")

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (stdlib signature)
        log.debug("%s %s", self.address_string(), format % args)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # idle keep-alive connections must not block shutdown
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], api: RestApi) -> None:
        self.api = api
        super().__init__(address, _Handler)


class RestApi:
    """Serves the REST API (and metrics, if enabled) on one port."""

    def __init__(
        self,
        core: ServingCore,
        gate: RequestGate,
        metrics: ServerMetrics,
        monitoring: MonitoringConfig,
        *,
        bind_address: str,
        port: int,
        max_body_bytes: int,
    ) -> None:
        self._core = core
        self._gate = gate
        self._metrics = metrics
        self._monitoring = monitoring
        self._max_body = max_body_bytes
        try:
            self._server = _HttpServer((bind_address, port), self)
        except OSError as exc:
            raise errors.unavailable(f"cannot listen for REST on {bind_address}:{port}: {exc.strerror}") from None
        self._thread = threading.Thread(target=self._server.serve_forever, name="rest-api", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    # -- request handling -------------------------------------------------------

    def handle(self, request: _Handler, method: str) -> None:
        path = urlsplit(request.path).path
        if self._gate.draining:
            request.close_connection = True  # send clients to another replica
        if self._monitoring.prometheus_enabled and path == self._monitoring.prometheus_path:
            if method != "GET":
                self._send(request, 405, b"Method Not Allowed\n", "text/plain")
                return
            self._send(request, 200, self._metrics.exposition(), CONTENT_TYPE)
            return
        if not _API_PATH.fullmatch(path):
            self._send(request, 404, b"Not Found\n", "text/plain")
            return
        try:
            body = self._read_body(request)
        except ServingError as exc:
            request.close_connection = True
            self._send(request, errors.http_status_for(exc.code), json_codec.error_response(exc.message))
            return
        status, payload = self._dispatch(method, path, body)
        self._send(request, status, payload)

    def _read_body(self, request: _Handler) -> bytes:
        if request.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks, total = [], 0
            while True:
                size = int(request.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while request.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return b"".join(chunks)
                total += size
                if total > self._max_body:
                    raise errors.invalid_argument(f"Request body exceeds the limit of {self._max_body} bytes")
                chunks.append(request.rfile.read(size))
                request.rfile.readline()
        length = int(request.headers.get("Content-Length") or 0)
        if length > self._max_body:
            raise errors.invalid_argument(
                f"Request body of {length} bytes exceeds the limit of {self._max_body} bytes"
            )
        return request.rfile.read(length) if length else b""

    def _dispatch(self, method: str, path: str, body: bytes) -> tuple[int, bytes]:
        call = CallInfo(api="rest")
        started = time.monotonic()
        code = grpc.StatusCode.OK
        try:
            with self._gate:
                payload = self._route(method, path, body, call, started + REST_TIMEOUT_SECONDS)
            return 200, payload
        except ServingError as exc:
            code = exc.code
            return errors.http_status_for(exc.code), json_codec.error_response(exc.message)
        except Exception as exc:  # keep serving after any bad request
            log.exception("REST %s %s failed", method, path)
            code = grpc.StatusCode.INTERNAL
            return 500, json_codec.error_response(f"{type(exc).__name__}: {exc}")
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

    @staticmethod
    def _send(request: _Handler, status: int, payload: bytes, content_type: str = "application/json") -> None:
        request.send_response(status)
        request.send_header("Content-Type", content_type)
        request.send_header("Content-Length", str(len(payload)))
        if request.close_connection:
            request.send_header("Connection", "close")
        request.end_headers()
        request.wfile.write(payload)
