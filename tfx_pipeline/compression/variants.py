"""Builds one `CompressionVariant` of an exported teacher classifier.

A student (fewer layers and/or a shorter sequence) is fitted with the
Trainer's own recipe (`Fitter`): same data pipeline, optimizer, early
stopping and resumable backups, its targets the teacher's probabilities on
each training example mixed with the label, as the `distill` ensemble does.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import keras

from tfx_pipeline.compression.students import (
    backbone_of,
    initialise_from_teacher,
    load_teacher,
    student_architecture,
)
from tfx_pipeline.config import CompressionVariant, EnsembleConfig
from tfx_pipeline.model.backbone import kept_layers
from tfx_pipeline.model.preprocessing import TextPreprocessor
from tfx_pipeline.model.tasks import task_for
from tfx_pipeline.model.training import Fitter, TaskModel, TrainerArgs
from tfx_pipeline.model.transform_graph import load_transform_graph


class StudentFitter(Fitter):
    """The Trainer's `Fitter` whose fresh model starts from the teacher's layers."""

    def __init__(self, args: TrainerArgs, teacher: keras.Model, layers: list[int]):
        super().__init__(args)
        self.teacher, self.layers = teacher, layers

    def task_model(self, seed: int) -> TaskModel:
        models = super().task_model(seed)
        initialise_from_teacher(models.exported, self.teacher, self.layers)
        return models


def build_variant(variant: CompressionVariant, teacher_dir: str | Path, args: TrainerArgs) -> dict[str, Any]:
    """Writes the variant's SavedModel to `args.serving_model_dir`, with the
    teacher's signatures; returns what was done (layers kept, training summary).

    `args` are the teacher's Trainer arguments; its `backup_dir` and
    `model_run_dir` are where the student's checkpoints and logs go.
    """
    task = task_for(args.model)
    task.check_compressible()
    preprocessor, class_names = load_transform_graph(args.transform_graph_dir)
    teacher = load_teacher(teacher_dir, args.model, len(class_names), preprocessor.vocabulary_size)
    teacher_layers = backbone_of(teacher).num_layers
    num_layers = variant.num_layers or teacher_layers
    sequence_length = variant.sequence_length or args.model.sequence_length
    summary: dict[str, Any] = {"teacher_layers": teacher_layers, "num_layers": num_layers,
                               "sequence_length": sequence_length, "int8": variant.int8,
                               "precision": variant.precision}
    model = teacher
    if num_layers != teacher_layers or sequence_length != args.model.sequence_length:
        layers = kept_layers(teacher_layers, num_layers)
        # Trained on the teacher's token ids (truncated at the teacher's length): a shorter
        # student is cut to its own length when it serves.
        student_args = dataclasses.replace(
            args,
            model=dataclasses.replace(args.model, backbone=dataclasses.replace(
                args.model.backbone, architecture=student_architecture(teacher, num_layers))),
            training=dataclasses.replace(
                args.training, epochs=variant.epochs, learning_rate=variant.learning_rate, cpu_tuning="off",
                ensemble=EnsembleConfig(members=1, soft_target_weight=variant.soft_target_weight)))
        fitter = StudentFitter(student_args, teacher, layers)
        started = time.monotonic()
        soft_targets = fitter.soft_targets([teacher])
        student, fitted = fitter.fit(student_args.training.seed, args.backup_dir, soft_targets=soft_targets)
        model = student.exported
        summary.update(kept_teacher_layers=layers, soft_target_seconds=round(time.monotonic() - started, 2),
                       training=fitted)
    if variant.int8:
        model.quantize("int8")
    served = TextPreprocessor(preprocessor.tokenizer.get_vocabulary(), sequence_length, preprocessor.lowercase)
    task.export(model, served, class_names, args.serving_model_dir,
                dtype_policy="mixed_bfloat16" if variant.precision == "bfloat16" else "float32")
    return summary
