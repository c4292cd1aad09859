"""The pipeline definition: a plain list of components wired by their artifacts.

How it runs (locally, on which Beam runner, with which strategy) is decided
elsewhere: `runner.py` executes it, the configuration says where.

Example:

>>> from tfx_pipeline.config import PipelineConfig
>>> config = PipelineConfig.from_dict({"name": "intent", "data": {
...     "path": "work/demo_data/intent.csv", "text_column": "text", "label_column": "category"}})
>>> [c.id for c in create_pipeline(config).components]
['ExampleGen', 'StatisticsGen', 'SchemaGen', 'ExampleValidator', 'Transform', 'Trainer', 'Evaluator', 'Pusher']

A ranking dataset (`data.format: beir`) starts with a HardNegativeMiner, whose
labelled (query, item) rows ExampleGen reads in place of `data.path`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from tfx_pipeline import storage
from tfx_pipeline.beam.examples import split_names
from tfx_pipeline.beam.rows import ColumnMapping
from tfx_pipeline.components import (
    Evaluator,
    ExampleGen,
    ExampleValidator,
    HardNegativeMiner,
    Pusher,
    SchemaGen,
    StatisticsGen,
    Trainer,
    Transform,
)
from tfx_pipeline.components.compressor import compression_components
from tfx_pipeline.components.hard_negative_miner import LABELS, ROW_COLUMNS
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.dsl import Pipeline
from tfx_pipeline.evaluation.ranking import RankingSource
from tfx_pipeline.model.tasks import task_for


def create_pipeline(config: PipelineConfig) -> Pipeline:
    miner, ranking = None, None
    if config.data.format == "beir":
        miner = HardNegativeMiner(config.data.path, config.mining, config.push.model_base_path,
                                  config.evaluation.retrieval)
        # Ranking models are judged on full-corpus retrieval; a re-ranker behind the pushed embedder.
        first_stage = (config.evaluation.embedder_model or config.mining.embedder_model
                       if task_for(config.model).reranks_first_stage else None)
        ranking = RankingSource(config.data.path, config.mining.qrels_split, first_stage)
        # ExampleGen reads the miner's rows; all rows of a query stay in one split.
        row_columns: dict[str, Any] = ROW_COLUMNS  # Column names and a tuple of extra columns.
        config = config.replace(data=dataclasses.replace(config.data, format="jsonl", labels=LABELS, **row_columns),
                                split=dataclasses.replace(config.split, group_column="query_id"))
    splits = split_names(config.split)
    columns = list(ColumnMapping.from_config(config.data).fields())
    state = storage.join(config.root, "state")  # What a run leaves for the next: schema, last statistics.

    example_gen = ExampleGen(config.data, config.split, miner.outputs["rows"] if miner else None)
    statistics_gen = StatisticsGen(example_gen.outputs["examples"], config.model, columns, splits)
    schema_gen = SchemaGen(statistics_gen.outputs["statistics"], config.data, config.validation,
                           stored_schema=storage.join(state, "schema.json"))
    example_validator = ExampleValidator(
        example_gen.outputs["examples"], statistics_gen.outputs["statistics"], schema_gen.outputs["schema"],
        config.validation, splits, baseline_statistics=storage.join(state, "statistics.json"))
    transform = Transform(example_validator.outputs["examples"], schema_gen.outputs["schema"], config.model, splits,
                          config.split.group_column)
    trainer = Trainer(transform.outputs["transformed_examples"], transform.outputs["transform_graph"],
                      config.model, config.training, state_dir=state)
    evaluator = Evaluator(trainer.outputs["model"], example_validator.outputs["examples"], config.evaluation,
                          config.push.model_base_path, config.model_name, ranking=ranking)
    pusher = Pusher(trainer.outputs["model"], evaluator.outputs["blessing"], example_validator.outputs["examples"],
                    config.push, config.model_name)

    return Pipeline(
        name=config.name,
        root=config.root,
        components=[*([miner] if miner else []), example_gen, statistics_gen, schema_gen, example_validator,
                    transform, trainer, evaluator, pusher,
                    # Cheaper variants of a blessed teacher (`compression.variants`; none by default).
                    *compression_components(config, trainer, transform, evaluator, example_validator)],
        beam_args=config.beam_args,
    )
