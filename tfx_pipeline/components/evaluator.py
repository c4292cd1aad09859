"""Evaluator: the candidate against the eval split, and against the pushed baseline.

Both models are the exported SavedModels, called on raw text exactly as the
server will call them. Writes `evaluation.json`, `report.md` and (for
classifiers) `confusion_matrix.png`; the `blessing` artifact says whether to push.

Ranking models are scored on each eval query's candidate list (its relevant
items and mined negatives): nDCG@10, MRR@10 and Recall@1 of that list.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from tfx_pipeline import storage
from tfx_pipeline.beam.examples import read_split_rows
from tfx_pipeline.config import RANKING_TASKS, EvaluationConfig
from tfx_pipeline.dsl import Channel, Component, ExecutionContext, PipelineError
from tfx_pipeline.evaluation.blessing import decide
from tfx_pipeline.evaluation.metrics import classification_metrics, sliced_metrics, text_length_bucket
from tfx_pipeline.evaluation.predict import align_columns, predict_probabilities, predict_relevance
from tfx_pipeline.evaluation.report import draw_confusion_matrix, write_ranking_report, write_report
from tfx_pipeline.model_versions import latest_version, version_identity
from tfx_pipeline.ranking.metrics import ranking_metrics

HEADLINE = ("num_examples", "accuracy", "macro_f1", "expected_calibration_error")
RANKING_HEADLINE = ("num_queries", "ndcg_at_10", "mrr_at_10", "recall_at_1")


def _column(rows: list[dict[str, str | None]], name: str) -> list[str]:
    """One required column's values (the ExampleValidator let no row without it through)."""
    values = [row[name] for row in rows]
    if any(value is None for value in values):
        raise PipelineError(f"Evaluator: rows without a {name!r} value")
    return [value for value in values if value is not None]


