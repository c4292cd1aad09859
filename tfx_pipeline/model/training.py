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

from tfx_pipeline.config import ConfigError, ModelConfig, TrainingConfig
from tfx_pipeline.model.backbone import load_backbone
from tfx_pipeline.model.cpu_tuning import CpuSettings, choose_cpu_settings
from tfx_pipeline.model.distribution import apply_precision_policy, create_strategy
from tfx_pipeline.model.export import export_pair_scorer, export_text_classifier, export_text_embedder
from tfx_pipeline.model.optimization import LayerwiseAdamW, classification_loss, layerwise_rate_multipliers
from tfx_pipeline.model.tasks import (
    build_contrastive_trainer,
    build_ensemble_average,
    build_pairwise_trainer,
    build_text_classifier,
    build_text_embedder,
    in_batch_accuracy,
    in_batch_softmax_loss,
    pairwise_accuracy,
    pairwise_loss,
)
from tfx_pipeline.model.training_data import (
    label_counts,
    make_dataset,
    make_ordered_batches,
    make_pair_dataset,
    make_triple_dataset,
)
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
    """The task's training and eval batches: token ids, targets (one-hot or
    soft for classifiers, triples for the embedder) and class weights."""

    def __init__(self, args: TrainerArgs, class_names: list[str]):
        self.args, self.class_names = args, class_names

    def dataset(self, files: str, batch_size: int, shuffle: bool, seed: int,
                soft_targets: np.ndarray | None = None) -> tf.data.Dataset:
        if self.args.model.task == "text_embedding":
            return make_triple_dataset(files, batch_size, shuffle=shuffle, seed=seed)
        if self.args.model.is_pairwise:
            return make_pair_dataset(files, batch_size, shuffle=shuffle, seed=seed)
        training = self.args.training
        return make_dataset(files, batch_size, self.args.model.sequence_length, shuffle=shuffle, seed=seed,
                            num_classes=len(self.class_names), soft_targets=soft_targets,
                            soft_target_weight=training.ensemble.soft_target_weight,
                            class_weights=self.class_weights if shuffle else None)

    @functools.cached_property
    def class_weights(self) -> np.ndarray | None:
        """`balanced`: N / (C * count of the class), as scikit-learn defines it."""
        if self.args.training.class_weighting == "none":
            return None
        counts = np.maximum(label_counts(self.args.train_files, len(self.class_names)), 1).astype(np.float64)
        return (counts.sum() / (counts.size * counts)).astype(np.float32)


