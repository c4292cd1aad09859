"""Ranking metrics over a run ({query: {doc: score}}) and qrels ({query: {doc: grade}}).

Definitions follow BEIR / pytrec_eval: nDCG with linear gains (grade / log2(rank + 1)),
ideal DCG from the judged grades; Recall@k over relevant (grade > 0) documents;
MRR@k as 1 / rank of the first relevant document in the top k. Queries without a
relevant judgement are skipped; a query the run does not answer scores 0.

Example:

>>> qrels = {"q": {"a": 1, "b": 1}}
>>> run = {"q": {"a": 0.9, "x": 0.8, "b": 0.7}}
>>> round(ndcg_at_k(run, qrels, 10), 4)  # (1 + 1/2) / (1 + 1/log2(3))
0.9197
>>> mrr_at_k(run, qrels, 10), recall_at_k(run, qrels, 2)
(1.0, 0.5)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

Run = Mapping[str, Mapping[str, float]]
Qrels = Mapping[str, Mapping[str, int]]


def ranked(scores: Mapping[str, float]) -> list[str]:
    """Document ids best first; ties broken by id, so results are deterministic."""
    return [doc for doc, _ in sorted(scores.items(), key=lambda item: (-item[1], item[0]))]


def _judged_queries(qrels: Qrels) -> list[str]:
    return [q for q, judged in qrels.items() if any(grade > 0 for grade in judged.values())]


def ndcg_at_k(run: Run, qrels: Qrels, k: int) -> float:
    values = []
    for query in _judged_queries(qrels):
        grades = qrels[query]
        top = ranked(run.get(query, {}))[:k]
        dcg = sum(grades.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(top))
        ideal = sorted((g for g in grades.values() if g > 0), reverse=True)[:k]
        idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
        values.append(dcg / idcg)
    return _mean(values)


def recall_at_k(run: Run, qrels: Qrels, k: int) -> float:
    values = []
    for query in _judged_queries(qrels):
        relevant = {doc for doc, grade in qrels[query].items() if grade > 0}
        top = set(ranked(run.get(query, {}))[:k])
        values.append(len(relevant & top) / len(relevant))
    return _mean(values)


def mrr_at_k(run: Run, qrels: Qrels, k: int) -> float:
    values = []
    for query in _judged_queries(qrels):
        top = ranked(run.get(query, {}))[:k]
        values.append(next((1.0 / (rank + 1) for rank, doc in enumerate(top) if qrels[query].get(doc, 0) > 0), 0.0))
    return _mean(values)


def ranking_metrics(run: Run, qrels: Qrels, ndcg_k: Sequence[int] = (10,), recall_k: Sequence[int] = (100,),
                    mrr_k: Sequence[int] = (10,)) -> dict[str, float]:
    """The headline metrics by name: `ndcg_at_10`, `recall_at_100`, `mrr_at_10`, ..."""
    metrics = {"num_queries": float(len(_judged_queries(qrels)))}
    metrics.update({f"ndcg_at_{k}": ndcg_at_k(run, qrels, k) for k in ndcg_k})
    metrics.update({f"recall_at_{k}": recall_at_k(run, qrels, k) for k in recall_k})
    metrics.update({f"mrr_at_{k}": mrr_at_k(run, qrels, k) for k in mrr_k})
    return metrics


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
