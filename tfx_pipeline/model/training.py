"""`run_fn`: build, fine-tune and export the model (TFX's module-file entry).

The recipe, each part configured in `training`: AdamW with linear warm-up
then cosine decay, layer-wise learning rates and a faster head
(`LayerwiseAdamW`), label smoothing, class weights, an exponential moving
average of the weights, early stopping, a backup every epoch so that a
killed training resumes where it stopped, TensorBoard logs, the strategy from
configuration, and on CPUs XLA and bfloat16 chosen by a benchmark at run time.

With `training.ensemble.members` K > 1, K models are trained with seeds
`seed .. seed + K - 1`; the export is their averaged ensemble, or a student
of the same size distilled from their soft targets on the training texts.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfx_pipeline.config import ModelConfig, TrainingConfig
from tfx_pipeline.model.backbone import load_backbone
from tfx_pipeline.model.cpu_tuning import CpuSettings, choose_cpu_settings
from tfx_pipeline.model.distribution import apply_precision_policy, create_strategy
from tfx_pipeline.model.optimization import LayerwiseAdamW, layerwise_rate_multipliers
from tfx_pipeline.model.progress import ProgressLog
from tfx_pipeline.model.tasks import Task, build_ensemble_average, task_for
from tfx_pipeline.model.training_data import label_counts, make_ordered_batches
from tfx_pipeline.model.transform_graph import load_transform_graph


@dataclasses.dataclass(frozen=True)
class TrainerArgs:
    train_files: str
    eval_files: str
    num_train_examples: int
    transform_graph_dir: str
    serving_model_dir: Path
    backup_dir: Path
    model_run_dir: Path
    model: ModelConfig
    training: TrainingConfig
    # Where the CPU benchmark's decision is remembered (`training.cpu_tuning: auto`).
    cpu_tuning_cache: str | None = None


class EpochLog(keras.callbacks.Callback):
    """Appends one JSON line per finished epoch; remembers where this process started."""

    def __init__(self, path: Path, member: int | None = None):
        super().__init__()
        self.path, self.member = path, member
        self.first_epoch: int | None = None
        self.started = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        member = {} if self.member is None else {"member": self.member}
        with self.path.open("a") as handle:
            handle.write(json.dumps({**member, "epoch": epoch, "seconds": round(time.monotonic() - self.started, 2),
                                     **{k: float(v) for k, v in (logs or {}).items()}}) + "\n")


class TaskData:
    """The task's training and eval batches (`Task.dataset`: token ids, targets -- one-hot or
    soft for classifiers, pairs or triples for rankers) and the class weights of classifiers."""

    def __init__(self, args: TrainerArgs, class_names: list[str], task: Task):
        self.args, self.class_names, self.task = args, class_names, task

    def dataset(self, files: str, batch_size: int, shuffle: bool, seed: int,
                soft_targets: np.ndarray | None = None) -> tf.data.Dataset:
        return self.task.dataset(self, files, batch_size, shuffle, seed, soft_targets)

    @functools.cached_property
    def class_weights(self) -> np.ndarray | None:
        """`balanced`: N / (C * count of the class), as scikit-learn defines it."""
        if self.args.training.class_weighting == "none":
            return None
        counts = np.maximum(label_counts(self.args.train_files, len(self.class_names)), 1).astype(np.float64)
        return (counts.sum() / (counts.size * counts)).astype(np.float32)


class TaskModel:
    """One fit's models, as the task builds them: the backbone, the model trained and the
    model exported (the same one, or inside a training wrapper: the embedder, a pairwise re-ranker)."""

    def __init__(self, task: Task, num_classes: int, vocabulary_size: int):
        self.backbone = load_backbone(task.model.backbone, vocabulary_size, task.model.sequence_length)
        self.exported, self.trained = task.build(self.backbone, num_classes)


def learning_rate_schedule(
        training: TrainingConfig, total_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    warmup_steps = max(1, int(training.warmup_fraction * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        warmup_target=training.learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=max(1, total_steps - warmup_steps),
    )


class Fitter:
    """Fits one model of the task: the plain recipe, an ensemble member, or a
    distilled student. Shared by all of them: strategy, preprocessing, data."""

    def __init__(self, args: TrainerArgs):
        self.args = args
        self.strategy = create_strategy(args.training.distribution)
        self.preprocessor, self.class_names = load_transform_graph(args.transform_graph_dir)
        self.task = task_for(args.model)
        self.data = TaskData(args, self.class_names, self.task)
        self.global_batch = args.training.batch_size * self.strategy.num_replicas_in_sync
        # Length bucketing leaves a few partial batches per epoch; the estimate only shapes the schedule.
        self.steps_per_epoch = math.ceil(args.num_train_examples / self.global_batch)
        self.settings = CpuSettings(args.training.jit_compile, args.training.distribution.precision)
        self.cpu_tuning: dict[str, Any] | None = None

    def tune_cpu(self) -> None:
        """Picks XLA and precision by a short benchmark (`training.cpu_tuning: auto`)."""
        distribution = self.args.training.distribution
        if (self.args.training.cpu_tuning == "off" or distribution.strategy != "default"
                or tf.config.list_logical_devices("GPU")):
            return
        batches = self.data.dataset(
            self.args.train_files, self.global_batch, shuffle=True, seed=self.args.training.seed)
        self.settings, self.cpu_tuning = choose_cpu_settings(
            lambda settings: self._compiled(settings), batches, cache_path=self.args.cpu_tuning_cache,
            workload={"backbone": dataclasses.asdict(self.args.model.backbone),
                      "sequence_length": self.args.model.sequence_length, "batch_size": self.global_batch})

    def task_model(self, seed: int) -> TaskModel:
        keras.utils.set_random_seed(seed)
        with self.strategy.scope():
            return TaskModel(self.task, len(self.class_names), self.preprocessor.vocabulary_size)

    def _compiled(self, settings: CpuSettings, seed: int | None = None) -> tuple[TaskModel, keras.Model]:
        apply_precision_policy(dataclasses.replace(self.args.training.distribution, precision=settings.precision),
                               self.strategy)
        models = self.task_model(self.args.training.seed if seed is None else seed)
        training = self.args.training
        with self.strategy.scope():
            optimizer = LayerwiseAdamW(
                rate_multipliers=layerwise_rate_multipliers(models.trained, models.backbone, training.layer_decay,
                                                            training.head_learning_rate_multiplier),
                learning_rate=learning_rate_schedule(training, self.steps_per_epoch * training.epochs),
                weight_decay=training.weight_decay,
                use_ema=training.ema_momentum > 0,
                ema_momentum=training.ema_momentum or 0.99,
            )
            optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "layer_norm"])
            models.trained.compile(
                optimizer=optimizer,
                **self.task.compile_arguments(training),
                jit_compile=settings.jit_compile,
                steps_per_execution=training.distribution.steps_per_execution,
            )
        return models, models.trained

    def fit(self, seed: int, backup_dir: Path, member: int | None = None,
            soft_targets: np.ndarray | None = None) -> tuple[TaskModel, dict[str, Any]]:
        """Trains one model; returns it with its summary (epochs, seconds, history)."""
        training = self.args.training
        models, model = self._compiled(self.settings, seed)

        def input_fn(files: str, shuffle: bool, soft: np.ndarray | None = None):
            # Global batches; the strategy shards them across workers (by file, or
            # by example when there are fewer files than workers) and splits each
            # batch across the replicas, so N replicas see what one device would.
            return self.strategy.experimental_distribute_dataset(
                self.data.dataset(files, self.global_batch, shuffle=shuffle, seed=seed, soft_targets=soft))

        epoch_log = EpochLog(self.args.model_run_dir / "epochs.jsonl", member)
        callbacks = [
            keras.callbacks.BackupAndRestore(str(backup_dir), save_freq="epoch", delete_checkpoint=True),
            # Validation, early stopping and the weights kept all see the averaged weights.
            *([keras.callbacks.SwapEMAWeights(swap_on_epoch=True)] if training.ema_momentum > 0 else []),
            keras.callbacks.EarlyStopping(monitor=training.early_stopping_monitor,
                                          mode="max" if training.early_stopping_monitor == "val_accuracy" else "min",
                                          patience=training.early_stopping_patience, restore_best_weights=True),
            keras.callbacks.TensorBoard(log_dir=str(self.args.model_run_dir / "tensorboard" / (
                "model" if member is None else f"member_{member}"))),
            epoch_log,
        ]
        # On a terminal Keras draws a progress bar; in a log, a line every 30 s (steps, examples/s, ETA).
        on_terminal = sys.stderr.isatty()
        if not on_terminal:
            callbacks.append(ProgressLog(self.steps_per_epoch, self.global_batch, training.epochs))
        started = time.monotonic()
        # Keras warns when an epoch of a dataset of unknown length ends; that is how our epochs end.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        history = model.fit(input_fn(self.args.train_files, True, soft_targets),
                            validation_data=input_fn(self.args.eval_files, False),
                            epochs=training.epochs, callbacks=callbacks,
                            shuffle=False,  # tf.data shuffles.
                            verbose=1 if on_terminal else 0)
        seconds = time.monotonic() - started
        epochs_run = len(history.epoch)
        return models, {
            "seed": seed,
            "epochs_run": epochs_run,
            "resumed_from_epoch": epoch_log.first_epoch or 0,
            "train_seconds": round(seconds, 2),
            "train_examples_per_second": round(self.args.num_train_examples * epochs_run / max(seconds, 1e-9), 2),
            "history": {k: [float(x) for x in v] for k, v in history.history.items()},
        }

    def fit_member(self, index: int) -> tuple[TaskModel, dict[str, Any]]:
        """Ensemble member `index`; a finished member is kept, so a killed
        ensemble resumes with the member it was training."""
        done = self.args.backup_dir / f"member_{index}.weights.h5"
        summary_path = done.with_suffix(".json")
        if done.exists() and summary_path.exists():
            models, _ = self._compiled(self.settings, self.args.training.seed + index)
            models.trained.load_weights(str(done))
            return models, json.loads(summary_path.read_text())
        models, summary = self.fit(self.args.training.seed + index, self.args.backup_dir / f"member_{index}", index)
        models.trained.save_weights(str(done))
        summary_path.write_text(json.dumps(summary))
        return models, summary

    def soft_targets(self, members: list[keras.Model]) -> np.ndarray:
        """The members' mean probabilities on every training example, in file order."""
        batches = make_ordered_batches(self.args.train_files, self.global_batch)
        return np.mean([tf.nn.softmax(model.predict(batches, verbose=0), axis=-1).numpy() for model in members],
                       axis=0)


