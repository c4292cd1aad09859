"""Typed configuration, one dataclass per concern, loaded from YAML.

The defaults live in ``default.yaml`` beside this module; a user file only
has to name what it changes, and ``--set key.path=value`` overrides single
values on the command line.  Unknown keys and wrong types are errors that
name the key, so a typo never silently falls back to a default.

Example:

>>> config = load_config(overrides={"windows.size_seconds": "1800"})
>>> config.windows.size_seconds, config.scoring.model
(1800.0, 'sentiment')
>>> try:
...     load_config(overrides={"windows.sise_seconds": "1"})
... except ConfigError as error:
...     print(error)  # doctest: +ELLIPSIS
unknown key windows.sise_seconds; expected one of: allowed_lateness_seconds, ...
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apps.sentiment_monitor.items import ItemLimits
from suite_core.config import ConfigError as ConfigError  # The suite's one; raised by validate() too.
from suite_core.config import load_dataclass, merge, parse_override, read_yaml

DEFAULT_CONFIG = Path(__file__).with_name("default.yaml")

SOURCE_KINDS = ("file", "directory", "stdin", "http")
SINK_KINDS = ("webhook", "slack", "email", "jsonl")


@dataclass(frozen=True)
class StoreConfig:
    """Where state lives: ``sqlite:///path.db`` (relative or absolute) or ``postgresql://...``."""

    url: str = "sqlite:///sentiment_monitor.db"


@dataclass(frozen=True)
class SourceConfig:
    """One input. ``file``: a JSON-lines file followed like ``tail -f``;
    ``directory``: every file matching ``pattern`` in ``path``, each followed;
    ``stdin``; ``http``: a POST endpoint on ``host:port`` (``/items``)."""

    kind: str
    name: str = ""  # key of the stored read position; defaults to kind:path
    path: str = ""
    pattern: str = "*.jsonl"
    host: str = "127.0.0.1"
    port: int = 0
    default_source: str = ""  # the item's `source` when the line has none

    @property
    def key(self) -> str:
        return self.name or (f"{self.kind}:{self.path}" if self.path else self.kind)


@dataclass(frozen=True)
class IngestConfig:
    sources: tuple[SourceConfig, ...] = ()
    dead_letter_path: str = "dead_letters.jsonl"
    max_lines_per_poll: int = 256  # per source; bounds one ingest transaction
    poll_seconds: float = 0.05  # idle wait between looks at the sources
    max_text_chars: int = 2000
    max_line_bytes: int = 1 << 20  # a longer line is dead-lettered as "too long", its head kept
    max_id_chars: int = 200
    max_json_depth: int = 32
    earliest_timestamp: float = 946_684_800.0  # 2000-01-01T00:00:00Z; earlier event times are refused
    max_future_seconds: float = 3600.0  # event times later than the wall clock plus this are refused

    @property
    def limits(self) -> ItemLimits:
        return ItemLimits(max_line_bytes=self.max_line_bytes, max_text_chars=self.max_text_chars,
                          max_id_chars=self.max_id_chars, max_json_depth=self.max_json_depth,
                          earliest_timestamp=self.earliest_timestamp, max_future_seconds=self.max_future_seconds)


@dataclass(frozen=True)
class EntityConfig:
    """``watchlist`` maps a ticker to the company names and aliases that mean it."""

    watchlist: dict[str, tuple[str, ...]] = field(default_factory=dict)
    cashtags: bool = True
    only_watchlist: bool = False  # drop cashtags / tickers that are not on the watchlist


@dataclass(frozen=True)
class ScoringConfig:
    address: str = "127.0.0.1:8500"
    model: str = "sentiment"
    signature: str = "serving_default"
    batch_size: int = 32  # items per Predict request
    timeout_seconds: float = 10.0
    # While the server is unreachable items stay pending; retry after this (doubling up to the max).
    unavailable_backoff_seconds: float = 0.5
    max_unavailable_backoff_seconds: float = 1.0  # also bounds how long after the server is back scoring resumes


@dataclass(frozen=True)
class WindowConfig:
    size_seconds: float = 3600.0
    slide_seconds: float = 600.0  # the window size must be a multiple of it
    allowed_lateness_seconds: float = 900.0  # older than (newest event time - this): stored, not counted
    baseline_seconds: float = 86400.0  # the z-score baseline: this long before the window
    # The watermark (newest event time, for lateness) moves at most this far past the median of the
    # last `watermark_sample` counted event times, so one item far ahead cannot make the rest "late".
    max_watermark_skew_seconds: float = 900.0
    watermark_sample: int = 31


@dataclass(frozen=True)
class NegativeShareRule:
    enabled: bool = True
    threshold: float = 0.6  # share of negative items in the window above which it fires
    min_items: int = 5
    severity: str = "warning"
    critical_share: float = 0.8  # at or above: severity critical


@dataclass(frozen=True)
class BaselineShiftRule:
    enabled: bool = True
    z_threshold: float = 3.0  # fires when the window mean is this many standard errors below the baseline
    min_items: int = 5
    min_baseline_items: int = 20
    min_baseline_std: float = 0.1  # floor, so a perfectly steady baseline does not make every dip infinite
    severity: str = "warning"
    critical_z: float = 5.0


@dataclass(frozen=True)
class StrongNegativeRule:
    enabled: bool = True
    min_negative_probability: float = 0.9
    sources: tuple[str, ...] = ("wire",)  # the high-priority sources
    severity: str = "critical"


