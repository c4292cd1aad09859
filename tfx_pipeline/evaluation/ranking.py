"""Ranking models judged on the ranker app's task (issue 16), not on their own mined lists.

- An **embedder** (``text_embedding``) by full-corpus retrieval on the eval
  queries: its vectors of every corpus document, exact search, nDCG@10,
  Recall@100, MRR@10 (system ``embedder``); the ``hybrid`` it makes with BM25 is
  reported beside it.
- A **re-ranker** (``text_pair_ranking``) by re-ranking the top
  ``evaluation.retrieval.rerank_depth`` of the hybrid retrieval it will sit
  behind: BM25 + the pushed embedder (``evaluation.embedder_model``, default
  ``mining.embedder_model``), fused as the app fuses.  Its figure is system
  ``hybrid+rerank``; it is blessed only if that beats ``hybrid`` alone by
  ``thresholds.min_gain_over_hybrid``.

The runs come from :func:`suite_core.ranking_evaluation.evaluate_retrieval`, the
function ``apps.ranker evaluate`` scores with, so the pipeline's blessing figure
and the app's evaluation are the same number on the same queries.  The pushed
baseline is scored by the same protocol on the same hybrid lists.  How each
query's own mined list (relevant items + mined negatives) ranks is kept as a
diagnostic (``mined_lists``): a model can separate those and still worsen the
list the app re-ranks.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from suite_core.beir import BeirDataset, BeirFormatError
from suite_core.ranking_evaluation import METRICS, CorpusIndex, HybridSettings, evaluate_retrieval
from suite_core.ranking_metrics import ranking_metrics
from tfx_pipeline import storage
from tfx_pipeline.config import EvaluationConfig, Thresholds
from tfx_pipeline.dsl import PipelineError
from tfx_pipeline.evaluation.blessing import decide
from tfx_pipeline.evaluation.predict import load_saved_model, text_embedder
from tfx_pipeline.model.tasks import task_for
from tfx_pipeline.model_versions import latest_version

HEADLINE = ("num_queries", *METRICS)
Embed = Callable[[Sequence[str]], np.ndarray]
PairScorer = Callable[[Sequence[str], Sequence[str]], np.ndarray]


def pair_scorer(model_path: str | Path, batch_size: int = 64) -> PairScorer:
    """An exported re-ranker's ``serving_default`` as (queries, items) -> scores, loaded once."""
    import tensorflow as tf
    signature = load_saved_model(Path(model_path)).signatures["serving_default"]

    def score(queries: Sequence[str], items: Sequence[str]) -> np.ndarray:
        chunks = [signature(query=tf.constant(list(queries[i:i + batch_size])),
                            item_text=tf.constant(list(items[i:i + batch_size])))["score"].numpy()
                  for i in range(0, len(queries), batch_size)]
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)

    return score


@dataclasses.dataclass(frozen=True)
class RankingEvaluation:
    """What judging a ranking model needs besides the model: the corpus and its judgements, the eval queries,
    how the app retrieves, and the blessing thresholds."""

    dataset: BeirDataset
    query_ids: tuple[str, ...]  # the eval split's queries
    settings: HybridSettings
    thresholds: Thresholds

    @classmethod
    def for_rows(cls, dataset: BeirDataset, rows: Sequence[Mapping[str, Any]], settings: HybridSettings,
                 thresholds: Thresholds) -> RankingEvaluation:
        """The eval queries are those of the eval split's rows (all rows of a query share a split)."""
        query_ids = tuple(sorted({str(row["query_id"]) for row in rows} & set(dataset.qrels)))
        return cls(dataset, query_ids, settings, thresholds)

    @property
    def doc_ids(self) -> list[str]:
        return list(self.dataset.corpus)

    @property
    def queries(self) -> dict[str, str]:
        return {q: self.dataset.queries[q] for q in self.query_ids}

    def _vectors(self, embed: Embed, index: CorpusIndex) -> tuple[CorpusIndex, dict[str, np.ndarray]]:
        documents = embed([self.dataset.document_text(doc) for doc in self.doc_ids])
        queries = self.queries
        return index.with_vectors(documents), dict(zip(queries, embed(list(queries.values()))))

    def embedder_systems(self, embed: Embed) -> dict[str, dict[str, float]]:
        """``bm25``, ``embedder`` and ``hybrid`` with this embedder, over the whole corpus."""
        index, query_vectors = self._vectors(embed, CorpusIndex([self.dataset.document_text(d)
                                                                 for d in self.doc_ids]))
        return evaluate_retrieval(index, self.doc_ids, self.queries, self.dataset.qrels, query_vectors,
                                  self.settings)

    def reranker_systems(self, rerankers: Mapping[str, PairScorer], embed: Embed | None,
                         timings: dict[str, float] | None = None) -> dict[str, dict[str, float]]:
        """``bm25``, (``embedder``,) ``hybrid`` and one ``<name>`` per re-ranker re-ranking the hybrid head."""
        texts = [self.dataset.document_text(d) for d in self.doc_ids]
        index = CorpusIndex(texts)
        query_vectors = None
        if embed is not None:
            index, query_vectors = self._vectors(embed, index)

        def rows_scorer(score: PairScorer) -> Callable[[str, list[int]], np.ndarray]:
            return lambda query, rows: score([query] * len(rows), [texts[row] for row in rows])

        return evaluate_retrieval(index, self.doc_ids, self.queries, self.dataset.qrels, query_vectors,
                                  self.settings, {name: rows_scorer(s) for name, s in rerankers.items()}, timings)


