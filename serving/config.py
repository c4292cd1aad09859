"""Typed configuration read from tensorflow_model_server's text-proto files.

One frozen dataclass per concern (which models, how to batch, what to
monitor, TLS), each built from the same text formats TF Serving reads, so a
file written for the real server works here and vice versa.  Anything a file
asks for that this server does not implement is refused with a
:class:`ConfigError` naming the file and the field, rather than ignored.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from google.protobuf import message, text_format

from serving import protos
from suite_core.config import ConfigError as ConfigError  # The suite's one: a flag or file it cannot start with.

DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"


@dataclass(frozen=True)
class VersionPolicy:
    """Which on-disk versions of a model to serve (``ServableVersionPolicy``)."""

    kind: Literal["latest", "all", "specific"] = "latest"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, on_disk: Iterable[int]) -> frozenset[int]:
        """The versions that should be loaded, given those found on disk."""
        found = sorted(set(on_disk), reverse=True)
        if self.kind == "all":
            return frozenset(found)
        if self.kind == "specific":
            return frozenset(v for v in found if v in self.versions)
        return frozenset(found[: self.num_versions])


@dataclass(frozen=True)
class ModelConfig:
    """One served model: where its versions live and which ones to serve."""

    name: str
    base_path: str
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    version_labels: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchingConfig:
    """Server-side batching (``BatchingParameters``), with TF Serving's defaults."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False
    # A request of more rows than max_execution_batch_size runs as several batches, side by
    # side on the batch threads; max_batch_size then bounds a request, not a batch.
    enable_large_batch_splitting: bool = False
    max_execution_batch_size: int | None = None  # None: max_batch_size (TF Serving's default)
    # Not in BatchingParameters: batch queued texts of similar length together
    # (see serving.batching.length_bucket).  Off gives TF Serving's FIFO batches.
    group_by_text_length: bool = True

    def __post_init__(self) -> None:
        if self.max_batch_size < 1:
            raise ConfigError(f"max_batch_size must be positive, got {self.max_batch_size}")
        if self.batch_timeout_micros < 0:
            raise ConfigError(f"batch_timeout_micros must be >= 0, got {self.batch_timeout_micros}")
        if self.max_enqueued_batches < 1:
            raise ConfigError(f"max_enqueued_batches must be positive, got {self.max_enqueued_batches}")
        if self.num_batch_threads < 1:
            raise ConfigError(f"num_batch_threads must be positive, got {self.num_batch_threads}")
        execution = self.max_execution_batch_size
        if execution is not None and not 1 <= execution <= self.max_batch_size:
            raise ConfigError(f"max_execution_batch_size must be in [1, max_batch_size {self.max_batch_size}], "
                              f"got {execution}")
        sizes = self.allowed_batch_sizes
        if sizes:
            if any(b <= a for a, b in zip(sizes, sizes[1:])) or sizes[0] < 1:
                raise ConfigError(f"allowed_batch_sizes must be positive and increasing, got {list(sizes)}")
            limit = "max_execution_batch_size" if self.enable_large_batch_splitting else "max_batch_size"
            if sizes[-1] != self.batch_size_limit:
                raise ConfigError(
                    f"the last entry of allowed_batch_sizes ({sizes[-1]}) must equal "
                    f"{limit} ({self.batch_size_limit})"
                )

    @property
    def batch_size_limit(self) -> int:
        """The most rows one batch runs: ``max_execution_batch_size`` when splitting, else ``max_batch_size``."""
        if self.enable_large_batch_splitting and self.max_execution_batch_size is not None:
            return self.max_execution_batch_size
        return self.max_batch_size

    def padded_size(self, rows: int) -> int:
        """Smallest allowed batch size that holds ``rows`` (``rows`` if none are set)."""
        for size in self.allowed_batch_sizes:
            if size >= rows:
                return size
        return rows


@dataclass(frozen=True)
class MonitoringConfig:
    """Prometheus exposition on the REST port (``MonitoringConfig``)."""

    prometheus_enabled: bool = False
    prometheus_path: str = DEFAULT_PROMETHEUS_PATH


@dataclass(frozen=True)
class TlsConfig:
    """Server TLS material (``SSLConfig``): PEM text, not file names."""

    server_key: str
    server_cert: str
    custom_ca: str = ""
    client_verify: bool = False


def _read_text_proto(path: str | os.PathLike[str], proto: message.Message, what: str) -> message.Message:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        return text_format.Parse(text, proto)
    except text_format.ParseError as exc:
        raise ConfigError(f"invalid {what} {str(path)!r}: {exc}") from exc


def _policy_from_proto(name: str, config, source: str) -> VersionPolicy:
    if not config.HasField("model_version_policy"):
        return VersionPolicy()
    policy = config.model_version_policy
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return VersionPolicy(kind="all")
    if choice == "specific":
        if not policy.specific.versions:
            raise ConfigError(f"{source}: model {name!r}: model_version_policy.specific lists no versions")
        return VersionPolicy(kind="specific", versions=tuple(policy.specific.versions))
    num = policy.latest.num_versions if choice == "latest" else 1
    if num < 1:
        # TF Serving treats an unset/zero num_versions as 1.
        num = 1
    return VersionPolicy(kind="latest", num_versions=num)