@dataclass(frozen=True)
class RulesConfig:
    negative_share: NegativeShareRule = field(default_factory=NegativeShareRule)
    baseline_shift: BaselineShiftRule = field(default_factory=BaselineShiftRule)
    strong_negative: StrongNegativeRule = field(default_factory=StrongNegativeRule)
    cooldown_seconds: float = 3600.0  # per entity and rule, in event time
    evidence_items: int = 3


@dataclass(frozen=True)
class SinkConfig:
    """``webhook`` / ``slack``: ``url``; ``email``: ``host``, ``port``, ``sender``,
    ``recipients`` (password from the environment variable ``password_env``);
    ``jsonl``: ``path``."""

    kind: str
    name: str = ""  # key of the delivery status; defaults to the kind
    url: str = ""
    path: str = ""
    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "sentiment-monitor@localhost"
    recipients: tuple[str, ...] = ()
    starttls: bool = False
    username: str = ""
    password_env: str = ""
    timeout_seconds: float = 5.0

    @property
    def key(self) -> str:
        return self.name or self.kind


@dataclass(frozen=True)
class DeliveryConfig:
    sinks: tuple[SinkConfig, ...] = ()
    # After this many failed attempts an alert's delivery is in the alert dead-letter queue (visible in
    # metrics and the dashboard, `replay` sends it now); it is still retried every max_backoff_seconds.
    max_attempts: int = 10
    initial_backoff_seconds: float = 0.5
    max_backoff_seconds: float = 60.0
    poll_seconds: float = 0.1
    drain_seconds: float = 30.0  # `run --until-idle`: wait this long for due deliveries before exiting


@dataclass(frozen=True)
class DashboardConfig:
    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 8765
    refresh_seconds: float = 5.0
    recent_alerts: int = 20


@dataclass(frozen=True)
class MonitorConfig:
    store: StoreConfig = field(default_factory=StoreConfig)
    ingest: IngestConfig = field(default_factory=IngestConfig)
    entities: EntityConfig = field(default_factory=EntityConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    windows: WindowConfig = field(default_factory=WindowConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    dashboard: DashboardConfig = field(default_factory=DashboardConfig)

    def validate(self) -> MonitorConfig:
        w = self.windows
        if w.slide_seconds <= 0 or w.size_seconds <= 0:
            raise ConfigError("windows: size_seconds and slide_seconds must be positive")
        ratio = w.size_seconds / w.slide_seconds
        if abs(ratio - round(ratio)) > 1e-9:
            raise ConfigError(f"windows: size_seconds ({w.size_seconds}) must be a multiple of slide_seconds "
                              f"({w.slide_seconds})")
        if self.scoring.batch_size < 1:
            raise ConfigError("scoring.batch_size must be at least 1")
        if w.watermark_sample < 1 or w.max_watermark_skew_seconds < 0:
            raise ConfigError("windows: watermark_sample must be at least 1 and max_watermark_skew_seconds "
                              "not negative")
        i = self.ingest
        if min(i.max_line_bytes, i.max_text_chars, i.max_id_chars, i.max_json_depth) < 1:
            raise ConfigError("ingest: max_line_bytes, max_text_chars, max_id_chars and max_json_depth must be "
                              "at least 1")
        if self.delivery.max_attempts < 1:
            raise ConfigError("delivery.max_attempts must be at least 1")
        for source in self.ingest.sources:
            if source.kind not in SOURCE_KINDS:
                raise ConfigError(f"ingest.sources: unknown kind {source.kind!r} (known: {', '.join(SOURCE_KINDS)})")
            if source.kind in ("file", "directory") and not source.path:
                raise ConfigError(f"ingest.sources: a {source.kind} source needs a path")
        keys = [s.key for s in self.delivery.sinks]
        if len(set(keys)) != len(keys):
            raise ConfigError(f"delivery.sinks: two sinks share a name ({keys}); give each a distinct name")
        for sink in self.delivery.sinks:
            if sink.kind not in SINK_KINDS:
                raise ConfigError(f"delivery.sinks: unknown kind {sink.kind!r} (known: {', '.join(SINK_KINDS)})")
            if sink.kind in ("webhook", "slack") and not sink.url:
                raise ConfigError(f"delivery.sinks: the {sink.key} sink needs a url")
            if sink.kind == "jsonl" and not sink.path:
                raise ConfigError(f"delivery.sinks: the {sink.key} sink needs a path")
            if sink.kind == "email" and not sink.recipients:
                raise ConfigError(f"delivery.sinks: the {sink.key} sink needs recipients")
        return self


def config_from_dict(data: dict) -> MonitorConfig:
    """A validated :class:`MonitorConfig` from plain data (defaults filled in)."""
    return load_dataclass(MonitorConfig, defaults=merge(read_yaml(DEFAULT_CONFIG), data)).validate()


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> MonitorConfig:
    """The defaults, then the YAML file at ``path``, then ``overrides`` (dotted keys; a string
    value is read as YAML, as ``--set key=value`` is)."""
    parsed = {key: parse_override(f"{key}={raw}")[1] if isinstance(raw, str) else raw
              for key, raw in (overrides or {}).items()}
    return load_dataclass(MonitorConfig, path, defaults=DEFAULT_CONFIG, overrides=parsed).validate()
