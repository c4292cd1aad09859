"""The library call: a user's context in, the catalog's best items out, in two stages.

Stage 1 (retrieve): BM25 over the catalog (``lexical_depth`` best) and the
embedder's vector of the user's context against every item vector
(``vector_depth`` best), both restricted to items that pass the filters, the
candidate list and the exclusions; the two lists are fused (see
:mod:`apps.ranker.retrieval`).  Stage 2 (re-rank): the fused top
``rerank_depth`` go to the cross-encoder in ONE batched Predict call and are
ordered by its score; fused items below the top N follow in fused order.
The request's time budget (``request_budget_ms``, from its arrival) is the
re-rank call's deadline: when it runs out, or when no re-ranker is served (none
was blessed), the request is answered in the fused order, and the response's
``rerank`` entry says which (``status`` and ``reason``).

The user's context is free ``text`` and/or ``recent`` item ids.  Recent items
count through their catalog texts: for BM25 the free text and their texts are
joined into one query; for the vector, the free text's embedding and the
re-normalised mean of the recent items' stored vectors are averaged (each with
weight one half) and re-normalised, so a long history does not drown what the
user typed, and no embedder call is needed for the history.  The re-ranker's
query is the free text, or, without one, the recent items' texts joined.
Recent items are excluded from the results unless ``exclude_recent`` is false.

Example::

    with Ranker.from_config(load_config()) as ranker:
        response = ranker.rank(RankRequest(text="a light tent", filters={"in_stock": True}, k=5))
        [(item.id, item.score, item.found_by) for item in response.items]
"""

from __future__ import annotations

import collections
import dataclasses
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from apps.ranker import catalog
from apps.ranker.config import AppConfig, RetrievalConfig
from apps.ranker.errors import EmptyIndex, InvalidRequest, ModelError, ModelNotServed, ModelTimeout, ModelUnavailable
from apps.ranker.index import CatalogIndex, current_generation
from apps.ranker.models import Models
from apps.ranker.retrieval import compile_filters, fuse, matches, rerank_head, top_k
from suite_core.beir import Document

MAX_QUERY_CHARS = 2000  # per text field of a request
# What stage 2 did for a request (the response's ``rerank.status``, the app's metrics):
# reranked: the fused top N are in the re-ranker's order; off: not asked for (rerank false, depth 0);
# no_reranker: none configured or none served (no blessed version): hybrid order;
# time_budget: the request's budget ran out before or during the call: hybrid order;
# unavailable: the model server is down (degraded mode): hybrid order, flagged degraded.
RERANK_STATUSES = ("reranked", "off", "no_reranker", "time_budget", "unavailable")
_RERANK_QUERY_CHARS = 1000  # a history joined into a re-ranker query is cut here


@dataclasses.dataclass(frozen=True)
class RankRequest:
    text: str | None = None  # what the user typed
    recent: tuple[str, ...] = ()  # ids of items the user recently engaged with
    candidates: tuple[str, ...] | None = None  # rank only these (None: the whole catalog)
    filters: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    exclude: tuple[str, ...] = ()  # already seen: never returned
    exclude_recent: bool = True
    k: int | None = None  # None: retrieval.default_k
    rerank: bool = True  # False: stage 1 only

    @classmethod
    def parse(cls, body: object) -> RankRequest:
        """A request from the JSON body of ``POST /v1/rank``; wrong shapes are :class:`InvalidRequest`."""
        if not isinstance(body, dict):
            raise InvalidRequest("the body must be a JSON object", problem="invalid_field", status=400)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise InvalidRequest(f"unknown field(s) {unknown}; known: {sorted(known)}", problem="invalid_field",
                                 status=400)
        text = body.get("text")
        if text is not None and not isinstance(text, str):
            raise InvalidRequest("text must be a string", problem="invalid_field", status=400)
        k = body.get("k")
        if k is not None and (isinstance(k, bool) or not isinstance(k, int)):
            raise InvalidRequest(f"k must be an integer, got {k!r}", problem="invalid_field", status=400)
        for flag in ("exclude_recent", "rerank"):
            if not isinstance(body.get(flag, True), bool):
                raise InvalidRequest(f"{flag} must be true or false", problem="invalid_field", status=400)
        filters = body.get("filters") or {}
        if not isinstance(filters, dict):
            raise InvalidRequest("filters must be an object", problem="invalid_filter", status=400)
        candidates = body.get("candidates")
        return cls(text=text, recent=_ids(body, "recent"),
                   candidates=None if candidates is None else _ids(body, "candidates"),
                   filters=filters, exclude=_ids(body, "exclude"), exclude_recent=body.get("exclude_recent", True),
                   k=k, rerank=body.get("rerank", True))