def model_configs_from_proto(server_config, source: str = "ModelServerConfig") -> tuple[ModelConfig, ...]:
    """Validates a ``ModelServerConfig`` proto and converts it to typed configs."""
    kind = server_config.WhichOneof("config")
    if kind == "custom_model_config":
        raise ConfigError(f"{source}: custom_model_config is not supported; use model_config_list")
    if kind is None:
        return ()
    models: list[ModelConfig] = []
    seen: set[str] = set()
    for config in server_config.model_config_list.config:
        if not config.name:
            raise ConfigError(f"{source}: a model config has no name")
        if config.name in seen:
            raise ConfigError(f"{source}: model {config.name!r} is configured twice")
        seen.add(config.name)
        if not config.base_path:
            raise ConfigError(f"{source}: model {config.name!r} has no base_path")
        if config.model_platform not in ("", "tensorflow"):
            raise ConfigError(
                f"{source}: model {config.name!r} uses model_platform {config.model_platform!r}; "
                "only 'tensorflow' is supported"
            )
        if config.model_type not in (0, 1):  # MODEL_TYPE_UNSPECIFIED or TENSORFLOW
            raise ConfigError(f"{source}: model {config.name!r} has an unsupported model_type")
        if config.HasField("logging_config"):
            raise ConfigError(f"{source}: model {config.name!r}: logging_config is not supported")
        labels = dict(config.version_labels)
        for label in labels:
            if not label:
                raise ConfigError(f"{source}: model {config.name!r} has an empty version label")
        models.append(
            ModelConfig(
                name=config.name,
                base_path=config.base_path,
                policy=_policy_from_proto(config.name, config, source),
                version_labels=labels,
            )
        )
    return tuple(models)


def read_model_server_config(path: str | os.PathLike[str]) -> tuple[ModelConfig, ...]:
    """Reads a ``--model_config_file`` (text ``ModelServerConfig``)."""
    from tensorflow_serving.config import model_server_config_pb2

    proto = _read_text_proto(path, model_server_config_pb2.ModelServerConfig(), "model config file")
    return model_configs_from_proto(proto, source=f"model config file {str(path)!r}")


def write_model_server_config(path: str | os.PathLike[str], models: Mapping[str, str | os.PathLike[str]],
                              extra: Mapping[str, str] | None = None) -> Path:
    """Writes a ModelServerConfig text file serving each `name: base_path`, as
    tensorflow_model_server reads it. `extra` adds text-proto fields per model
    (e.g. a `model_version_policy`)."""
    blocks = "".join(
        f'  config {{\n    name: "{name}"\n    base_path: "{base}"\n    model_platform: "tensorflow"\n'
        + textwrap.indent((extra or {}).get(name, ""), "  ") + "  }\n"
        for name, base in models.items())
    path = Path(path)
    path.write_text("model_config_list {\n" + blocks + "}\n")
    return path


def single_model_config(name: str, base_path: str) -> tuple[ModelConfig, ...]:
    """The config ``--model_name``/``--model_base_path`` stand for."""
    if not name:
        raise ConfigError("--model_name must not be empty")
    if not base_path:
        raise ConfigError("--model_base_path must not be empty")
    return (ModelConfig(name=name, base_path=base_path),)


def read_batching_config(path: str | os.PathLike[str]) -> BatchingConfig:
    """Reads a ``--batching_parameters_file`` (text ``BatchingParameters``)."""
    proto = _read_text_proto(path, protos.BatchingParameters(), "batching parameters file")
    # thread_pool_name only names TF Serving's pool; accepted, nothing to configure.
    values = {
        name: getattr(proto, name).value
        for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads",
                     "max_execution_batch_size")
        if proto.HasField(name)
    }
    try:
        return BatchingConfig(
            **values,
            allowed_batch_sizes=tuple(proto.allowed_batch_sizes),
            pad_variable_length_inputs=proto.pad_variable_length_inputs,
            enable_large_batch_splitting=proto.enable_large_batch_splitting,
        )
    except ConfigError as exc:
        raise ConfigError(f"invalid batching parameters file {str(path)!r}: {exc}") from exc


def read_monitoring_config(path: str | os.PathLike[str]) -> MonitoringConfig:
    """Reads a ``--monitoring_config_file`` (text ``MonitoringConfig``)."""
    proto = _read_text_proto(path, protos.MonitoringConfig(), "monitoring config file")
    prometheus = proto.prometheus_config
    path_value = prometheus.path or DEFAULT_PROMETHEUS_PATH
    if not path_value.startswith("/"):
        raise ConfigError(f"invalid monitoring config file {str(path)!r}: path {path_value!r} must start with '/'")
    if path_value.lower().startswith("/v1/"):
        raise ConfigError(
            f"invalid monitoring config file {str(path)!r}: path {path_value!r} collides with the /v1/ REST API"
        )
    return MonitoringConfig(prometheus_enabled=prometheus.enable, prometheus_path=path_value)


def read_tls_config(path: str | os.PathLike[str]) -> TlsConfig:
    """Reads an ``--ssl_config_file`` (text ``SSLConfig``)."""
    proto = _read_text_proto(path, protos.SSLConfig(), "SSL config file")
    if not proto.server_key or not proto.server_cert:
        raise ConfigError(f"invalid SSL config file {str(path)!r}: server_key and server_cert are required")
    return TlsConfig(
        server_key=proto.server_key,
        server_cert=proto.server_cert,
        custom_ca=proto.custom_ca,
        client_verify=proto.client_verify,
    )
