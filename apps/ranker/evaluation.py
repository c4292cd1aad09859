"""Retrieval quality on a BEIR-format dataset: BM25, the embedder, hybrid and hybrid + re-ranker, side by side.

The dataset's corpus is ingested into the index (only new or changed documents
are embedded, so a second run is cheap), its queries embedded in batched
Predict calls, and the runs are made and scored by
:func:`suite_core.ranking_evaluation.evaluate_retrieval` -- the same function
the pipeline's Evaluator blesses with, so the two cannot disagree -- with the
app's own retrieval settings (depths, fusion, re-rank depth):

- ``bm25``: the lexical index alone, top 100;
- ``embedder``: exact vector search alone, top 100;
- ``hybrid``: BM25's ``lexical_depth`` and the embedder's ``vector_depth`` best, fused as configured;
- ``hybrid+rerank``: the hybrid top N re-ranked by the cross-encoder (one Predict
  call per query), followed by the rest of the hybrid list; with several
  depths, one ``hybrid+rerank@N`` per depth.  When the server serves no
  re-ranker (none blessed), only the first three are scored, as the app serves.

Which queries: all of the split's judged queries, or those listed in a file
(one id a line), or a hash-based holdout fraction of them (the same queries on
every run and machine), then the first ``limit`` in id order.

Example::

    report = evaluate(ranker, Path("/work/shared/data/scifact"), "train", holdout=0.2, rerank_depth=(10, 20))
    print(format_table(report))
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from apps.ranker.errors import InvalidRequest, ModelNotServed
from apps.ranker.ranker import Ranker
from suite_core.beir import BeirDataset
from suite_core.ranking_evaluation import METRICS, RUN_DEPTH, evaluate_retrieval, score_runs

SYSTEMS = ("bm25", "embedder", "hybrid", "hybrid+rerank")
__all__ = ["METRICS", "RUN_DEPTH", "SYSTEMS", "evaluate", "format_table", "in_holdout", "metrics_table",
           "select_queries"]


def in_holdout(query_id: str, fraction: float) -> bool:
    """Whether ``query_id`` falls in the hash-based holdout ``fraction`` (stable across runs).

    The last buckets of the pipeline's own split (``tfx_pipeline.beam.examples.split_of`` with the query
    id as group column: sha256 % 100, train first): ``--holdout 0.2`` are exactly the queries a
    ``split: {train: 80, eval: 20}`` configuration (scifact_embedder.yaml) held out of training.
    """
    bucket = int.from_bytes(hashlib.sha256(query_id.encode("utf-8")).digest()[:8], "big") % 100
    return bucket >= 100 - round(fraction * 100)


def select_queries(dataset: BeirDataset, *, query_ids_file: Path | None = None, holdout: float | None = None,
                   limit: int | None = None) -> list[str]:
    ids = sorted(dataset.qrels)
    if query_ids_file is not None:
        wanted = [line.strip() for line in Path(query_ids_file).read_text().splitlines() if line.strip()]
        unknown = sorted(set(wanted) - set(ids))
        if unknown:
            raise InvalidRequest(f"{query_ids_file}: {len(unknown)} query ids have no judgements in this split, "
                                 f"e.g. {unknown[:5]}", problem="unknown_query_ids")
        ids = sorted(set(wanted))
    if holdout is not None:
        if not 0.0 < holdout <= 1.0:
            raise InvalidRequest(f"holdout must be in (0, 1], got {holdout}", problem="invalid_holdout")
        ids = [i for i in ids if in_holdout(i, holdout)]
    if limit is not None:
        ids = ids[:limit]
    if not ids:
        raise InvalidRequest("no query selected", problem="no_queries")
    return ids


def evaluate(ranker: Ranker, data_dir: Path, split: str = "test", *,
             rerank_depth: int | Sequence[int] | None = None, query_ids_file: Path | None = None,
             holdout: float | None = None, limit: int | None = None, ingest: bool = True) -> dict[str, Any]:
    """Ingests the corpus (unless ``ingest`` is false), runs the four systems, returns the report.

    ``rerank_depth``: the app's configured depth by default; several depths give one ``hybrid+rerank@N``
    system each (every pair is scored once: the re-ranker scores pairs independently)."""
    dataset = BeirDataset.load(data_dir, split)
    query_ids = select_queries(dataset, query_ids_file=query_ids_file, holdout=holdout, limit=limit)
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    ingest_report = ranker.ingest(list(dataset.corpus.values()), full=True).to_dict(0) if ingest else None
    timings["ingest_s"] = round(time.perf_counter() - clock, 2)
    index = ranker.index
    doc_ids = [item.id for item in index.items]
    settings = ranker.config.retrieval.hybrid_settings()
    depths = [settings.rerank_depth] if rerank_depth is None else (
        [rerank_depth] if isinstance(rerank_depth, int) else list(rerank_depth))

    clock = time.perf_counter()
    vectors = ranker.models.embed([dataset.queries[q] for q in query_ids], bulk=True)
    timings["embed_queries_s"] = round(time.perf_counter() - clock, 2)
    queries = {q: dataset.queries[q] for q in query_ids}
    query_vectors = dict(zip(query_ids, vectors))
    reranker = _ServedReranker(ranker)
    metrics: dict[str, dict[str, float]] = {}
    notes = []
    for depth in depths:
        name = "hybrid+rerank" if len(depths) == 1 else f"hybrid+rerank@{depth}"
        rerankers = {name: reranker} if reranker.served and depth else {}
        try:
            table = evaluate_retrieval(index, doc_ids, queries, dataset.qrels, query_vectors,
                                       dataclasses.replace(settings, rerank_depth=depth), rerankers)
        except ModelNotServed as exc:  # no blessed re-ranker: the app serves hybrid alone, and so is it scored
            reranker.served = False
            notes.append(f"no re-ranker served ({exc}): hybrid alone")
            table = evaluate_retrieval(index, doc_ids, queries, dataset.qrels, query_vectors,
                                       dataclasses.replace(settings, rerank_depth=depth))
        metrics.update({system: {m: round(v, 4) for m, v in values.items()} for system, values in table.items()})
    timings["rerank_s"] = round(reranker.seconds, 2)
    return {
        "dataset": str(data_dir), "split": split, "queries": len(query_ids), "documents": len(index),
        "rerank_depth": depths[0] if len(depths) == 1 else depths, "fusion": settings.fusion,
        "settings": dataclasses.asdict(settings),
        "models": {"embedder": ranker.config.server.embedder_model, "reranker": ranker.config.server.reranker_model,
                   "embedder_version": index.embedder.get("version")},
        "selection": {"query_ids_file": str(query_ids_file) if query_ids_file else None, "holdout": holdout,
                      "limit": limit},
        "metrics": metrics, "notes": notes, "ingest": ingest_report, "timings": timings,
    }


class _ServedReranker:
    """The served re-ranker as the shared evaluation calls it: one bulk Predict per query for the pairs it
    has not scored yet (a shallower depth reuses a deeper one's scores)."""

    def __init__(self, ranker: Ranker) -> None:
        self.ranker = ranker
        self.served = bool(ranker.config.server.reranker_model)
        self.seconds = 0.0
        self._scores: dict[tuple[str, int], float] = {}

    def __call__(self, query: str, rows: list[int]) -> list[float]:
        missing = [row for row in rows if (query, row) not in self._scores]
        if missing:
            clock = time.perf_counter()
            items = self.ranker.index.items
            scores, _ = self.ranker.models.rerank(query, [items[row].full_text for row in missing], bulk=True)
            self.seconds += time.perf_counter() - clock
            self._scores.update({(query, row): float(score) for row, score in zip(missing, scores)})
        return [self._scores[(query, row)] for row in rows]


def metrics_table(runs: Mapping[str, Mapping[str, Mapping[str, float]]],
                  qrels: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, float]]:
    """{system: {metric: value}} for each run against the same qrels, rounded for the report."""
    return {system: {name: round(value, 4) for name, value in values.items()}
            for system, values in score_runs(runs, qrels).items()}


def format_table(report: Mapping[str, Any]) -> str:
    lines = [f"{report['dataset']} ({report['split']}): {report['queries']} queries, {report['documents']} documents,"
             f" fusion {report['fusion']}, re-rank depth {report['rerank_depth']}",
             f"{'system':<15}" + "".join(f"{m:>15}" for m in METRICS)]
    for system, values in report["metrics"].items():
        lines.append(f"{system:<15}" + "".join(f"{values[m]:>15.4f}" for m in METRICS))
    return "\n".join(lines)
