"""The model server: models, batching, gRPC and REST wired together.

Usable in-process (tests start it on port 0 and read the bound ports) and
from the command line (:mod:`serving.cli`).  ``start()`` returns once the
initial models are loaded and the ports are open, as tensorflow_model_server
only listens after its first load.  ``stop()`` refuses new requests
(UNAVAILABLE), lets the admitted ones finish, then closes the ports and
unloads the models.
"""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from typing import Self

import grpc

from serving import errors
from serving.batching import BatchScheduler
from serving.grpc_service import add_services
from serving.lifecycle import RequestGate
from serving.metrics import ServerMetrics
from serving.model_manager import ModelManager
from serving.options import EndpointOptions, ServerOptions
from serving.rest_api import RestApi, RestRoutes
from serving.runtime import prepare_tensorflow
from serving.servable import Servable
from serving.service import ServingCore

log = logging.getLogger(__name__)

def grpc_server_arguments(endpoints: EndpointOptions) -> list[tuple[str, int | str]]:
    """The gRPC server's arguments: message size limits, then --grpc_channel_arguments (which win)."""
    arguments: dict[str, int | str] = {
        "grpc.max_send_message_length": endpoints.grpc_max_message_bytes,
        "grpc.max_receive_message_length": endpoints.grpc_max_message_bytes,
        "grpc.so_reuseport": 0,  # a taken port must fail, not be shared
    }
    arguments.update(endpoints.grpc_channel_arguments)
    return list(arguments.items())


class ModelServer:
    """A TF Serving compatible server for the models in ``options``."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.metrics = ServerMetrics()
        self._gate = RequestGate(self.metrics)
        self._scheduler: BatchScheduler | None = None
        self._manager: ModelManager | None = None
        self._grpc: grpc.Server | None = None
        self._rest: RestApi | None = None
        self._rest_routes: RestRoutes | None = None
        self._grpc_port = 0
        self._stop_lock = threading.Lock()
        self._stopped = threading.Event()

    @property
    def grpc_port(self) -> int:
        return self._grpc_port

    @property
    def rest_port(self) -> int | None:
        return self._rest.port if self._rest is not None else None

    @property
    def grpc_address(self) -> str:
        host = self.options.endpoints.bind_address
        return f"{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self._grpc_port}"

    @property
    def rest_address(self) -> str | None:
        if self._rest is None:
            return None
        host = self.options.endpoints.bind_address
        return f"{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{self._rest.port}"

    @property
    def rest_routes(self) -> RestRoutes | None:
        """The REST API over this server's models, for another HTTP front (the REST benchmark's)."""
        return self._rest_routes

    @property
    def models(self) -> ModelManager:
        """The model manager (status and reload, for tools and tests)."""
        if self._manager is None:
            raise RuntimeError("server not started")
        return self._manager

    def start(self) -> Self:
        """Loads the models, then opens the gRPC (and REST) ports."""
        options = self.options
        prepare_tensorflow(options.runtime)
        if options.batching is not None:
            self._scheduler = BatchScheduler(options.batching, self.metrics)
        self._manager = ModelManager(options.models, self.metrics, on_unloaded=self._forget_queues)
        self._manager.start(options.models.models)
        endpoints = options.endpoints
        core = ServingCore(self._manager, self._scheduler, max_tensor_bytes=endpoints.max_tensor_bytes)
        self._start_grpc(core)
        if endpoints.rest_port is not None:
            self._rest_routes = RestRoutes(core, self._gate, self.metrics, options.monitoring,
                                           timeout_seconds=endpoints.rest_timeout_seconds)
            self._rest = RestApi(self._rest_routes, bind_address=endpoints.bind_address, port=endpoints.rest_port,
                                 limits=endpoints.rest)
            self._rest.start()
        return self

    def _start_grpc(self, core: ServingCore) -> None:
        endpoints = self.options.endpoints
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=endpoints.grpc_max_workers, thread_name_prefix="grpc"),
            options=grpc_server_arguments(endpoints),
        )
        add_services(server, core, self._gate, self.metrics)
        address = f"{endpoints.bind_address}:{endpoints.grpc_port}"
        try:
            if endpoints.tls is None:
                port = server.add_insecure_port(address)
            else:
                tls = endpoints.tls
                credentials = grpc.ssl_server_credentials(
                    [(tls.server_key.encode(), tls.server_cert.encode())],
                    root_certificates=tls.custom_ca.encode() or None,
                    require_client_auth=tls.client_verify,
                )
                port = server.add_secure_port(address, credentials)
        except RuntimeError as exc:
            raise errors.unavailable(f"cannot listen for gRPC on {address}: {exc}") from None
        if not port:
            raise errors.unavailable(f"cannot listen for gRPC on {address}")
        server.start()
        self._grpc, self._grpc_port = server, port

    def _forget_queues(self, servable: Servable) -> None:
        if self._scheduler is not None:
            self._scheduler.close_queues(servable.name, servable.version)

    def stop(self, drain_timeout_seconds: float | None = None) -> None:
        """Drains in-flight requests (new ones get UNAVAILABLE), then shuts down."""
        with self._stop_lock:
            if self._stopped.is_set():
                return
            timeout = (
                self.options.shutdown.drain_timeout_seconds
                if drain_timeout_seconds is None
                else drain_timeout_seconds
            )
            if not self._gate.drain(timeout):
                log.warning("requests still in flight after %.1fs; stopping anyway", timeout)
            if self._grpc is not None:
                self._grpc.stop(grace=1.0).wait()
            if self._rest is not None:
                self._rest.stop()
            if self._scheduler is not None:
                self._scheduler.stop()
            if self._manager is not None:
                self._manager.stop()
            self._stopped.set()

    def wait_for_termination(self, timeout: float | None = None) -> bool:
        return self._stopped.wait(timeout)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