@dataclasses.dataclass(frozen=True)
class RankingSource:
    """Where a ranking model's evaluation reads the corpus, the judgements and the first-stage embedder."""

    beir_dir: str  # the BEIR dataset the HardNegativeMiner mined (any storage; copied locally)
    qrels_split: str
    embedder_model: str | None  # the pushed embedder a re-ranker sits behind (None: BM25 alone)


def mined_list_metrics(rows: Sequence[Mapping[str, Any]], scores: np.ndarray) -> dict[str, float]:
    """How each query's own mined list (relevant items and mined negatives) ranks: the old protocol,
    kept as a diagnostic only."""
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for row, score in zip(rows, scores):
        qrels.setdefault(row["query_id"], {})[row["item_id"]] = int(row["label"] == "relevant")
        run.setdefault(row["query_id"], {})[row["item_id"]] = float(score)
    return ranking_metrics(run, qrels, ndcg_k=(10,), recall_k=(1,), mrr_k=(10,))


def _headline(systems: Mapping[str, Mapping[str, float]], system: str, num_queries: int) -> dict[str, Any]:
    return {"num_queries": float(num_queries), **systems[system], "system": system}


def evaluate_embedder(job: RankingEvaluation, candidate: Embed, baseline: Embed | None) -> dict[str, Any]:
    """The candidate embedder (and the pushed one) by full-corpus retrieval; blessing on system ``embedder``."""
    systems = job.embedder_systems(candidate)
    result: dict[str, Any] = {"candidate": {**_headline(systems, "embedder", len(job.query_ids)), "systems": systems},
                              "baseline": None}
    if baseline is not None:
        base_systems = job.embedder_systems(baseline)
        result["baseline"] = {**_headline(base_systems, "embedder", len(job.query_ids)), "systems": base_systems}
    blessed, reason = decide(job.thresholds, result["candidate"], result["baseline"])
    return {**result, "blessed": blessed, "reason": reason}


def evaluate_reranker(job: RankingEvaluation, candidate: PairScorer, baseline: PairScorer | None,
                      embed: Embed | None, log: logging.Logger | None = None) -> dict[str, Any]:
    """The candidate (and the pushed) re-ranker re-ranking the same hybrid lists; blessed only when the
    candidate clears the floor, the baseline rule, and beats hybrid alone by ``min_gain_over_hybrid``."""
    rerankers = {"hybrid+rerank": candidate, **({"hybrid+rerank(baseline)": baseline} if baseline else {})}
    timings: dict[str, float] = {}
    systems = job.reranker_systems(rerankers, embed, timings)
    n = len(job.query_ids)
    base_systems = {k: v for k, v in systems.items() if k != "hybrid+rerank"}
    result: dict[str, Any] = {
        "candidate": {**_headline(systems, "hybrid+rerank", n),
                      "systems": {k: v for k, v in systems.items() if k != "hybrid+rerank(baseline)"}},
        "baseline": None, "first_stage": "bm25+embedder" if embed is not None else "bm25",
        "rerank_seconds": timings}
    if baseline is not None:
        result["baseline"] = {**_headline(systems, "hybrid+rerank(baseline)", n), "systems": base_systems}
    metric, margin = job.thresholds.metric, job.thresholds.min_gain_over_hybrid
    value, hybrid = systems["hybrid+rerank"][metric], systems["hybrid"][metric]
    result["gain_over_hybrid"] = value - hybrid
    blessed, reason = decide(job.thresholds, result["candidate"], result["baseline"])
    if value - hybrid < margin:
        blessed, reason = False, (f"{metric} {value:.4f} re-ranking the hybrid top {job.settings.rerank_depth} vs "
                                  f"hybrid alone {hybrid:.4f}: gain {value - hybrid:+.4f} is below the required "
                                  f"{margin:+.4f} (the app would serve hybrid alone)")
    elif blessed:
        reason += f"; gain over hybrid {value - hybrid:+.4f} >= {margin:+.4f}"
    if log is not None:
        log.info("re-ranker vs hybrid: %s", {k: round(v[metric], 4) for k, v in systems.items()})
    return {**result, "blessed": blessed, "reason": reason}


