"""Cheaper variants of the blessed teacher, each judged and pushed on its own.

Per `compression.variants` entry, three components follow the teacher's Pusher:

- `Compressor.<name>` makes the variant from the teacher's SavedModel (a
  student distilled from it, int8 kernels), only when the Evaluator blessed
  the teacher. It reads the Evaluator's `verdict`, whose fingerprint is the
  decision alone, so a re-evaluation against a new baseline keeps it cached.
- `VariantEvaluator.<name>` compares variant and teacher on the same eval
  rows (accuracy, macro-F1, ECE, agreement) and times both on this machine,
  one core each, at batch 1 and the served batch size; cost per 1M
  predictions from `compression.price_per_core_hour`. Only a variant within
  `compression.thresholds` is blessed.
- `Pusher.<name>` pushes a blessed variant as its own servable,
  `<model name>_<name>` (or the variant's `model_name`), numbered versions
  under the same model base path, warm-up requests included.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from tfx_pipeline import storage
from tfx_pipeline.beam.examples import read_split_rows
from tfx_pipeline.components.pusher import Pusher
from tfx_pipeline.compression import speed
from tfx_pipeline.compression.judge import decide, write_variant_report
from tfx_pipeline.compression.students import agreement
from tfx_pipeline.config import CompressionConfig, CompressionVariant, ConfigError, PipelineConfig
from tfx_pipeline.dsl import Channel, Component, ExecutionContext
from tfx_pipeline.evaluation.metrics import classification_metrics
from tfx_pipeline.evaluation.predict import align_columns, predict_probabilities
from tfx_pipeline.model.tasks import task_for


def variant_model_name(config: PipelineConfig, variant: CompressionVariant) -> str:
    return variant.model_name or f"{config.model_name}_{variant.name}"


class Compressor(Component):
    OUTPUTS = {"variant_model": "Model"}
    LOCAL_FILES = True  # Keras fits and exports to local files.

    def __init__(self, model: Channel, verdict: Channel, transformed_examples: Channel, transform_graph: Channel,
                 variant: CompressionVariant, config: PipelineConfig):
        super().__init__({"model": model, "verdict": verdict, "transformed_examples": transformed_examples,
                          "transform_graph": transform_graph}, component_id=f"Compressor.{variant.name}")
        self.variant, self.model, self.training = variant, config.model, config.training

    def fingerprint_data(self):
        return [dataclasses.asdict(self.variant), dataclasses.asdict(self.model), dataclasses.asdict(self.training)]

    def execute(self, ctx: ExecutionContext):
        from tfx_pipeline.components.trainer import trainer_args
        from tfx_pipeline.compression.variants import build_variant

        teacher = ctx.inputs["model"]
        properties = {"variant": self.variant.name, "task": teacher.properties.get("task"),
                      "text_pair": teacher.properties.get("text_pair", False)}
        if not ctx.inputs["verdict"].properties.get("blessed"):
            ctx.log.info("variant %s not made: the teacher is not blessed", self.variant.name)
            return {"variant_model": {**properties, "made": False, "reason": "the teacher is not blessed"}}
        work = Path(ctx.execution_dir)
        args = trainer_args(
            ctx,
            serving_model_dir=Path(ctx.output_dirs["variant_model"]),
            backup_dir=work / "backup",  # Outside the output dir: a killed distillation resumes.
            model_run_dir=work / "student_run",
            model=self.model, training=self.training)
        summary = build_variant(self.variant, teacher.uri, args)
        ctx.log.info("variant %s made: %s", self.variant.name, {k: v for k, v in summary.items() if k != "training"})
        return {"variant_model": {**properties, "made": True, "summary": summary}}


class VariantEvaluator(Component):
    OUTPUTS = {"variant_evaluation": "ModelEvaluation", "variant_blessing": "ModelBlessing"}
    LOCAL_FILES = True  # TensorFlow loads the SavedModels; the report is a local file.

    def __init__(self, teacher: Channel, variant_model: Channel, examples: Channel, variant: CompressionVariant,
                 compression: CompressionConfig, model_name: str, calibration_bins: int = 10, split: str = "eval"):
        super().__init__({"teacher": teacher, "variant_model": variant_model, "examples": examples},
                         component_id=f"VariantEvaluator.{variant.name}")
        self.variant, self.compression, self.model_name = variant, compression, model_name
        self.calibration_bins, self.split = calibration_bins, split

    def fingerprint_data(self):
        return [self.variant.name, dataclasses.asdict(self.compression), self.model_name, self.calibration_bins,
                self.split]

    def execute(self, ctx: ExecutionContext):
        variant = ctx.inputs["variant_model"]
        out = Path(ctx.output_dirs["variant_evaluation"])
        out.mkdir(parents=True, exist_ok=True)
        if not variant.properties.get("made"):
            missing = {"variant_name": self.variant.name, "model_name": self.model_name, "blessed": False,
                       "reason": f"no variant: {variant.properties.get('reason')}"}
            storage.write_json(storage.join(str(out), "evaluation.json"), missing)
            return self._outputs(ctx, missing, headline=None)
        evaluation = self.compare(ctx.inputs["teacher"].uri, variant.uri,
                                  read_split_rows(ctx.inputs["examples"].uri, self.split),
                                  bool(variant.properties.get("text_pair")), ctx)
        write_variant_report(evaluation, out / "report.md")
        storage.write_json(storage.join(str(out), "evaluation.json"), evaluation)
        comparison = evaluation["comparison"]
        headline = {
            "accuracy": evaluation["variant"]["accuracy"], "teacher_accuracy": evaluation["teacher"]["accuracy"],
            **{key: comparison[key] for key in ("accuracy_drop", "agreement", "speedup_batch_1",
                                                "speedup_served_batch")},
            "cost_per_million": evaluation["variant"].get("cost_per_million"),  # None: not timed.
            "teacher_cost_per_million": evaluation["teacher"].get("cost_per_million"),
            "size_mib": evaluation["variant"]["size_mib"], "teacher_size_mib": evaluation["teacher"]["size_mib"],
        }
        return self._outputs(ctx, evaluation, headline)

    def compare(self, teacher_dir: str, variant_dir: str, rows: list[dict], text_pair: bool,
                ctx: ExecutionContext) -> dict[str, Any]:
        """Quality on `rows`; for a variant within the accuracy rule, speed and cost of both
        models (minutes of timing are not spent on a variant that cannot pass); the decision."""
        texts = [row["text"] for row in rows]
        pairs = [row["text_pair"] for row in rows] if text_pair else None
        teacher_probabilities, class_names = predict_probabilities(Path(teacher_dir), texts, pairs)
        variant_probabilities, variant_names = predict_probabilities(Path(variant_dir), texts, pairs)
        variant_probabilities = align_columns(variant_probabilities, variant_names, class_names)
        label_index = {name: i for i, name in enumerate(class_names)}
        labels = np.array([label_index[row["label"]] for row in rows])
        models: dict[str, dict[str, Any]] = {}
        for name, probabilities, directory in (("teacher", teacher_probabilities, teacher_dir),
                                               ("variant", variant_probabilities, variant_dir)):
            metrics = classification_metrics(labels, probabilities, class_names, self.calibration_bins)
            models[name] = {key: metrics[key] for key in ("accuracy", "macro_f1", "expected_calibration_error")}
            models[name]["size_mib"] = speed.model_size_mib(directory)
        teacher, variant = models["teacher"], models["variant"]
        comparison: dict[str, Any] = {
            "accuracy_drop": teacher["accuracy"] - variant["accuracy"],
            "agreement": agreement(teacher_probabilities, variant_probabilities),
            "max_probability_difference": float(np.abs(teacher_probabilities - variant_probabilities).max()),
            "speedup_batch_1": None, "speedup_served_batch": None,
        }
        served = self.compression.served_batch_size
        if comparison["accuracy_drop"] <= self.compression.thresholds.max_accuracy_drop:
            ctx.log.info("timing teacher and variant %s on one core each", self.variant.name)
            timed = speed.compare({"teacher": teacher_dir, "variant": variant_dir}, texts, (1, served),
                                  self.compression.measure_seconds, self.compression.measure_rounds, pairs)
            price = self.compression.price_per_core_hour
            for name, entry in models.items():
                entry.update(timed[name])
                rates = entry["examples_per_second"]
                entry["cost_per_million"] = round(speed.cost_per_million(rates[str(served)], price), 6)
                entry["cost_per_million_batch_1"] = round(speed.cost_per_million(rates["1"], price), 6)
            for key, batch in (("speedup_batch_1", "1"), ("speedup_served_batch", str(served))):
                comparison[key] = round(variant["examples_per_second"][batch] / teacher["examples_per_second"][batch],
                                        3)
        blessed, reason = decide(self.compression.thresholds, comparison)
        ctx.log.info("variant %s: %s (%s)", self.variant.name, "PUSH" if blessed else "NOT PUSHED", reason)
        return {"variant_name": self.variant.name, "model_name": self.model_name, "split": self.split,
                "num_examples": len(rows), "served_batch_size": served,
                "price_per_core_hour": self.compression.price_per_core_hour,
                "teacher": teacher, "variant": variant, "comparison": comparison,
                "blessed": blessed, "reason": reason}

    def _outputs(self, ctx: ExecutionContext, evaluation: Mapping[str, Any], headline: Mapping[str, Any] | None):
        blessed, reason = evaluation["blessed"], evaluation["reason"]
        storage.write_text(storage.join(ctx.output_dirs["variant_blessing"],
                                        "BLESSED" if blessed else "NOT_BLESSED"), reason + "\n")
        return {"variant_evaluation": {"variant": self.variant.name, "model_name": self.model_name,
                                       "headline": headline,
                                       "report": storage.join(ctx.output_dirs["variant_evaluation"], "report.md")},
                "variant_blessing": {"variant": self.variant.name, "blessed": blessed, "reason": reason}}


class VariantPusher(Pusher):
    """The Pusher, for a variant's own servable; its output is `pushed_variant`."""

    OUTPUTS = {"pushed_variant": "PushedModel"}

    def __init__(self, model: Channel, blessing: Channel, examples: Channel, config: PipelineConfig,
                 variant: CompressionVariant):
        super().__init__(model, blessing, examples, config.push, variant_model_name(config, variant),
                         component_id=f"Pusher.{variant.name}")
        self.variant = variant

    def execute(self, ctx: ExecutionContext):
        pushed = super().execute(ctx)["pushed_model"]
        return {"pushed_variant": {**pushed, "variant": self.variant.name, "model_name": self.model_name}}


def compression_components(config: PipelineConfig, trainer, transform, evaluator, example_validator) -> list[Component]:
    """The Compressor, VariantEvaluator and Pusher of every configured variant, in that order."""
    if config.compression.variants:
        task_for(config.model).check_compressible()
    names = [variant.name for variant in config.compression.variants]
    if len(set(names)) != len(names):
        raise ConfigError(f"compression.variants: names must differ, got {names}")
    components: list[Component] = []
    for variant in config.compression.variants:
        compressor = Compressor(trainer.outputs["model"], evaluator.outputs["verdict"],
                                transform.outputs["transformed_examples"], transform.outputs["transform_graph"],
                                variant, config)
        judge = VariantEvaluator(trainer.outputs["model"], compressor.outputs["variant_model"],
                                 example_validator.outputs["examples"], variant, config.compression,
                                 variant_model_name(config, variant), config.evaluation.calibration_bins)
        pusher = VariantPusher(compressor.outputs["variant_model"], judge.outputs["variant_blessing"],
                               example_validator.outputs["examples"], config, variant)
        components += [compressor, judge, pusher]
    return components