def _ids(body: dict, name: str) -> tuple[str, ...]:
    values = body.get(name) or []
    if not isinstance(values, list) or not all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                               for v in values):
        raise InvalidRequest(f"{name} must be a list of item ids", problem="invalid_field", status=400)
    return tuple(str(v) for v in values)


@dataclasses.dataclass(frozen=True)
class RankedItem:
    id: str
    title: str
    score: float  # the re-ranker's score when it ranked the item (``stage == "rerank"``), else the fused score
    stage: str  # "rerank" or "fusion" (below the re-rank depth, or stage 2 off or unavailable)
    found_by: tuple[str, ...]  # "bm25", "vector"
    bm25_rank: int | None
    bm25_score: float | None
    vector_rank: int | None
    vector_score: float | None
    fused_score: float
    rerank_score: float | None
    rerank_probability: float | None
    metadata: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["found_by"] = list(self.found_by)
        values["metadata"] = dict(self.metadata)
        return values


@dataclasses.dataclass(frozen=True)
class RankResponse:
    items: list[RankedItem]
    warnings: list[dict[str, Any]]  # {"code", "message", "ids"?}
    degraded: bool
    degraded_reason: str | None
    stages: list[str]  # the stages that ran: "bm25", "vector", "rerank"
    timings_ms: dict[str, float]
    index: dict[str, Any]  # generation and item count answered from
    models: dict[str, int]  # the model versions that answered
    # {"status": one of RERANK_STATUSES, "depth": N asked for, "reason": why not "reranked" (or None)}
    rerank: dict[str, Any] = dataclasses.field(default_factory=lambda: {"status": "off", "depth": 0, "reason": None})

    def to_dict(self) -> dict[str, Any]:
        return {"items": [item.to_dict() for item in self.items], "warnings": self.warnings,
                "degraded": self.degraded, "degraded_reason": self.degraded_reason, "stages": self.stages,
                "timings_ms": self.timings_ms, "index": self.index, "models": self.models, "rerank": self.rerank}


@dataclasses.dataclass
class _Context:
    """A request resolved against the index: what to search with and where."""

    lexical_text: str
    rerank_query: str
    text: str | None
    recent_rows: list[int]
    mask: np.ndarray
    k: int
    warnings: list[dict[str, Any]]