def evaluate_ranking_model(source: RankingSource, config: EvaluationConfig, task: str, candidate_path: str | Path,
                           rows: Sequence[Mapping[str, Any]], model_dir: str, embedder_dir: str | None,
                           log: logging.Logger) -> dict[str, Any]:
    """The Evaluator's ranking step: the candidate at ``candidate_path`` and the latest version under
    ``model_dir`` (the baseline), on the eval ``rows``' queries over the whole corpus; the evaluation dict."""
    try:
        with storage.local_copy(source.beir_dir) as local:
            dataset = BeirDataset.load(local, source.qrels_split)
    except (BeirFormatError, OSError) as e:
        raise PipelineError(f"Evaluator: {e}") from None
    job = RankingEvaluation.for_rows(dataset, rows, config.retrieval, config.thresholds)
    if not job.query_ids:
        raise PipelineError(f"Evaluator: no eval query has judgements in {source.beir_dir} ({source.qrels_split})")
    log.info("ranking evaluation: %d queries over %d documents, %s", len(job.query_ids), len(dataset.corpus),
             config.retrieval)
    evaluation: dict[str, Any] = {"task": task, "settings": dataclasses.asdict(config.retrieval),
                                  "documents": len(dataset.corpus)}
    with contextlib.ExitStack() as stack:
        latest = latest_version(model_dir)
        baseline_path = None
        if latest is not None:
            log.info("evaluating baseline version %d at %s", latest[0], latest[1])
            baseline_path = stack.enter_context(storage.local_copy(latest[1]))
            evaluation.update(baseline_version=latest[0], baseline_path=str(latest[1]))
        if not task_for(task).reranks_first_stage:  # The embedder: by full-corpus retrieval alone.
            evaluation.update(evaluate_embedder(job, text_embedder(Path(candidate_path)),
                                                text_embedder(baseline_path) if baseline_path else None))
            return evaluation
        embed = None
        embedder = latest_version(embedder_dir) if embedder_dir else None
        if embedder is None:
            log.warning("no pushed first-stage embedder%s: the re-ranker is judged behind BM25 alone",
                        f" under {embedder_dir}" if embedder_dir else "")
        else:
            embed = text_embedder(stack.enter_context(storage.local_copy(embedder[1])))
            evaluation["embedder"] = {"path": str(embedder[1]), "version": embedder[0]}
        candidate = pair_scorer(candidate_path)
        evaluation.update(evaluate_reranker(job, candidate, pair_scorer(baseline_path) if baseline_path else None,
                                            embed, log))
        evaluation["mined_lists"] = mined_list_metrics(rows, candidate([str(r["text"]) for r in rows],
                                                                       [str(r["text_pair"]) for r in rows]))
    return evaluation


def write_ranking_report(evaluation: Mapping[str, Any], keys: Sequence[str], path: Path) -> None:
    """``report.md``: the verdict, candidate vs baseline, and every system's figures."""
    candidate, baseline = evaluation["candidate"], evaluation.get("baseline")
    lines = [f"# Evaluation of model `{evaluation['model_name']}`", "",
             f"**{'BLESSED' if evaluation['blessed'] else 'NOT BLESSED'}**: {evaluation['reason']}", "",
             f"Full-corpus retrieval on {int(candidate['num_queries'])} {evaluation['split']} queries over "
             f"{evaluation['documents']} documents; settings {evaluation['settings']}.", "",
             f"| metric ({candidate['system']}) | candidate | baseline |", "|---|---|---|"]
    lines += [f"| {key} | {candidate[key]:.4f} | {f'{baseline[key]:.4f}' if baseline else '-'} |" for key in keys]
    lines += ["", "| system | " + " | ".join(METRICS) + " |", "|---|" + "---|" * len(METRICS)]
    lines += [f"| {system} | " + " | ".join(f"{values[m]:.4f}" for m in METRICS) + " |"
              for system, values in candidate["systems"].items()]
    if "mined_lists" in evaluation:
        mined = evaluation["mined_lists"]
        lines += ["", f"Diagnostic only, not used for blessing: each query's own mined list ranks with nDCG@10 "
                      f"{mined['ndcg_at_10']:.4f}."]
    Path(path).write_text("\n".join(lines) + "\n")