class Evaluator(Component):
    OUTPUTS = {"evaluation": "ModelEvaluation", "blessing": "ModelBlessing"}
    LOCAL_FILES = True  # TensorFlow loads the SavedModels; reports are drawn to files.

    def __init__(self, model: Channel, examples: Channel, evaluation: EvaluationConfig,
                 model_base_path: str, model_name: str, split: str = "eval"):
        super().__init__({"model": model, "examples": examples})
        self.evaluation, self.split = evaluation, split
        self.model_dir = storage.join(model_base_path, model_name)
        self.model_name = model_name

    def fingerprint_data(self):
        return [dataclasses.asdict(self.evaluation), self.split]

    def external_fingerprint(self):
        """The baseline: whichever version is being served now."""
        latest = latest_version(self.model_dir)
        if latest is None:
            return None
        version, path = latest
        return {"version": version, "model": version_identity(path)}

    def execute(self, ctx: ExecutionContext):
        rows = read_split_rows(ctx.inputs["examples"].uri, self.split)
        if not rows:
            raise PipelineError(f"Evaluator: the {self.split} split is empty; nothing to evaluate on")
        Path(ctx.output_dirs["evaluation"]).mkdir(parents=True, exist_ok=True)  # Local: LOCAL_FILES.
        task = ctx.inputs["model"].properties.get("task", "text_classification")
        if task in RANKING_TASKS:
            return self._evaluate_ranking(ctx, task, rows)
        texts = _column(rows, "text")
        pairs = _column(rows, "text_pair") if ctx.inputs["model"].properties.get("text_pair") else None
        probabilities, class_names = predict_probabilities(ctx.inputs["model"].uri, texts, pairs)
        label_index = {name: i for i, name in enumerate(class_names)}
        labels = np.array([label_index[label] for label in _column(rows, "label")])
        slices = {"text_length": [text_length_bucket(t) for t in texts]}
        for column in self.evaluation.slice_columns:
            slices[column] = [row.get(column) or "(missing)" for row in rows]

        candidate = classification_metrics(labels, probabilities, class_names, self.evaluation.calibration_bins)
        candidate["slices"] = sliced_metrics(slices, labels, probabilities, class_names)
        evaluation: dict[str, Any] = {"model_name": self.model_name, "split": self.split, "candidate": candidate,
                      "class_names": class_names, "baseline": None}
        latest = latest_version(self.model_dir)
        if latest is not None:
            version, path = latest
            ctx.log.info("evaluating baseline version %d at %s", version, path)
            with storage.local_copy(path) as local:
                base_probabilities, base_names = predict_probabilities(local, texts, pairs)
            baseline = classification_metrics(labels, align_columns(base_probabilities, base_names, class_names),
                                              class_names, self.evaluation.calibration_bins)
            evaluation.update(baseline=baseline, baseline_version=version, baseline_path=str(path))
        blessed, reason = decide(self.evaluation.thresholds, candidate, evaluation["baseline"])
        evaluation.update(blessed=blessed, reason=reason)
        ctx.log.info("%s: %s", "BLESSED" if blessed else "NOT BLESSED", reason)

        out = Path(ctx.output_dirs["evaluation"])
        draw_confusion_matrix(candidate["confusion_matrix"], class_names, out / "confusion_matrix.png")
        write_report(evaluation, out / "report.md")
        return self._write_outputs(ctx, evaluation, HEADLINE)

    def _evaluate_ranking(self, ctx: ExecutionContext, task: str, rows: list[dict[str, str | None]]):
        # `query_id` and `item_id` are the HardNegativeMiner's row columns.
        queries, items = _column(rows, "text"), _column(rows, "text_pair")
        pair_ids = list(zip(_column(rows, "query_id"), _column(rows, "item_id")))
        qrels: dict[str, dict[str, int]] = {}
        for (query_id, item_id), label in zip(pair_ids, _column(rows, "label")):
            qrels.setdefault(query_id, {})[item_id] = int(label == "relevant")

        def metrics(model_path: str | Path) -> dict:
            run: dict[str, dict[str, float]] = {}
            for (query_id, item_id), score in zip(pair_ids, predict_relevance(model_path, task, queries, items)):
                run.setdefault(query_id, {})[item_id] = float(score)
            return ranking_metrics(run, qrels, ndcg_k=(10,), recall_k=(1,), mrr_k=(10,))

        evaluation: dict[str, Any] = {"model_name": self.model_name, "split": self.split, "task": task,
                      "candidate": metrics(ctx.inputs["model"].uri), "baseline": None,
                      "candidates_per_query": round(len(rows) / max(len(qrels), 1), 2)}
        latest = latest_version(self.model_dir)
        if latest is not None:
            version, path = latest
            ctx.log.info("evaluating baseline version %d at %s", version, path)
            with storage.local_copy(path) as local:
                baseline = metrics(local)
            evaluation.update(baseline=baseline, baseline_version=version, baseline_path=str(path))
        blessed, reason = decide(self.evaluation.thresholds, evaluation["candidate"], evaluation["baseline"])
        evaluation.update(blessed=blessed, reason=reason)
        ctx.log.info("%s: %s", "BLESSED" if blessed else "NOT BLESSED", reason)
        write_ranking_report(evaluation, RANKING_HEADLINE, Path(ctx.output_dirs["evaluation"]) / "report.md")
        return self._write_outputs(ctx, evaluation, RANKING_HEADLINE)

    def _write_outputs(self, ctx: ExecutionContext, evaluation: dict, headline_keys: tuple[str, ...]):
        out = ctx.output_dirs["evaluation"]
        storage.write_json(storage.join(out, "evaluation.json"), evaluation)
        blessed, reason = evaluation["blessed"], evaluation["reason"]
        storage.write_text(storage.join(ctx.output_dirs["blessing"], "BLESSED" if blessed else "NOT_BLESSED"),
                           reason + "\n")
        headline = {key: evaluation["candidate"][key] for key in headline_keys}
        baseline = evaluation["baseline"]
        baseline_headline = {key: baseline[key] for key in headline_keys} if baseline else None
        return {"evaluation": {"headline": headline, "baseline": baseline_headline,
                               "report": storage.join(out, "report.md")},
                "blessing": {"blessed": blessed, "reason": reason,
                             "baseline_version": evaluation.get("baseline_version")}}
