"""Ranking quality judged on the task the ranker app does: full-corpus retrieval.

One code path for the pipeline's Evaluator and for ``apps.ranker evaluate``, so
the two cannot disagree.  For each query, over the WHOLE corpus:

- ``bm25``: BM25 alone (:mod:`suite_core.bm25`), top ``RUN_DEPTH``;
- ``embedder``: exact cosine search with the embedder's vectors alone, top ``RUN_DEPTH``
  (absent when no embedder is given);
- ``hybrid``: BM25's top ``lexical_depth`` and the embedder's top ``vector_depth``
  fused exactly as the app fuses (:func:`suite_core.fusion.fuse`, RRF by default);
- one run per re-ranker given: the hybrid top ``rerank_depth`` re-ordered by the
  re-ranker's scores (``rerank_fusion``: alone, or fused with the hybrid ranks; ties
  keep the hybrid order), the rest of the hybrid list after them -- what the app
  returns for a request.

Each run is scored with nDCG@10, Recall@100 and MRR@10 against the qrels.  A
re-ranker is only worth serving if its run beats ``hybrid``; an embedder is judged
by ``embedder`` (and the ``hybrid`` it makes).

Example (BM25 only, no embedder, a re-ranker that prefers longer texts):

>>> texts = ["zebra stripes", "banana bread", "apple banana pie", "a zebra eats a banana"]
>>> index = CorpusIndex(texts)
>>> report = evaluate_retrieval(index, ["d1", "d2", "d3", "d4"], {"q1": "banana"},
...                             {"q1": {"d3": 1}}, rerankers={"hybrid+rerank": lambda q, rows:
...                                                           [len(texts[r]) for r in rows]})
>>> sorted(report)
['bm25', 'hybrid', 'hybrid+rerank']
>>> report["hybrid+rerank"]["mrr_at_10"] >= report["bm25"]["mrr_at_10"]
True
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Literal, Protocol

import numpy as np

from suite_core.bm25 import build_index, lexical_scores
from suite_core.fusion import fuse, rerank_head, top_k
from suite_core.ranking_metrics import ranking_metrics

RUN_DEPTH = 100  # documents per query in every run (Recall@100)
METRICS = ("ndcg_at_10", "recall_at_100", "mrr_at_10")
Run = dict[str, dict[str, float]]
# (query text, corpus rows of the hybrid head, best first) -> one relevance score per row.
Reranker = Callable[[str, list[int]], Sequence[float] | np.ndarray]


@dataclasses.dataclass(frozen=True)
class HybridSettings:
    """The app's first stage and re-rank depth (``apps.ranker``'s ``retrieval`` settings carry the same
    names), so an evaluation ranks what a request would."""

    lexical_depth: int = 100  # BM25 candidates fused
    vector_depth: int = 100  # embedder candidates fused
    fusion: Literal["rrf", "score"] = "rrf"
    rrf_k: int = 60
    score_weight_lexical: float = 0.5  # only for fusion: score
    rerank_depth: int = 100  # the hybrid top N a re-ranker orders
    # How the head's order is made from the re-ranker's scores (suite_core.fusion.rerank_head):
    # `replace` by the scores alone, `rrf` fused with the hybrid ranks, the re-ranker's weighted.
    rerank_fusion: Literal["replace", "rrf"] = "replace"
    rerank_weight: float = 1.0


class SearchIndex(Protocol):
    """What an evaluation searches: the app's on-disk index and :class:`CorpusIndex` both are one."""

    def __len__(self) -> int: ...

    def lexical_scores(self, text: str) -> np.ndarray: ...

    def vector_scores(self, vector: np.ndarray) -> np.ndarray: ...


class CorpusIndex:
    """A corpus in memory: BM25 over its texts and, once given, its unit vectors (exact search)."""

    def __init__(self, texts: Sequence[str], vectors: np.ndarray | None = None) -> None:
        self.size = len(texts)
        self.bm25 = build_index(texts) if texts else None
        self.vectors = None if vectors is None else np.ascontiguousarray(vectors, dtype=np.float32)

    def __len__(self) -> int:
        return self.size

    def with_vectors(self, vectors: np.ndarray) -> CorpusIndex:
        """The same BM25 index with another embedder's vectors."""
        other = CorpusIndex([], vectors)
        other.size, other.bm25 = self.size, self.bm25
        return other

    def lexical_scores(self, text: str) -> np.ndarray:
        return lexical_scores(self.bm25, text, self.size)

    def vector_scores(self, vector: np.ndarray) -> np.ndarray:
        if self.vectors is None:
            raise ValueError("this index holds no vectors")
        return self.vectors @ np.asarray(vector, dtype=np.float32)