def run_fn(args: TrainerArgs) -> dict[str, Any]:
    training = args.training
    ensemble = training.ensemble
    if ensemble.members > 1:
        task_for(args.model).check_ensemble()
    fitter = Fitter(args)
    fitter.tune_cpu()
    precision = apply_precision_policy(
        dataclasses.replace(training.distribution, precision=fitter.settings.precision), fitter.strategy)
    summary: dict[str, Any] = {"replicas": fitter.strategy.num_replicas_in_sync, "precision": precision,
                               "jit_compile": fitter.settings.jit_compile, "cpu_tuning": fitter.cpu_tuning}
    started = time.monotonic()
    if ensemble.members == 1:
        models, fitted = fitter.fit(training.seed, args.backup_dir)
        exported = models.exported
        summary.update(fitted)
    else:
        members = [fitter.fit_member(i) for i in range(ensemble.members)]
        summary["members"] = [member_summary for _, member_summary in members]
        if ensemble.mode == "average":
            exported = build_ensemble_average([member.exported for member, _ in members])
            summary["epochs_run"] = sum(s["epochs_run"] for s in summary["members"])
        else:
            soft = fitter.soft_targets([member.trained for member, _ in members])
            student, fitted = fitter.fit(training.seed + ensemble.members, args.backup_dir / "student",
                                         member=ensemble.members, soft_targets=soft)
            exported = student.exported
            summary.update(fitted)
            summary["epochs_run"] = fitted["epochs_run"] + sum(s["epochs_run"] for s in summary["members"])
    train_seconds = time.monotonic() - started
    fitter.task.export(exported, fitter.preprocessor, fitter.class_names, args.serving_model_dir)
    summary.update({
        "train_seconds": round(train_seconds, 2),
        "train_examples_per_second": round(args.num_train_examples * summary["epochs_run"] / max(train_seconds, 1e-9),
                                           2),
    })
    return summary
