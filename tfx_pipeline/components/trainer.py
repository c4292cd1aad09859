"""Trainer: fine-tunes the BERT task model and exports the serving SavedModel.

The model code lives in `tfx_pipeline.model.training.run_fn`; this component
only maps artifacts to its arguments, as TFX's Trainer does with a module file.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tfx_pipeline import storage
from tfx_pipeline.beam.examples import split_pattern
from tfx_pipeline.config import ModelConfig, TrainingConfig
from tfx_pipeline.dsl import Channel, Component, ExecutionContext
from tfx_pipeline.model.multi_worker import LocalWorkers
from tfx_pipeline.model.tasks import task_for
from tfx_pipeline.model.training import TrainerArgs, run_fn


class Trainer(Component):
    OUTPUTS = {"model": "Model", "model_run": "ModelRun"}
    LOCAL_FILES = True  # Keras checkpoints and export write local files.

    def __init__(self, transformed_examples: Channel, transform_graph: Channel,
                 model: ModelConfig, training: TrainingConfig, state_dir: str | None = None):
        super().__init__({"transformed_examples": transformed_examples, "transform_graph": transform_graph})
        self.model, self.training = model, training
        # The CPU benchmark's decision is machine state, not part of the model: outside the fingerprint.
        self.cpu_tuning_cache = storage.join(state_dir, "cpu_tuning.json") if state_dir else None

    def fingerprint_data(self):
        return [dataclasses.asdict(self.model), dataclasses.asdict(self.training)]

    def execute(self, ctx: ExecutionContext):
        args = trainer_args(
            ctx,
            serving_model_dir=Path(ctx.output_dirs["model"]),
            # Outside the output dirs, which are cleared on a restart: a killed
            # training resumes from here.
            backup_dir=Path(ctx.execution_dir) / "backup",
            model_run_dir=Path(ctx.output_dirs["model_run"]),
            model=self.model,
            training=self.training,
            cpu_tuning_cache=self.cpu_tuning_cache,
        )
        workers = self.training.distribution.workers
        summary = (LocalWorkers(args, workers, Path(ctx.execution_dir) / "multi_worker").run() if workers
                   else run_fn(args))
        storage.write_json(storage.join(ctx.output_dirs["model_run"], "training_summary.json"), summary)
        return {"model": {"task": self.model.task, "text_pair": task_for(self.model).text_pair},
                "model_run": summary}


def trainer_args(ctx: ExecutionContext, **outputs_and_configs) -> TrainerArgs:
    """`run_fn`'s arguments: the data from the `transformed_examples` and
    `transform_graph` inputs, the rest (output dirs, configs) as given."""
    examples = ctx.inputs["transformed_examples"]
    return TrainerArgs(
        train_files=split_pattern(examples.uri, "train"),
        eval_files=split_pattern(examples.uri, "eval"),
        num_train_examples=examples.properties["split_counts"]["train"],
        transform_graph_dir=ctx.inputs["transform_graph"].uri,
        **outputs_and_configs)