def _as_run(rows: Sequence[int], ids: Sequence[str]) -> dict[str, float]:
    """Ranked rows as {doc id: score}, the score decreasing with the rank."""
    return {ids[row]: float(len(rows) - rank) for rank, row in enumerate(rows)}


def system_runs(index: SearchIndex, doc_ids: Sequence[str], queries: Mapping[str, str],
                query_vectors: Mapping[str, np.ndarray] | None = None,
                settings: HybridSettings = HybridSettings(),
                rerankers: Mapping[str, Reranker] | None = None,
                timings: dict[str, float] | None = None) -> dict[str, Run]:
    """{system: run} for BM25, the embedder (with ``query_vectors``), hybrid and each re-ranker.

    ``timings`` (when given) receives the seconds each re-ranker took, summed over the queries.
    """
    rerankers = dict(rerankers or {})
    systems = ["bm25", *(["embedder"] if query_vectors is not None else []), "hybrid", *rerankers]
    runs: dict[str, Run] = {name: {} for name in systems}
    seconds = dict.fromkeys(rerankers, 0.0)
    for query_id, text in queries.items():
        lexical = top_k(index.lexical_scores(text), None, max(RUN_DEPTH, settings.lexical_depth),
                        positive_only=True)
        runs["bm25"][query_id] = _as_run([row for row, _ in lexical[:RUN_DEPTH]], doc_ids)
        lists = {"bm25": lexical[:settings.lexical_depth]}
        if query_vectors is not None:
            dense = top_k(index.vector_scores(query_vectors[query_id]), None,
                          max(RUN_DEPTH, settings.vector_depth))
            runs["embedder"][query_id] = _as_run([row for row, _ in dense[:RUN_DEPTH]], doc_ids)
            lists["vector"] = dense[:settings.vector_depth]
        fused = fuse(lists, settings.fusion, rrf_k=settings.rrf_k, weight_lexical=settings.score_weight_lexical)
        hybrid = [row for row, _ in fused]
        runs["hybrid"][query_id] = _as_run(hybrid[:RUN_DEPTH], doc_ids)
        head, tail = hybrid[:settings.rerank_depth], hybrid[settings.rerank_depth:]
        for name, rerank in rerankers.items():
            clock = time.perf_counter()
            order = rerank_head(head, rerank(text, head), settings.rerank_fusion, rrf_k=settings.rrf_k,
                                weight=settings.rerank_weight) if head else []
            seconds[name] += time.perf_counter() - clock
            runs[name][query_id] = _as_run((order + tail)[:RUN_DEPTH], doc_ids)
    if timings is not None:
        timings.update({f"{name}_s": round(value, 3) for name, value in seconds.items()})
    return runs


def score_runs(runs: Mapping[str, Mapping[str, Mapping[str, float]]],
               qrels: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, float]]:
    """{system: {metric: value}} (nDCG@10, Recall@100, MRR@10) of each run against the same qrels."""
    return {system: {name: value for name, value in ranking_metrics(run, qrels).items() if name in METRICS}
            for system, run in runs.items()}


def evaluate_retrieval(index: SearchIndex, doc_ids: Sequence[str], queries: Mapping[str, str],
                       qrels: Mapping[str, Mapping[str, int]],
                       query_vectors: Mapping[str, np.ndarray] | None = None,
                       settings: HybridSettings = HybridSettings(),
                       rerankers: Mapping[str, Reranker] | None = None,
                       timings: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
    """:func:`system_runs` scored by :func:`score_runs` on the qrels of ``queries``."""
    runs = system_runs(index, doc_ids, queries, query_vectors, settings, rerankers, timings)
    return score_runs(runs, {query: qrels[query] for query in queries})
