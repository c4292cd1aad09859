"""The app's configuration: one typed dataclass per concern, read from YAML.

The packaged ``config.yaml`` holds the defaults; ``tune-threshold`` rewrites
its ``policy`` section.  The suite's loader (:mod:`suite_core.config`) builds the
dataclasses: unknown keys and wrongly typed values are errors naming the dotted
key, so a typo never silently falls back to a default.

Example::

    config = load_config()                       # the packaged config.yaml
    config.server.address                        # '127.0.0.1:8500'
    config = with_server_address(config, "127.0.0.1:9000")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from suite_core.config import ConfigError as ConfigError  # The suite's one; raised by the checks below too.
from suite_core.config import build_dataclass, expand_env, read_yaml

DEFAULT_CONFIG_PATH = Path(__file__).with_name("config.yaml")
DEFAULT_TEMPLATES_PATH = Path(__file__).with_name("templates.yaml")


@dataclass(frozen=True)
class ServerConfig:
    """Where the model server is and how long one call may take."""

    address: str = "127.0.0.1:8500"
    model_name: str = "intent"
    signature: str = "serving_default"
    input_name: str = "text"
    deadline_seconds: float = 2.0  # per attempt; a reply later than this is useless to an agent
    max_attempts: int = 2  # UNAVAILABLE is retried once (server restarting), nothing else
    max_batch_size: int = 32  # rows per Predict request; the server batches up to this too

    def __post_init__(self) -> None:
        if not self.address or ":" not in self.address:
            raise ConfigError(f"server.address must be host:port, got {self.address!r}")
        _positive("server.deadline_seconds", self.deadline_seconds)
        _positive("server.max_attempts", self.max_attempts)
        _positive("server.max_batch_size", self.max_batch_size)


@dataclass(frozen=True)
class PolicyConfig:
    """When a suggestion is answered and when it goes to a human."""

    threshold: float = 0.5  # answer when the top intent's probability is >= this
    target_precision: float = 0.95  # what tune-threshold aimed for
    coverage: float | None = None  # share answered at the threshold, on the validation split
    precision: float | None = None  # precision of the answered share there
    tuned_on: str | None = None  # the validation set it was tuned on
    tuned_model_version: int | None = None  # the served model version it was tuned for
    top_k: int = 3  # alternatives shown besides the top intent

    def __post_init__(self) -> None:
        if not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(f"policy.threshold must be in [0, 1], got {self.threshold}")
        if not 0.0 < self.target_precision <= 1.0:
            raise ConfigError(f"policy.target_precision must be in (0, 1], got {self.target_precision}")
        _positive("policy.top_k", self.top_k)


@dataclass(frozen=True)
class LimitsConfig:
    """What a request may hold."""

    max_message_chars: int = 1000  # longer texts are not single customer messages
    max_messages_per_request: int = 64
    max_history_messages: int = 20
    max_request_bytes: int = 256 * 1024  # HTTP bodies larger than this are refused unread

    def __post_init__(self) -> None:
        for name in ("max_message_chars", "max_messages_per_request", "max_request_bytes"):
            _positive(f"limits.{name}", getattr(self, name))


@dataclass(frozen=True)
class HttpConfig:
    """The JSON endpoint and agent page."""

    host: str = "127.0.0.1"
    port: int = 8080
    retry_after_seconds: int = 5  # sent with 503 when the model server is down


@dataclass(frozen=True)
class AppConfig:
    """Everything the customer-service app reads at start."""

    server: ServerConfig = field(default_factory=ServerConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    templates_path: Path = DEFAULT_TEMPLATES_PATH

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["templates_path"] = str(self.templates_path)
        return values


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")


def config_from_dict(values: dict[str, Any], base_dir: Path = DEFAULT_CONFIG_PATH.parent,
                     source: str = "") -> AppConfig:
    """An :class:`AppConfig` from parsed YAML; ``templates_path`` (default ``templates.yaml``)
    is relative to ``base_dir``."""
    values = {**values, "templates_path": values.get("templates_path") or DEFAULT_TEMPLATES_PATH.name}
    config = build_dataclass(AppConfig, expand_env(values), "", source)
    templates = config.templates_path
    return dataclasses.replace(config, templates_path=templates if templates.is_absolute() else base_dir / templates)


def load_config(path: Path = DEFAULT_CONFIG_PATH) -> AppConfig:
    """Reads a YAML config file (the packaged one by default)."""
    return config_from_dict(read_yaml(path, "config file"), Path(path).parent, str(path))


def save_policy(path: Path, policy: PolicyConfig) -> None:
    """Rewrites only the ``policy`` section of the YAML file at ``path``, keeping the rest."""
    values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    values["policy"] = dataclasses.asdict(policy)
    Path(path).write_text(HEADER + yaml.safe_dump(values, sort_keys=False), encoding="utf-8")


def with_server_address(config: AppConfig, address: str) -> AppConfig:
    """The same configuration pointed at another model server."""
    return dataclasses.replace(config, server=dataclasses.replace(config.server, address=address))


HEADER = (
    "# Customer-service app configuration (apps/customer_service/config.py documents each key).\n"
    "# The policy section is written by `python -m apps.customer_service tune-threshold`.\n"
)
