"""Evaluator: the candidate against the eval split, and against the pushed baseline.

Both models are the exported SavedModels, called on raw text exactly as the
server will call them. Writes `evaluation.json`, `report.md` and (for
classifiers) `confusion_matrix.png`; the `blessing` artifact says whether to push.

Ranking models are judged on the ranker app's task (`tfx_pipeline.evaluation.ranking`):
an embedder by full-corpus retrieval, a re-ranker by re-ranking the hybrid
(BM25 + pushed embedder) top N, blessed only when it beats hybrid alone.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from tfx_pipeline import storage
from tfx_pipeline.beam.examples import read_split_rows
from tfx_pipeline.config import EvaluationConfig
from tfx_pipeline.dsl import Channel, Component, ExecutionContext, PipelineError
from tfx_pipeline.evaluation.blessing import decide
from tfx_pipeline.evaluation.metrics import classification_metrics, sliced_metrics, text_length_bucket
from tfx_pipeline.evaluation.predict import align_columns, predict_probabilities
from tfx_pipeline.evaluation.ranking import HEADLINE as RANKING_HEADLINE
from tfx_pipeline.evaluation.ranking import RankingSource, evaluate_ranking_model, write_ranking_report
from tfx_pipeline.evaluation.report import draw_confusion_matrix, write_report
from tfx_pipeline.model.tasks import task_for
from tfx_pipeline.model_versions import latest_version, version_identity

HEADLINE = ("num_examples", "accuracy", "macro_f1", "expected_calibration_error")


def _column(rows: list[dict[str, str | None]], name: str) -> list[str]:
    """One required column's values (the ExampleValidator let no row without it through)."""
    values = [row[name] for row in rows]
    if any(value is None for value in values):
        raise PipelineError(f"Evaluator: rows without a {name!r} value")
    return [value for value in values if value is not None]


class Evaluator(Component):
    # `verdict` is the blessing decision alone (fingerprinted by it): steps that only need to
    # know whether the model is blessed, such as the Compressor, stay cached when the Evaluator
    # runs again against a new baseline and decides the same.
    OUTPUTS = {"evaluation": "ModelEvaluation", "blessing": "ModelBlessing", "verdict": "ModelVerdict"}
    LOCAL_FILES = True  # TensorFlow loads the SavedModels; reports are drawn to files.

    def __init__(self, model: Channel, examples: Channel, evaluation: EvaluationConfig,
                 model_base_path: str, model_name: str, split: str = "eval", ranking: RankingSource | None = None):
        super().__init__({"model": model, "examples": examples})
        self.evaluation, self.split = evaluation, split
        self.model_dir = storage.join(model_base_path, model_name)
        self.model_name = model_name
        self.ranking = ranking  # for ranking models: the corpus, judgements and first-stage embedder
        self.embedder_dir = (storage.join(model_base_path, ranking.embedder_model)
                             if ranking is not None and ranking.embedder_model else None)

    def fingerprint_data(self):
        return [dataclasses.asdict(self.evaluation), self.split,
                dataclasses.asdict(self.ranking) if self.ranking else None]

    def output_fingerprint(self, key: str, uri: str, execution_fingerprint: str) -> str:
        if key == "verdict":
            return "verdict/" + ("blessed" if storage.exists(storage.join(uri, "BLESSED")) else "not_blessed")
        return super().output_fingerprint(key, uri, execution_fingerprint)

    def external_fingerprint(self):
        """The baseline: whichever version is being served now (and, for ranking models, the pushed
        embedder of the first stage and the BEIR files)."""
        state: dict = {}
        for key, directory in (("baseline", self.model_dir), ("embedder", self.embedder_dir)):
            latest = latest_version(directory) if directory else None
            if latest is not None:
                state[key] = {"version": latest[0], "model": version_identity(latest[1])}
        if self.ranking is not None:
            state["beir"] = storage.file_states(storage.join(self.ranking.beir_dir, "**"))
        return state or None

    def execute(self, ctx: ExecutionContext):
        rows = read_split_rows(ctx.inputs["examples"].uri, self.split)
        if not rows:
            raise PipelineError(f"Evaluator: the {self.split} split is empty; nothing to evaluate on")
        Path(ctx.output_dirs["evaluation"]).mkdir(parents=True, exist_ok=True)  # Local: LOCAL_FILES.
        task = task_for(ctx.inputs["model"].properties.get("task", "text_classification"))
        if task.ranking:
            return self._evaluate_ranking(ctx, task.name, rows)
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
        """On the ranker app's task: full-corpus retrieval, and re-ranking the hybrid top N
        (:mod:`tfx_pipeline.evaluation.ranking`, the code ``apps.ranker evaluate`` scores with)."""
        if self.ranking is None:
            raise PipelineError("Evaluator: a ranking model needs its BEIR dataset (data.format: beir)")
        evaluation = evaluate_ranking_model(self.ranking, self.evaluation, task, ctx.inputs["model"].uri, rows,
                                            self.model_dir, self.embedder_dir, ctx.log)
        evaluation.update(model_name=self.model_name, split=self.split)
        ctx.log.info("%s: %s", "BLESSED" if evaluation["blessed"] else "NOT BLESSED", evaluation["reason"])
        write_ranking_report(evaluation, RANKING_HEADLINE, Path(ctx.output_dirs["evaluation"]) / "report.md")
        return self._write_outputs(ctx, evaluation, RANKING_HEADLINE)

    def _write_outputs(self, ctx: ExecutionContext, evaluation: dict, headline_keys: tuple[str, ...]):
        out = ctx.output_dirs["evaluation"]
        storage.write_json(storage.join(out, "evaluation.json"), evaluation)
        blessed, reason = evaluation["blessed"], evaluation["reason"]
        storage.write_text(storage.join(ctx.output_dirs["blessing"], "BLESSED" if blessed else "NOT_BLESSED"),
                           reason + "\n")
        storage.write_text(storage.join(ctx.output_dirs["verdict"], "BLESSED" if blessed else "NOT_BLESSED"), "-\n")
        headline = {key: evaluation["candidate"][key] for key in headline_keys}
        baseline = evaluation["baseline"]
        baseline_headline = {key: baseline[key] for key in headline_keys} if baseline else None
        return {"evaluation": {"headline": headline, "baseline": baseline_headline,
                               "report": storage.join(out, "report.md")},
                "blessing": {"blessed": blessed, "reason": reason,
                             "baseline_version": evaluation.get("baseline_version")},
                "verdict": {"blessed": blessed}}
