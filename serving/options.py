"""Everything a :class:`serving.server.ModelServer` is started with.

The CLI turns tensorflow_model_server flags into these; tests build them
directly (port 0 for a free port, sub-second poll intervals).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from serving.config import BatchingConfig, ModelConfig, MonitoringConfig, TlsConfig
from serving.http_server import HttpLimits

# The largest gRPC message and REST body taken, and so the largest tensor a request may
# decode to: a bound on the memory one request costs.  TF Serving takes up to 2 GiB.
DEFAULT_MAX_REQUEST_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True)
class EndpointOptions:
    """Where and how the server listens."""

    grpc_port: int = 8500  # 0 picks a free port.
    rest_port: int | None = None  # None: no REST API; 0 picks a free port.
    bind_address: str = "0.0.0.0"
    tls: TlsConfig | None = None
    grpc_max_workers: int = 128  # Threads for concurrent RPCs (batched calls wait in them).
    grpc_max_message_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    # Further gRPC server arguments (--grpc_channel_arguments), applied last.
    grpc_channel_arguments: tuple[tuple[str, int | str], ...] = ()
    rest: HttpLimits = field(default_factory=lambda: HttpLimits(max_body_bytes=DEFAULT_MAX_REQUEST_BYTES))
    rest_timeout_seconds: float = 30.0  # TF Serving's --rest_api_timeout_in_ms default
    # No input of a request may decode to more bytes (a shape [2**40] with one value would).
    max_tensor_bytes: int = DEFAULT_MAX_REQUEST_BYTES


@dataclass(frozen=True)
class ModelSourceOptions:
    """Which models to serve and how often to look for changes."""

    models: tuple[ModelConfig, ...] = ()
    model_config_file: Path | None = None  # Re-read when the poll below is > 0.
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = 1.0  # <= 0: look once at start-up.
    allow_version_labels_for_unavailable_models: bool = False
    enable_model_warmup: bool = True
    num_load_threads: int = 2
    # A failed load is tried again this many times, this long apart (TF Serving's defaults).
    max_num_load_retries: int = 5
    load_retry_interval_seconds: float = 60.0


@dataclass(frozen=True)
class RuntimeOptions:
    """TensorFlow runtime thread pools (0 lets TensorFlow choose)."""

    intra_op_parallelism: int = 0
    inter_op_parallelism: int = 0


@dataclass(frozen=True)
class ShutdownOptions:
    """How long a graceful stop waits for in-flight requests."""

    drain_timeout_seconds: float = 30.0


@dataclass(frozen=True)
class ServerOptions:
    """Complete configuration of one model server."""

    endpoints: EndpointOptions = field(default_factory=EndpointOptions)
    models: ModelSourceOptions = field(default_factory=ModelSourceOptions)
    batching: BatchingConfig | None = None  # None: every request runs on its own.
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    runtime: RuntimeOptions = field(default_factory=RuntimeOptions)
    shutdown: ShutdownOptions = field(default_factory=ShutdownOptions)