class TaskModel:
    """What differs between tasks in the model: the model trained, its loss and
    metrics, and the model exported (the embedder is trained inside a wrapper)."""

    def __init__(self, args: TrainerArgs, class_names: list[str], vocabulary_size: int):
        self.args, self.class_names = args, class_names
        self.backbone = load_backbone(args.model.backbone, vocabulary_size, args.model.sequence_length)
        self.embedding = args.model.task == "text_embedding"
        self.pairwise = args.model.is_pairwise
        if self.embedding:
            self.exported = build_text_embedder(self.backbone, args.model.pooling)
            self.trained = build_contrastive_trainer(self.exported)
        elif self.pairwise:  # the cross-encoder, trained on (relevant, negative) pairs of a query
            self.exported = build_text_classifier(self.backbone, len(class_names), args.model.pooling,
                                                  args.model.dropout)
            self.trained = build_pairwise_trainer(self.exported)
        else:
            self.exported = self.trained = build_text_classifier(
                self.backbone, len(class_names), args.model.pooling, args.model.dropout)

    def compile_arguments(self) -> dict[str, Any]:
        if self.embedding:
            return {"loss": in_batch_softmax_loss, "metrics": [in_batch_accuracy]}
        if self.pairwise:  # named accuracy, so early_stopping_monitor val_accuracy works here too
            return {"loss": pairwise_loss, "metrics": [keras.metrics.MeanMetricWrapper(pairwise_accuracy,
                                                                                       name="accuracy")]}
        # Class weights arrive as per-example weights in the dataset: they weigh the loss, not the accuracy.
        return {"loss": classification_loss(self.args.training.label_smoothing),
                "metrics": [keras.metrics.CategoricalAccuracy(name="accuracy")]}

    def export(self, model: keras.Model, preprocessor, export_dir: Path) -> None:
        task = self.args.model.task
        if task == "text_embedding":
            export_text_embedder(model, preprocessor, export_dir)
        elif task == "text_pair_ranking":
            export_pair_scorer(model, preprocessor, self.class_names, export_dir)
        else:
            export_text_classifier(model, preprocessor, self.class_names, export_dir,
                                   text_pair=task == "text_pair_classification")


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
        self.data = TaskData(args, self.class_names)
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
            return TaskModel(self.args, self.class_names, self.preprocessor.vocabulary_size)

    def _compiled(self, settings: CpuSettings, seed: int | None = None) -> tuple[TaskModel, keras.Model]:
        apply_precision_policy(dataclasses.replace(self.args.training.distribution, precision=settings.precision),
                               self.strategy)
        task = self.task_model(self.args.training.seed if seed is None else seed)
        training = self.args.training
        with self.strategy.scope():
            optimizer = LayerwiseAdamW(
                rate_multipliers=layerwise_rate_multipliers(task.trained, task.backbone, training.layer_decay,
                                                            training.head_learning_rate_multiplier),
                learning_rate=learning_rate_schedule(training, self.steps_per_epoch * training.epochs),
                weight_decay=training.weight_decay,
                use_ema=training.ema_momentum > 0,
                ema_momentum=training.ema_momentum or 0.99,
            )
            optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "layer_norm"])
            task.trained.compile(
                optimizer=optimizer,
                **task.compile_arguments(),
                jit_compile=settings.jit_compile,
                steps_per_execution=training.distribution.steps_per_execution,
            )
        return task, task.trained

    def fit(self, seed: int, backup_dir: Path, member: int | None = None,
            soft_targets: np.ndarray | None = None) -> tuple[TaskModel, dict[str, Any]]:
        """Trains one model; returns it with its summary (epochs, seconds, history)."""
        training = self.args.training
        task, model = self._compiled(self.settings, seed)

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
        started = time.monotonic()
        # Keras warns when an epoch of a dataset of unknown length ends; that is how our epochs end.
        warnings.filterwarnings("ignore", message="Your input ran out of data")
        history = model.fit(input_fn(self.args.train_files, True, soft_targets),
                            validation_data=input_fn(self.args.eval_files, False),
                            epochs=training.epochs, callbacks=callbacks,
                            shuffle=False,  # tf.data shuffles.
                            verbose=1 if sys.stderr.isatty() else 2)
        seconds = time.monotonic() - started
        epochs_run = len(history.epoch)
        return task, {
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
            task, _ = self._compiled(self.settings, self.args.training.seed + index)
            task.trained.load_weights(str(done))
            return task, json.loads(summary_path.read_text())
        task, summary = self.fit(self.args.training.seed + index, self.args.backup_dir / f"member_{index}", index)
        task.trained.save_weights(str(done))
        summary_path.write_text(json.dumps(summary))
        return task, summary

    def soft_targets(self, members: list[keras.Model]) -> np.ndarray:
        """The members' mean probabilities on every training example, in file order."""
        batches = make_ordered_batches(self.args.train_files, self.global_batch)
        return np.mean([tf.nn.softmax(model.predict(batches, verbose=0), axis=-1).numpy() for model in members],
                       axis=0)


def run_fn(args: TrainerArgs) -> dict[str, Any]:
    training = args.training
    ensemble = training.ensemble
    if ensemble.members > 1 and args.model.task == "text_embedding":
        raise ConfigError("training.ensemble: ensembles are for classifiers and re-rankers, not text_embedding")
    if ensemble.members > 1 and args.model.is_pairwise:
        raise ConfigError("training.ensemble: not with model.ranking_loss pairwise (its examples are pairs)")
    fitter = Fitter(args)
    fitter.tune_cpu()
    precision = apply_precision_policy(
        dataclasses.replace(training.distribution, precision=fitter.settings.precision), fitter.strategy)
    summary: dict[str, Any] = {"replicas": fitter.strategy.num_replicas_in_sync, "precision": precision,
                               "jit_compile": fitter.settings.jit_compile, "cpu_tuning": fitter.cpu_tuning}
    started = time.monotonic()
    if ensemble.members == 1:
        task, fitted = fitter.fit(training.seed, args.backup_dir)
        exported = task.exported
        summary.update(fitted)
    else:
        members = [fitter.fit_member(i) for i in range(ensemble.members)]
        summary["members"] = [member_summary for _, member_summary in members]
        if ensemble.mode == "average":
            task = members[0][0]
            exported = build_ensemble_average([member.exported for member, _ in members])
            summary["epochs_run"] = sum(s["epochs_run"] for s in summary["members"])
        else:
            soft = fitter.soft_targets([member.trained for member, _ in members])
            task, fitted = fitter.fit(training.seed + ensemble.members, args.backup_dir / "student",
                                      member=ensemble.members, soft_targets=soft)
            exported = task.exported
            summary.update(fitted)
            summary["epochs_run"] = fitted["epochs_run"] + sum(s["epochs_run"] for s in summary["members"])
    train_seconds = time.monotonic() - started
    task.export(exported, fitter.preprocessor, args.serving_model_dir)
    summary.update({
        "train_seconds": round(train_seconds, 2),
        "train_examples_per_second": round(args.num_train_examples * summary["epochs_run"] / max(train_seconds, 1e-9),
                                           2),
    })
    return summary
