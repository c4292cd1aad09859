"""Top-k under a mask and rank fusion: how first-stage lists become one list.

Fusion methods:

- ``rrf``: reciprocal-rank fusion, ``sum over lists of 1 / (rrf_k + rank)``
  with ranks from 1.  It uses ranks only, so BM25's unbounded scores and cosine
  similarities need no calibration against each other, an item both retrievers
  found rises above one only a single retriever found, and there is nothing to
  tune per catalog (``rrf_k = 60`` is the value of Cormack et al., 2009).
- ``score``: each list's scores min-max normalised to [0, 1] over its own
  candidates, then ``w * lexical + (1 - w) * vector`` (``weight_lexical``);
  it keeps how much better the top hit is than the next, but depends on the
  score distributions of the day's query.

The re-ranked head (the fused top N) is ordered by :func:`rerank_head`:

- ``replace``: by the re-ranker's scores alone;
- ``rrf``: by ``1 / (rrf_k + fused rank) + weight / (rrf_k + re-ranker rank)``
  within the head, so the first stage's agreement still counts and a re-ranker's
  confident mistakes on a few items cost less.

The ranker app fuses with these functions on every request, and the ranking
evaluation (pipeline and app alike) with the same ones.

Example:

>>> fused = fuse({"bm25": [(3, 9.0), (1, 4.0)], "vector": [(1, 0.8), (2, 0.5)]}, "rrf", rrf_k=60)
>>> [row for row, _ in fused]    # item 1 was found by both
[1, 3, 2]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def top_k(scores: np.ndarray, mask: np.ndarray | None, k: int, *,
          positive_only: bool = False) -> list[tuple[int, float]]:
    """(row, score) of the ``k`` best rows where ``mask`` holds (None: every row), best first (ties by row)."""
    allowed = np.ones(len(scores), dtype=bool) if mask is None else mask.copy()
    if positive_only:
        allowed &= scores > 0
    rows = np.flatnonzero(allowed)
    if rows.size == 0 or k <= 0:
        return []
    values = scores[rows]
    if rows.size > k:
        keep = np.argpartition(-values, k - 1)[:k]
        rows, values = rows[keep], values[keep]
    order = np.lexsort((rows, -values))
    return [(int(rows[i]), float(values[i])) for i in order]


def fuse(lists: Mapping[str, Sequence[tuple[int, float]]], method: str, *, rrf_k: int = 60,
         weight_lexical: float = 0.5) -> list[tuple[int, float]]:
    """One ranked list of (row, fused score) from named ranked lists (``bm25``, ``vector``)."""
    fused: dict[int, float] = {}
    for name, ranked in lists.items():
        if method == "rrf":
            for rank, (row, _) in enumerate(ranked, start=1):
                fused[row] = fused.get(row, 0.0) + 1.0 / (rrf_k + rank)
        elif method == "score":
            weight = weight_lexical if name == "bm25" else 1.0 - weight_lexical
            if not ranked:
                continue
            values = np.asarray([score for _, score in ranked])
            low, span = float(values.min()), float(values.max() - values.min())
            for row, score in ranked:
                normalised = (score - low) / span if span > 0 else 1.0
                fused[row] = fused.get(row, 0.0) + weight * normalised
            for row, _ in ranked:
                fused.setdefault(row, 0.0)
        else:
            raise ValueError(f"unknown fusion {method!r}")
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


def rerank_head(head: Sequence[int], scores: Sequence[float] | np.ndarray, method: str = "replace", *,
                rrf_k: int = 60, weight: float = 1.0) -> list[int]:
    """``head`` (rows, best first by the first stage) in its final order given the re-ranker's ``scores``;
    ties keep the first-stage order.

    >>> rerank_head([7, 8, 9], [0.1, 0.9, 0.5])
    [8, 9, 7]
    >>> rerank_head([7, 8, 9], [0.1, 0.9, 0.5], "rrf", rrf_k=1, weight=1.0)   # 7: 1/2 + 1/4, 8: 1/3 + 1/2
    [8, 7, 9]
    """
    by_score = sorted(range(len(head)), key=lambda i: (-float(scores[i]), i))
    if method == "replace":
        return [head[i] for i in by_score]
    if method != "rrf":
        raise ValueError(f"unknown re-rank fusion {method!r}")
    rerank_rank = {i: rank for rank, i in enumerate(by_score, start=1)}
    fused = {i: 1.0 / (rrf_k + i + 1) + weight / (rrf_k + rerank_rank[i]) for i in range(len(head))}
    return [head[i] for i in sorted(range(len(head)), key=lambda i: (-fused[i], i))]
