"""``python -m serving`` / ``suite-serve``: tensorflow_model_server's command line.

Takes the same flags (``--flag=value``; booleans also as a bare ``--flag``),
reads the same config files, and stops at start-up with a message naming the
problem when a flag is unknown, is a tensorflow_model_server flag this server
does not implement, or a file is bad.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from serving.config import (
    BatchingConfig,
    ConfigError,
    MonitoringConfig,
    read_batching_config,
    read_model_server_config,
    read_monitoring_config,
    read_tls_config,
    single_model_config,
)
from serving.http_server import HttpLimits
from serving.options import (
    DEFAULT_MAX_REQUEST_BYTES,
    EndpointOptions,
    ModelSourceOptions,
    RuntimeOptions,
    ServerOptions,
    ShutdownOptions,
)
from suite_core.tf_logging import quiet_tensorflow

log = logging.getLogger("serving")

# tensorflow_model_server flags that exist upstream but are not implemented
# here: named explicitly so the refusal says "unsupported", not "unknown".
UNSUPPORTED_FLAGS = frozenset(
    {
        "grpc_socket_path",
        "rest_api_enable_cors_support",
        "platform_config_file",
        "per_process_gpu_memory_fraction",
        "saved_model_tags",
        "enable_signature_method_name_check",
        "xla_cpu_compilation_enabled",
        "flush_filesystem_caches",
        "tensorflow_session_parallelism",
        "tensorflow_session_config_file",
        "num_load_threads",
        "num_unload_threads",
        "use_tflite_model",
        "prefer_tflite_model",
        "num_tflite_pools",
        "num_tflite_interpreters_per_pool",
        "use_alts_credentials",
        "mixed_precision",
        "remove_unused_fields_from_bundle_metagraph",
        "enable_profiler",
        "thread_pool_factory_config_file",
        "skip_initialize_tpu",
        "enable_grpc_healthcheck_service",
        "model_config_file_poll_wait_seconds_deprecated",
        "version",
    }
)


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "t", "yes"):
        return True
    if lowered in ("0", "false", "f", "no"):
        return False
    raise argparse.ArgumentTypeError(f"invalid boolean value: {text!r}")


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so main() owns the exit path."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise ConfigError(message)


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="python -m serving",
        description="TensorFlow Serving compatible model server (gRPC PredictionService/ModelService + REST).",
        allow_abbrev=False,
    )
    add = parser.add_argument
    add("--port", type=int, default=8500, help="gRPC port (0 picks a free one)")
    add("--rest_api_port", type=int, default=0, help="REST/HTTP port; 0 disables the REST API")
    add("--model_name", default="default", help="name of the single model (with --model_base_path)")
    add("--model_base_path", default="", help="directory holding the model's numbered version directories")
    add("--model_config_file", default="", help="ModelServerConfig text proto; overrides --model_name/base_path")
    add("--model_config_file_poll_wait_seconds", type=int, default=0, help="re-read the model config file (0: never)")
    add("--file_system_poll_wait_seconds", type=int, default=1, help="look for new versions (<= 0: once)")
    add("--enable_batching", type=_parse_bool, nargs="?", const=True, default=False)
    add("--batching_parameters_file", default="", help="BatchingParameters text proto")
    add("--monitoring_config_file", default="", help="MonitoringConfig text proto (Prometheus endpoint)")
    add("--ssl_config_file", default="", help="SSLConfig text proto: serve gRPC over TLS")
    add("--tensorflow_intra_op_parallelism", type=int, default=0)
    add("--tensorflow_inter_op_parallelism", type=int, default=0)
    add("--allow_version_labels_for_unavailable_models", type=_parse_bool, nargs="?", const=True, default=False)
    add("--enable_model_warmup", type=_parse_bool, nargs="?", const=True, default=True)
    add("--grpc_max_threads", type=int, default=128, help="threads serving concurrent gRPC calls")
    add("--grpc_channel_arguments", default="",
        help="gRPC server arguments, comma separated key=value (e.g. grpc.max_connection_age_ms=2000)")
    add("--rest_api_num_threads", type=int, default=128, help="REST requests worked on at once (more get 503)")
    add("--rest_api_timeout_in_ms", type=int, default=30000, help="deadline of a REST request")
    add("--max_num_load_retries", type=int, default=5, help="tries again of a version that failed to load")
    add("--load_retry_interval_micros", type=int, default=60_000_000, help="wait between those tries")
    # Extensions: bounds on what one request may cost (TF Serving takes up to 2 GiB).
    add("--grpc_max_message_size", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
        help="largest gRPC message, in bytes, and largest tensor a request may decode to (extension)")
    add("--rest_api_max_body_bytes", type=int, default=DEFAULT_MAX_REQUEST_BYTES,
        help="largest REST request body; larger ones get 413 (extension)")
    add("--rest_api_header_timeout_seconds", type=float, default=HttpLimits.header_timeout_seconds,
        help="a REST request's line and headers must arrive within this time, else 408 (extension)")
    add("--rest_api_body_timeout_seconds", type=float, default=HttpLimits.body_timeout_seconds,
        help="a REST request's body must arrive within this time, else 408 (extension)")
    add("--rest_api_keep_alive_timeout_seconds", type=float, default=HttpLimits.keep_alive_timeout_seconds,
        help="idle REST connections are closed after this time (extension)")
    add("--rest_api_max_connections", type=int, default=HttpLimits.max_connections,
        help="open REST connections past which requests get 503 (extension)")
    # Not a tensorflow_model_server flag: lets tests listen on loopback only.
    add("--bind_address", default="0.0.0.0", help="address to listen on (extension; TF Serving binds 0.0.0.0)")
    add("--batching_group_by_text_length", type=_parse_bool, nargs="?", const=True, default=True,
        help="batch queued texts of similar length together (extension; off = TF Serving's FIFO batches)")
    add("--drain_timeout_seconds", type=float, default=30.0, help="SIGTERM: wait this long for in-flight requests")
    add("-v", "--verbose", action="store_true", help="show TensorFlow's C++ log lines (extension)")
    return parser


def parse_channel_arguments(text: str) -> tuple[tuple[str, int | str], ...]:
    """``--grpc_channel_arguments``: ``key=value,...``; integer values become integers, as in TF Serving."""
    arguments = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--grpc_channel_arguments: {item!r} is not key=value")
        value = value.strip()
        arguments.append((key.strip(), int(value) if value.lstrip("-").isdigit() else value))
    return tuple(arguments)


def _refuse_unknown(extra: Sequence[str]) -> None:
    for arg in extra:
        name = arg.split("=", 1)[0]
        bare = name.lstrip("-")
        if name.startswith("-") and bare in UNSUPPORTED_FLAGS:
            raise ConfigError(f"flag --{bare} of tensorflow_model_server is not supported by this server")
        if name.startswith("-"):
            raise ConfigError(f"unknown flag {name}")
        raise ConfigError(f"unexpected argument {arg!r}")


def parse_flags(argv: Sequence[str]) -> ServerOptions:
    """Turns tensorflow_model_server flags into :class:`ServerOptions`."""
    args, extra = _build_parser().parse_known_args(list(argv))
    _refuse_unknown(extra)

    if args.model_config_file:
        models = read_model_server_config(args.model_config_file)
        config_file = Path(args.model_config_file)
        if args.model_base_path:
            log.info("--model_config_file given: ignoring --model_name/--model_base_path, as TF Serving does")
    elif args.model_base_path:
        models = single_model_config(args.model_name, args.model_base_path)
        config_file = None
    else:
        raise ConfigError("both --model_config_file and --model_base_path are empty: nothing to serve")

    batching: BatchingConfig | None = None
    if args.enable_batching:
        batching = read_batching_config(args.batching_parameters_file) if args.batching_parameters_file else (
            BatchingConfig()
        )
        batching = dataclasses.replace(batching, group_by_text_length=args.batching_group_by_text_length)
    elif args.batching_parameters_file:
        log.warning("--batching_parameters_file is ignored without --enable_batching (as in TF Serving)")

    monitoring = (
        read_monitoring_config(args.monitoring_config_file) if args.monitoring_config_file else MonitoringConfig()
    )
    tls = read_tls_config(args.ssl_config_file) if args.ssl_config_file else None

    for flag in ("port", "rest_api_port"):
        value = getattr(args, flag)
        if not 0 <= value <= 65535:
            raise ConfigError(f"--{flag} must be a port number, got {value}")
    if args.rest_api_port and args.rest_api_port == args.port:
        raise ConfigError("--rest_api_port cannot be the same as --port")
    if args.grpc_max_threads < 1:
        raise ConfigError(f"--grpc_max_threads must be positive, got {args.grpc_max_threads}")
    if args.model_config_file_poll_wait_seconds < 0:
        raise ConfigError("--model_config_file_poll_wait_seconds must be >= 0")
    for flag in ("rest_api_num_threads", "rest_api_timeout_in_ms", "grpc_max_message_size",
                 "rest_api_max_body_bytes", "rest_api_max_connections"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag} must be positive, got {getattr(args, flag)}")
    for flag in ("max_num_load_retries", "load_retry_interval_micros"):
        if getattr(args, flag) < 0:
            raise ConfigError(f"--{flag} must be >= 0, got {getattr(args, flag)}")
    try:
        rest_limits = HttpLimits(
            max_body_bytes=args.rest_api_max_body_bytes,
            header_timeout_seconds=args.rest_api_header_timeout_seconds,
            body_timeout_seconds=args.rest_api_body_timeout_seconds,
            keep_alive_timeout_seconds=args.rest_api_keep_alive_timeout_seconds,
            max_in_flight=args.rest_api_num_threads,
            max_connections=args.rest_api_max_connections,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None

    return ServerOptions(
        endpoints=EndpointOptions(
            grpc_port=args.port,
            rest_port=args.rest_api_port or None,
            bind_address=args.bind_address,
            tls=tls,
            grpc_max_workers=args.grpc_max_threads,
            grpc_max_message_bytes=args.grpc_max_message_size,
            grpc_channel_arguments=parse_channel_arguments(args.grpc_channel_arguments),
            rest=rest_limits,
            rest_timeout_seconds=args.rest_api_timeout_in_ms / 1000,
            max_tensor_bytes=args.grpc_max_message_size,
        ),
        models=ModelSourceOptions(
            models=models,
            model_config_file=config_file,
            model_config_file_poll_wait_seconds=float(args.model_config_file_poll_wait_seconds),
            file_system_poll_wait_seconds=float(args.file_system_poll_wait_seconds),
            allow_version_labels_for_unavailable_models=args.allow_version_labels_for_unavailable_models,
            enable_model_warmup=args.enable_model_warmup,
            max_num_load_retries=args.max_num_load_retries,
            load_retry_interval_seconds=args.load_retry_interval_micros / 1e6,
        ),
        batching=batching,
        monitoring=monitoring,
        runtime=RuntimeOptions(
            intra_op_parallelism=args.tensorflow_intra_op_parallelism,
            inter_op_parallelism=args.tensorflow_inter_op_parallelism,
        ),
        shutdown=ShutdownOptions(drain_timeout_seconds=args.drain_timeout_seconds),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the server until SIGTERM/SIGINT, then drains and exits 0."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    argv = list(sys.argv[1:] if argv is None else argv)
    quiet_tensorflow(argv)
    try:
        options = parse_flags(argv)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    # Imported late: TensorFlow takes seconds to import and --help should not wait.
    from serving.errors import ServingError
    from serving.server import ModelServer

    stop_requested = threading.Event()

    def request_stop(signum: int, _frame) -> None:
        log.info("received %s: draining in-flight requests", signal.Signals(signum).name)
        stop_requested.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    server = ModelServer(options)
    try:
        server.start()
    except (ConfigError, ServingError) as exc:
        print(f"Failed to start server. Error: {exc}", file=sys.stderr)
        server.stop(drain_timeout_seconds=0)
        return 1
    log.info("serving gRPC on port %d%s", server.grpc_port,
             f", REST on port {server.rest_port}" if server.rest_port else "")
    # A timed wait keeps the main thread responsive to signals.
    while not stop_requested.wait(0.5):
        pass
    server.stop(drain_timeout_seconds=options.shutdown.drain_timeout_seconds)
    log.info("stopped")
    return 0