class Ranker:
    """Ranks catalog items for a user; holds the index in memory and reloads it when a new generation is
    put in force (by this process's :meth:`ingest` or by another process).  Safe to share between threads."""

    def __init__(self, config: AppConfig, models: Models | None = None) -> None:
        self.config = config
        self.models = models or Models(config.server)
        self.directory = config.index.directory
        self._lock = threading.Lock()
        self._index = CatalogIndex.load(self.directory)
        self._outcomes: collections.Counter[str] = collections.Counter()
        self._outcomes_lock = threading.Lock()  # not the index lock: a reload must not hold up counting

    @classmethod
    def from_config(cls, config: AppConfig) -> Ranker:
        return cls(config)

    def close(self) -> None:
        self.models.close()

    def __enter__(self) -> Ranker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the catalog -------------------------------------------------------------------

    @property
    def index(self) -> CatalogIndex:
        """The generation in force (reloaded when ``CURRENT`` names another one)."""
        name = current_generation(self.directory)
        if name != self._index.generation and name is not None:
            with self._lock:
                if name != self._index.generation:
                    self._index = CatalogIndex.load(self.directory)
        return self._index

    def ingest(self, documents: Sequence[Document] | Path, *, full: bool = False) -> catalog.IngestReport:
        if isinstance(documents, (str, Path)):
            documents = catalog.read_catalog(Path(documents))
        report = catalog.ingest(self.directory, documents, self.models, full=full)
        return report

    def remove(self, ids: Sequence[str]) -> tuple[list[str], list[str]]:
        return catalog.remove(self.directory, ids)

    # -- ranking -------------------------------------------------------------------------

    def rank(self, request: RankRequest) -> RankResponse:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        index = self.index
        if len(index) == 0:
            raise EmptyIndex(f"the catalog index at {self.directory} is empty: ingest a catalog first "
                             "(python -m apps.ranker ingest <catalog.jsonl>)")
        retrieval = self.config.retrieval
        context = self._resolve(index, request, retrieval)
        warnings = context.warnings
        degraded_reason: str | None = None
        versions: dict[str, int] = {}
        stages = ["bm25"]

        clock = time.perf_counter()
        lexical = top_k(index.lexical_scores(context.lexical_text), context.mask, retrieval.lexical_depth,
                        positive_only=True)
        timings["bm25"] = _ms(clock)

        vector: list[tuple[int, float]] = []
        try:
            clock = time.perf_counter()
            user_vector = self._user_vector(index, context, versions, warnings)
            timings["embed"] = _ms(clock)
            clock = time.perf_counter()
            vector = top_k(index.vector_scores(user_vector), context.mask, retrieval.vector_depth)
            timings["vector"] = _ms(clock)
            stages.append("vector")
        except ModelUnavailable as exc:
            if not retrieval.degraded_mode:
                raise
            degraded_reason = f"vector retrieval and re-ranking skipped: {exc}"

        clock = time.perf_counter()
        lists = {"bm25": lexical, "vector": vector}
        fused = fuse(lists, retrieval.fusion, rrf_k=retrieval.rrf_k, weight_lexical=retrieval.score_weight_lexical)
        timings["fusion"] = _ms(clock)

        reranked: dict[int, tuple[float, float]] = {}
        rerank = self._rerank_stage(index, context, fused, request, started, degraded_reason, reranked, timings)
        if rerank.get("degraded_reason"):
            degraded_reason = rerank.pop("degraded_reason")
        if rerank["status"] == "reranked":
            stages.append("rerank")
        with self._outcomes_lock:
            self._outcomes[rerank["status"]] += 1

        items = _assemble(index, fused, lists, reranked, retrieval)[:context.k]
        if not items:
            warnings.append({"code": "no_match", "message": "no item passed the filters, candidates and exclusions"
                             if not context.mask.any() else "no item matched the context"})
        timings["total"] = _ms(started)
        return RankResponse(items, warnings, degraded_reason is not None, degraded_reason, stages, timings,
                            {"generation": index.generation, "items": len(index)}, versions, rerank)

    def _rerank_stage(self, index: CatalogIndex, context: _Context, fused: list[tuple[int, float]],
                      request: RankRequest, started: float, degraded_reason: str | None,
                      reranked: dict[int, tuple[float, float]], timings: dict[str, float]) -> dict[str, Any]:
        """Stage 2: ONE Predict call for the fused top N, within what is left of the request's time budget.
        Fills ``reranked``; returns the response's ``rerank`` entry (``status``: see :data:`RERANK_STATUSES`)."""
        retrieval, server = self.config.retrieval, self.config.server
        depth = min(retrieval.rerank_depth if request.rerank else 0, len(fused))
        outcome: dict[str, Any] = {"status": "off", "depth": depth, "reason": None}
        if not depth:
            return outcome
        if degraded_reason is not None:
            return {**outcome, "status": "unavailable", "reason": degraded_reason}
        if not server.reranker_model:
            return {**outcome, "status": "no_reranker", "reason": "no re-ranker is configured (server.reranker_model)"}
        timeout = None  # the configured deadline
        if retrieval.request_budget_ms:
            remaining = retrieval.request_budget_ms / 1000 - (time.perf_counter() - started)
            if remaining <= 0:
                return {**outcome, "status": "time_budget",
                        "reason": f"the request's {retrieval.request_budget_ms:g} ms budget was spent before the "
                                  "re-rank: hybrid order"}
            if remaining < server.deadline_seconds:
                timeout = remaining
        head = [row for row, _ in fused[:depth]]
        clock = time.perf_counter()
        try:
            scores, probabilities = self.models.rerank(context.rerank_query,
                                                       [index.items[row].full_text for row in head], timeout=timeout)
            reranked.update({row: (float(s), float(p)) for row, s, p in zip(head, scores, probabilities)})
            outcome["status"] = "reranked"
        except ModelTimeout as exc:
            if timeout is None:  # the configured deadline, not the budget: the server is too slow
                if not retrieval.degraded_mode:
                    raise
                outcome.update(status="unavailable", reason=str(exc), degraded_reason=f"re-ranking skipped: {exc}")
            else:
                outcome.update(status="time_budget", reason=f"the re-rank did not finish within the request's "
                                                            f"{retrieval.request_budget_ms:g} ms budget: hybrid order")
        except ModelNotServed as exc:
            outcome.update(status="no_reranker", reason=f"no blessed re-ranker is served: hybrid order ({exc})")
        except ModelUnavailable as exc:
            if not retrieval.degraded_mode:
                raise
            outcome.update(status="unavailable", reason=str(exc), degraded_reason=f"re-ranking skipped: {exc}")
        timings["rerank"] = _ms(clock)
        return outcome

    def rerank_outcomes(self) -> dict[str, int]:
        """How many requests ended in each re-rank status since start (the app's metrics)."""
        with self._outcomes_lock:
            return {status: self._outcomes.get(status, 0) for status in RERANK_STATUSES}

    def _resolve(self, index: CatalogIndex, request: RankRequest, retrieval: RetrievalConfig) -> _Context:
        warnings: list[dict[str, Any]] = []
        k = retrieval.default_k if request.k is None else request.k
        if not 1 <= k <= retrieval.max_k:
            raise InvalidRequest(f"k must be in [1, {retrieval.max_k}], got {k}", problem="invalid_k")
        text = (request.text or "").strip() or None
        if text is not None and len(text) > MAX_QUERY_CHARS:
            raise InvalidRequest(f"text is {len(text)} characters; the limit is {MAX_QUERY_CHARS}",
                                 problem="text_too_long")
        recent = list(dict.fromkeys(request.recent))
        if len(recent) > retrieval.max_recent_items:
            warnings.append({"code": "recent_capped", "message": f"{len(recent)} recent items given; the "
                             f"{retrieval.max_recent_items} first are used (retrieval.max_recent_items)"})
            recent = recent[:retrieval.max_recent_items]
        recent_rows = _known(index, recent, "recent", warnings)
        if text is None and not recent_rows:
            problem = "unknown_recent_items" if recent else "empty_context"
            raise InvalidRequest("the request needs a non-empty text or recent item ids that are in the catalog"
                                 + (f" (unknown: {recent[:10]})" if recent else ""), problem=problem)
        conditions = compile_filters(request.filters)

        mask = np.ones(len(index), dtype=bool)
        if request.candidates is not None:
            candidates = list(dict.fromkeys(request.candidates))
            if len(candidates) > retrieval.max_candidates:
                warnings.append({"code": "candidates_capped",
                                 "message": f"{len(candidates)} candidates given; only the first "
                                            f"{retrieval.max_candidates} are ranked (retrieval.max_candidates)"})
                candidates = candidates[:retrieval.max_candidates]
            mask[:] = False
            mask[_known(index, candidates, "candidates", warnings)] = True
        if conditions:
            mask &= np.fromiter((matches(item.metadata, conditions) for item in index.items), bool, len(index))
        excluded = _known(index, list(dict.fromkeys(request.exclude)), "exclude", warnings)
        mask[excluded] = False
        if request.exclude_recent:
            mask[recent_rows] = False

        recent_texts = [index.items[row].full_text for row in recent_rows]
        lexical_text = " ".join(([text] if text else []) + recent_texts)
        rerank_query = text or " ".join(recent_texts)[:_RERANK_QUERY_CHARS]
        return _Context(lexical_text, rerank_query, text, recent_rows, mask, k, warnings)

    def _user_vector(self, index: CatalogIndex, context: _Context, versions: dict[str, int],
                     warnings: list[dict[str, Any]]) -> np.ndarray:
        parts = []
        if context.text is not None:
            vectors, version = self.models.embed_with_version([context.text])
            versions["embedder"] = version
            if vectors.shape[1] != index.vectors.shape[1]:
                raise ModelError(f"the embedder returns {vectors.shape[1]}-dimensional vectors, the index holds "
                                 f"{index.vectors.shape[1]}-dimensional ones ({index.embedder}): re-ingest the "
                                 "catalog")
            if index.embedder.get("version") not in (None, version):
                warnings.append({"code": "embedder_version_mismatch",
                                 "message": f"the index was embedded by {index.embedder}, the server answered with "
                                            f"version {version}: re-ingest the catalog"})
            parts.append(vectors[0])
        if context.recent_rows:
            parts.append(_unit(index.vectors[context.recent_rows].mean(axis=0)))
        return _unit(np.mean(parts, axis=0))


