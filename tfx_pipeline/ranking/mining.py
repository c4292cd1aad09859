"""Hard negatives: items a first-stage retriever ranks high for a query that the
judgements do not mark relevant. Training against them teaches a model the
distinctions that retrieval alone gets wrong; negatives from the hybrid list
(BM25 + embedder, fused as the ranker app fuses) are what a re-ranker will see.

Example:

>>> bm25 = Bm25Retriever(["red apples and pears", "fast red cars", "green pears"])
>>> bm25.top_k(["red fruit apples"], k=2)[0]
[0, 1]
>>> [row for row, _ in hybrid_scored([(0, 3.0), (1, 1.0)], [(2, 0.9), (0, 0.8)], HybridSettings(), k=3)]
[0, 2, 1]
>>> sample_negatives([5, 1, 7, 2], relevant={1}, count=2, seed="q1")
[2, 7]
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence

import numpy as np

from suite_core.bm25 import build_index, lexical_scores
from suite_core.fusion import fuse, top_k
from suite_core.ranking_evaluation import HybridSettings


class Bm25Retriever:
    """BM25 over the texts: :mod:`suite_core.bm25`, the scoring the ranker app's index uses."""

    def __init__(self, texts: Sequence[str]):
        self._index = build_index(texts)
        self._size = len(texts)

    def scored(self, queries: Sequence[str], k: int) -> list[list[tuple[int, float]]]:
        """(index, score) of the best `k` texts per query with a positive score, best first."""
        return [top_k(lexical_scores(self._index, query, self._size), None, k, positive_only=True)
                for query in queries]

    def top_k(self, queries: Sequence[str], k: int) -> list[list[int]]:
        """Indices of the best `k` texts per query, best first."""
        return [[row for row, _ in ranked] for ranked in self.scored(queries, k)]


def dense_scored(embed: Callable[[Sequence[str]], np.ndarray], queries: Sequence[str], texts: Sequence[str],
                 k: int) -> list[list[tuple[int, float]]]:
    """Exact inner-product search with an embedder's L2-normalised vectors: (index, cosine), best first."""
    scores = embed(queries) @ embed(texts).T
    return [top_k(row, None, k) for row in scores]


def dense_top_k(embed: Callable[[Sequence[str]], np.ndarray], queries: Sequence[str], texts: Sequence[str],
                k: int) -> list[list[int]]:
    """Indices of the best `k` texts per query by cosine similarity."""
    return [[row for row, _ in ranked] for ranked in dense_scored(embed, queries, texts, k)]


def hybrid_scored(lexical: Sequence[tuple[int, float]], dense: Sequence[tuple[int, float]] | None,
                  settings: HybridSettings, k: int) -> list[tuple[int, float]]:
    """The ranker app's first stage for one query: BM25's top `lexical_depth` and the embedder's top
    `vector_depth` fused as configured (`suite_core.fusion.fuse`), its best `k`."""
    lists = {"bm25": list(lexical[:settings.lexical_depth])}
    if dense is not None:
        lists["vector"] = list(dense[:settings.vector_depth])
    return fuse(lists, settings.fusion, rrf_k=settings.rrf_k, weight_lexical=settings.score_weight_lexical)[:k]


def sample_negatives(ranking: Sequence[int], relevant: set[int], count: int, seed: str) -> list[int]:
    """`count` non-relevant items from a ranking, drawn at random (seeded by the
    query) rather than the very top: the top of an unjudged ranking holds most
    of the relevant items nobody judged."""
    pool = [item for item in ranking if item not in relevant]
    rng = random.Random(int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big"))
    return rng.sample(pool, min(count, len(pool)))
