"""The ranker's configuration: one typed dataclass per concern, read from YAML.

The packaged ``config.yaml`` holds the defaults.  The YAML is turned into
these dataclasses by the suite's loader (:func:`suite_core.config.build_dataclass`):
unknown keys and wrong types are errors naming the dotted key, so a typo never
silently falls back to a default.

Example::

    config = load_config()                      # the packaged config.yaml
    config.retrieval.fusion                     # 'rrf'
    config = with_overrides(config, address="127.0.0.1:9000", index_path="/tmp/index")
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from suite_core.config import ConfigError, build_dataclass, read_yaml
from suite_core.ranking_evaluation import HybridSettings

DEFAULT_CONFIG_PATH = Path(__file__).with_name("config.yaml")
REPO = Path(__file__).resolve().parents[2]

__all__ = ["AppConfig", "ConfigError", "HttpConfig", "IndexConfig", "RetrievalConfig", "ServerConfig",
           "DEFAULT_CONFIG_PATH", "load_config", "with_overrides"]


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise ConfigError(f"{name} must be > 0, got {value}")


@dataclass(frozen=True)
class ServerConfig:
    """Where the model server is, which models to call and how long a call may take."""

    address: str = "127.0.0.1:8500"
    embedder_model: str = "catalog_embedder"  # text [-1] -> embedding [-1, D], rows L2-normalised
    reranker_model: str = "catalog_reranker"  # query, item_text [-1] -> score, probability [-1]
    signature: str = "serving_default"
    # Per attempt, for a ranking request's calls: a MiniLM re-rank of 100 long
    # pairs takes seconds on a 2-core CPU.
    deadline_seconds: float = 30.0
    ingest_deadline_seconds: float = 60.0  # per attempt, for ingestion's and evaluation's bulk calls
    max_attempts: int = 2  # UNAVAILABLE is retried once (server restarting), nothing else
    # Rows per Predict call: at most the server's batching max_batch_size (infra/serving/batching.config:
    # 128), which refuses larger requests, as TF Serving does.  A re-rank of N items is ONE call when
    # N <= this, else ceil(N / this) calls sent at once (the server runs them on its batch threads).
    max_rows_per_call: int = 128
    # Calls of one re-rank or ingestion in flight at once.  At most the server's batching
    # max_enqueued_batches (2): each full call is a batch of its own, and with more in flight
    # than the queue holds the server refuses some with RESOURCE_EXHAUSTED (seen ingesting
    # SciFact with 4).
    parallel_calls: int = 2

    def __post_init__(self) -> None:
        if not self.address or ":" not in self.address:
            raise ConfigError(f"server.address must be host:port, got {self.address!r}")
        for name in ("deadline_seconds", "ingest_deadline_seconds", "max_attempts", "max_rows_per_call",
                     "parallel_calls"):
            _positive(f"server.{name}", getattr(self, name))


@dataclass(frozen=True)
class IndexConfig:
    """Where the catalog index lives (relative paths are relative to the repository)."""

    path: str = "work/ranker/index"

    @property
    def directory(self) -> Path:
        path = Path(self.path).expanduser()
        return path if path.is_absolute() else REPO / path


@dataclass(frozen=True)
class RetrievalConfig:
    """Stage 1 (lexical + vector, fused) and stage 2 (cross-encoder re-rank) parameters."""

    lexical_depth: int = 100  # BM25 candidates per request
    vector_depth: int = 100  # embedder candidates per request
    fusion: Literal["rrf", "score"] = "rrf"  # reciprocal-rank fusion, or min-max normalised score sum
    rrf_k: int = 60  # RRF's damping constant: 1 / (rrf_k + rank)
    score_weight_lexical: float = 0.5  # only for fusion: score
    rerank_depth: int = 20  # N: the fused top N go to the re-ranker in ONE Predict call (0: no re-rank)
    # The re-ranked head's order: `replace` by the re-ranker's scores alone, `rrf` by RRF of the fused
    # rank and the re-ranker's rank (weighted `rerank_weight`): suite_core.fusion.rerank_head.
    rerank_fusion: Literal["replace", "rrf"] = "replace"
    rerank_weight: float = 1.0
    # Per request, from its arrival: when it runs out before or during the re-rank call, the request is
    # answered in the hybrid (fused) order, flagged rerank_status "time_budget".  0: no budget.
    request_budget_ms: float = 800.0
    default_k: int = 10
    max_k: int = 100
    max_candidates: int = 1000  # an explicit candidate list longer than this is cut (with a warning)
    max_recent_items: int = 20  # recent item ids used as context; more are cut (with a warning)
    degraded_mode: bool = False  # model server down: answer from BM25 alone, flagged degraded (opt-in)

    def __post_init__(self) -> None:
        for name in ("lexical_depth", "vector_depth", "rrf_k", "default_k", "max_k", "max_candidates",
                     "max_recent_items"):
            _positive(f"retrieval.{name}", getattr(self, name))
        if self.rerank_depth < 0:
            raise ConfigError(f"retrieval.rerank_depth must be >= 0, got {self.rerank_depth}")
        if self.request_budget_ms < 0:
            raise ConfigError(f"retrieval.request_budget_ms must be >= 0, got {self.request_budget_ms}")
        if self.rerank_weight <= 0:
            raise ConfigError(f"retrieval.rerank_weight must be > 0, got {self.rerank_weight}")
        if not 0.0 <= self.score_weight_lexical <= 1.0:
            raise ConfigError(f"retrieval.score_weight_lexical must be in [0, 1], got {self.score_weight_lexical}")
        if self.default_k > self.max_k:
            raise ConfigError(f"retrieval.default_k ({self.default_k}) exceeds retrieval.max_k ({self.max_k})")


    def hybrid_settings(self) -> HybridSettings:
        """The first stage and re-rank depth as the shared ranking evaluation takes them."""
        return HybridSettings(lexical_depth=self.lexical_depth, vector_depth=self.vector_depth, fusion=self.fusion,
                              rrf_k=self.rrf_k, score_weight_lexical=self.score_weight_lexical,
                              rerank_depth=self.rerank_depth, rerank_fusion=self.rerank_fusion,
                              rerank_weight=self.rerank_weight)


@dataclass(frozen=True)
class HttpConfig:
    """The JSON endpoint."""

    host: str = "127.0.0.1"
    port: int = 8090
    retry_after_seconds: int = 5  # sent with 503 when the model server is down
    max_request_bytes: int = 256 * 1024  # larger bodies are refused unread


@dataclass(frozen=True)
class AppConfig:
    """Everything the ranker reads at start."""

    server: ServerConfig = field(default_factory=ServerConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    http: HttpConfig = field(default_factory=HttpConfig)

    def __post_init__(self) -> None:
        if self.retrieval.rerank_depth > self.server.max_rows_per_call:
            raise ConfigError(f"retrieval.rerank_depth ({self.retrieval.rerank_depth}) exceeds "
                              f"server.max_rows_per_call ({self.server.max_rows_per_call}): a request's re-rank "
                              "is one Predict call")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def config_from_dict(values: Any, source: str = "<config>") -> AppConfig:
    try:
        return build_dataclass(AppConfig, values, "", source)
    except TypeError as exc:  # a value __post_init__ could not compare
        raise ConfigError(f"{source}: {exc}") from None


def load_config(path: Path = DEFAULT_CONFIG_PATH) -> AppConfig:
    """Reads a YAML config file (the packaged one by default)."""
    return config_from_dict(read_yaml(path, "config file"), str(path))


def with_overrides(config: AppConfig, *, address: str | None = None, index_path: str | Path | None = None,
                   embedder_model: str | None = None, reranker_model: str | None = None,
                   degraded_mode: bool | None = None, max_rows_per_call: int | None = None,
                   **retrieval: Any) -> AppConfig:
    """The same configuration with the CLI's (or a test's) overrides; ``None`` keeps a value."""
    server: dict[str, Any] = {k: v for k, v in {"address": address, "embedder_model": embedder_model,
                                "reranker_model": reranker_model, "max_rows_per_call": max_rows_per_call}.items()
              if v is not None}
    retrieval = {k: v for k, v in {**retrieval, "degraded_mode": degraded_mode}.items() if v is not None}
    return dataclasses.replace(
        config,
        server=dataclasses.replace(config.server, **server),
        index=config.index if index_path is None else IndexConfig(str(index_path)),
        retrieval=dataclasses.replace(config.retrieval, **retrieval),
    )