def _unit(vector: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def _known(index: CatalogIndex, ids: Sequence[str], field: str, warnings: list[dict[str, Any]]) -> list[int]:
    rows = [index.position[i] for i in ids if i in index.position]
    unknown = [i for i in ids if i not in index.position]
    if unknown:
        warnings.append({"code": f"unknown_{field}_ids", "ids": unknown[:100],
                         "message": f"{len(unknown)} {field} id(s) are not in the catalog and were ignored"})
    return rows


def _assemble(index: CatalogIndex, fused: list[tuple[int, float]], lists: Mapping[str, list[tuple[int, float]]],
              reranked: Mapping[int, tuple[float, float]], retrieval: RetrievalConfig) -> list[RankedItem]:
    positions = {name: {row: (rank, score) for rank, (row, score) in enumerate(ranked, start=1)}
                 for name, ranked in lists.items()}
    # The re-ranked top N in their final order, then the rest in fused order (as the evaluation does).
    head = [row for row, _ in fused if row in reranked]
    fused_scores = dict(fused)
    order = [(row, fused_scores[row]) for row in rerank_head(
        head, [reranked[row][0] for row in head], retrieval.rerank_fusion, rrf_k=retrieval.rrf_k,
        weight=retrieval.rerank_weight)] + [entry for entry in fused if entry[0] not in reranked]
    items = []
    for row, fused_score in order:
        item = index.items[row]
        bm25 = positions["bm25"].get(row)
        vector = positions["vector"].get(row)
        rerank = reranked.get(row)
        items.append(RankedItem(
            id=item.id, title=item.title, score=rerank[0] if rerank else fused_score,
            stage="rerank" if rerank else "fusion",
            found_by=tuple(name for name, hit in (("bm25", bm25), ("vector", vector)) if hit),
            bm25_rank=bm25[0] if bm25 else None, bm25_score=bm25[1] if bm25 else None,
            vector_rank=vector[0] if vector else None, vector_score=vector[1] if vector else None,
            fused_score=fused_score, rerank_score=rerank[0] if rerank else None,
            rerank_probability=rerank[1] if rerank else None, metadata=item.metadata))
    return items


def _ms(since: float) -> float:
    return round((time.perf_counter() - since) * 1000, 3)
