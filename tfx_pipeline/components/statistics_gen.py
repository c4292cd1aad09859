"""StatisticsGen: per-split statistics of an Examples artifact."""

from __future__ import annotations

import json

import apache_beam as beam

from tfx_pipeline import storage
from tfx_pipeline.beam.examples import ReadSplit
from tfx_pipeline.beam.pipeline_options import counted_pipeline
from tfx_pipeline.beam.statistics import ComputeStatistics
from tfx_pipeline.config import ModelConfig
from tfx_pipeline.dsl import Channel, Component, ExecutionContext

STATISTICS_FILE = "statistics.json"


class StatisticsGen(Component):
    """Writes `statistics.json`: {split: statistics} (see beam/statistics.py)."""

    OUTPUTS = {"statistics": "ExampleStatistics"}

    def __init__(self, examples: Channel, model: ModelConfig, columns: list[str], splits: list[str]):
        super().__init__({"examples": examples})
        self.model, self.columns, self.splits = model, list(columns), list(splits)

    def fingerprint_data(self):
        return [self.model.backbone.preset, self.model.sequence_length, self.columns, self.splits]

    def execute(self, ctx: ExecutionContext):
        out = ctx.output_dirs["statistics"]
        with counted_pipeline(ctx.beam_args, ctx.log) as run:
            for split in self.splits:
                _ = (run.pipeline
                     | f"Read[{split}]" >> ReadSplit(ctx.inputs["examples"].uri, split)
                     | f"Statistics[{split}]" >> ComputeStatistics(
                         self.columns, self.model.backbone.preset, self.model.sequence_length)
                     | f"ToJson[{split}]" >> beam.Map(json.dumps)
                     | f"Write[{split}]" >> beam.io.WriteToText(
                         storage.join(out, f"split-{split}"), file_name_suffix=".json", shard_name_template=""))
        statistics = {split: storage.read_json(storage.join(out, f"split-{split}.json")) for split in self.splits}
        storage.write_json(storage.join(out, STATISTICS_FILE), statistics)
        return {"statistics": {"num_examples": {s: v["num_examples"] for s, v in statistics.items()}}}
