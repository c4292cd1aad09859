"""`run_fn`: build, fine-tune and export the model (TFX's module-file entry).

AdamW with linear warm-up then cosine decay, early stopping on the eval
loss, a backup every epoch so that a killed training resumes where it
stopped, TensorBoard logs, and the strategy from configuration.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import keras
import tensorflow as tf

from tfx_pipeline.config import ModelConfig, TrainingConfig
from tfx_pipeline.model.backbone import load_backbone
from tfx_pipeline.model.distribution import apply_precision_policy, create_strategy
from tfx_pipeline.model.export import export_pair_scorer, export_text_classifier, export_text_embedder
from tfx_pipeline.model.tasks import (
    build_contrastive_trainer, build_text_classifier, build_text_embedder, in_batch_accuracy, in_batch_softmax_loss)
from tfx_pipeline.model.training_data import make_dataset, make_triple_dataset
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


class EpochLog(keras.callbacks.Callback):
    """Appends one JSON line per finished epoch; remembers where this process started."""

    def __init__(self, path: Path):
        super().__init__()
        self.path = path
        self.first_epoch: int | None = None
        self.started = time.monotonic()

    def on_epoch_begin(self, epoch, logs=None):
        if self.first_epoch is None:
            self.first_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps({"epoch": epoch, "seconds": round(time.monotonic() - self.started, 2),
                                     **{k: float(v) for k, v in (logs or {}).items()}}) + "\n")


class TaskModel:
    """What differs between tasks: the model trained, its data, loss and
    metrics, and the model exported (the embedder is trained inside a wrapper)."""

    def __init__(self, args: TrainerArgs, class_names: list[str], vocabulary_size: int):
        self.args, self.class_names = args, class_names
        backbone = load_backbone(args.model.backbone, vocabulary_size, args.model.sequence_length)
        self.embedding = args.model.task == "text_embedding"
        if self.embedding:
            self.exported = build_text_embedder(backbone, args.model.pooling)
            self.trained = build_contrastive_trainer(self.exported)
        else:
            self.exported = self.trained = build_text_classifier(
                backbone, len(class_names), args.model.pooling, args.model.dropout)

    def compile_arguments(self) -> dict[str, Any]:
        if self.embedding:
            return {"loss": in_batch_softmax_loss, "metrics": [in_batch_accuracy]}
        return {"loss": keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                "metrics": [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]}

    def dataset(self, files: str, batch_size: int, shuffle: bool, seed: int) -> tf.data.Dataset:
        if self.embedding:
            return make_triple_dataset(files, batch_size, shuffle=shuffle, seed=seed)
        return make_dataset(files, batch_size, self.args.model.sequence_length, shuffle=shuffle, seed=seed)

    def export(self, preprocessor, export_dir: Path) -> None:
        task = self.args.model.task
        if task == "text_embedding":
            export_text_embedder(self.exported, preprocessor, export_dir)
        elif task == "text_pair_ranking":
            export_pair_scorer(self.exported, preprocessor, self.class_names, export_dir)
        else:
            export_text_classifier(self.exported, preprocessor, self.class_names, export_dir,
                                   text_pair=task == "text_pair_classification")


def learning_rate_schedule(training: TrainingConfig, total_steps: int) -> keras.optimizers.schedules.LearningRateSchedule:
    warmup_steps = max(1, int(training.warmup_fraction * total_steps))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0,
        warmup_target=training.learning_rate,
        warmup_steps=warmup_steps,
        decay_steps=max(1, total_steps - warmup_steps),
    )


def run_fn(args: TrainerArgs) -> dict[str, Any]:
    training = args.training
    keras.utils.set_random_seed(training.seed)
    strategy = create_strategy(training.distribution)
    precision = apply_precision_policy(training.distribution, strategy)
    preprocessor, class_names = load_transform_graph(args.transform_graph_dir)

    global_batch = training.batch_size * strategy.num_replicas_in_sync

    with strategy.scope():
        task = TaskModel(args, class_names, preprocessor.vocabulary_size)
        model = task.trained

    def input_fn(files: str, shuffle: bool):
        # Global batches; the strategy shards them across workers (by file, or
        # by example when there are fewer files than workers) and splits each
        # batch across the replicas, so N replicas see what one device would.
        return strategy.experimental_distribute_dataset(
            task.dataset(files, global_batch, shuffle=shuffle, seed=training.seed))

    train_data, eval_data = input_fn(args.train_files, shuffle=True), input_fn(args.eval_files, shuffle=False)
    # Length bucketing leaves a few partial batches per epoch; the estimate only shapes the schedule.
    steps_per_epoch = math.ceil(args.num_train_examples / global_batch)

    with strategy.scope():
        optimizer = keras.optimizers.AdamW(
            learning_rate=learning_rate_schedule(training, steps_per_epoch * training.epochs),
            weight_decay=training.weight_decay,
        )
        optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "layer_norm"])
        model.compile(
            optimizer=optimizer,
            **task.compile_arguments(),
            jit_compile=training.jit_compile,
            steps_per_execution=training.distribution.steps_per_execution,
        )

    epoch_log = EpochLog(args.model_run_dir / "epochs.jsonl")
    callbacks = [
        keras.callbacks.BackupAndRestore(str(args.backup_dir), save_freq="epoch", delete_checkpoint=True),
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=training.early_stopping_patience,
                                      restore_best_weights=True),
        keras.callbacks.TensorBoard(log_dir=str(args.model_run_dir / "tensorboard")),
        epoch_log,
    ]
    started = time.monotonic()
    # Keras warns when an epoch of a dataset of unknown length ends; that is how our epochs end.
    warnings.filterwarnings("ignore", message="Your input ran out of data")
    history = model.fit(train_data, validation_data=eval_data, epochs=training.epochs, callbacks=callbacks,
                        shuffle=False,  # tf.data shuffles.
                        verbose=1 if sys.stderr.isatty() else 2)
    train_seconds = time.monotonic() - started
    epochs_run = len(history.epoch)
    task.export(preprocessor, args.serving_model_dir)
    return {
        "epochs_run": epochs_run,
        "resumed_from_epoch": epoch_log.first_epoch or 0,
        "replicas": strategy.num_replicas_in_sync,
        "precision": precision,
        "train_seconds": round(train_seconds, 2),
        "train_examples_per_second": round(args.num_train_examples * epochs_run / max(train_seconds, 1e-9), 2),
        "history": {k: [float(x) for x in v] for k, v in history.history.items()},
    }
