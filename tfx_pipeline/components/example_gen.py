"""ExampleGen: raw CSV / TSV / JSON-lines -> split, sharded TFRecords of tf.Example."""

from __future__ import annotations

import dataclasses

import apache_beam as beam

from tfx_pipeline import storage
from tfx_pipeline.beam.examples import (
    WriteSplit,
    counted,
    encode_row,
    split_names,
    split_of,
)
from tfx_pipeline.beam.pipeline_options import counted_pipeline
from tfx_pipeline.beam.quarantine import WriteQuarantine, quarantined_counts
from tfx_pipeline.beam.rows import (
    ColumnMapping,
    ReadRows,
    check_header,
    file_format,
    matched_files,
)
from tfx_pipeline.config import ConfigError, DataConfig, SplitConfig
from tfx_pipeline.dsl import Channel, Component, ExecutionContext

QUARANTINE_DIR = "quarantine"
ROWS_FILE = "rows.jsonl"  # What ExampleGen reads from an upstream `rows` artifact (JSON lines).


class ExampleGen(Component):
    """Reads `data.path` (or, given a `rows` artifact, its `rows.jsonl`),
    quarantines rows that cannot be parsed, and writes the rest to
    `Split-<name>/` by a hash of their text (or group column).

    Outputs `examples` with properties `rows_read`, `split_counts`, `quarantined`.
    """

    OUTPUTS = {"examples": "Examples"}

    def __init__(self, data: DataConfig, split: SplitConfig, rows: Channel | None = None):
        super().__init__({"rows": rows} if rows is not None else {})
        if split.train + split.eval + split.test != 100:
            raise ConfigError(f"split: train + eval + test must be 100, got "
                              f"{split.train} + {split.eval} + {split.test}")
        if split.train <= 0 or split.eval <= 0:
            raise ConfigError("split: train and eval must both be above 0")
        self.data, self.split = data, split
        self.columns = ColumnMapping.from_config(data)

    def fingerprint_data(self):
        return [dataclasses.asdict(self.data), dataclasses.asdict(self.split)]

    def external_fingerprint(self):
        """The input files by path, size and modification time (any filesystem)."""
        if "rows" in self.inputs:
            return None  # An upstream artifact, fingerprinted by the runner.
        return storage.file_states(self.data.path)

    def execute(self, ctx: ExecutionContext):
        data_path = storage.join(ctx.inputs["rows"].uri, ROWS_FILE) if "rows" in ctx.inputs else self.data.path
        files = matched_files(data_path)
        for path in files:
            check_header(path, file_format(path, self.data.format), self.columns)
        examples_dir = ctx.output_dirs["examples"]
        splits = split_names(self.split)
        with counted_pipeline(ctx.beam_args, ctx.log) as run:
            rows, quarantined = run.pipeline | "ReadRows" >> ReadRows(data_path, self.data.format, self.columns)
            _ = quarantined | "WriteQuarantine" >> WriteQuarantine(storage.join(examples_dir, QUARANTINE_DIR))
            partitions = rows | "SplitByTextHash" >> beam.Partition(
                lambda row, _n: splits.index(split_of(row, self.split)), len(splits))
            for split, partition in zip(splits, partitions):
                _ = (partition
                     | f"Count[{split}]" >> beam.Map(counted, "ExampleGen", f"split:{split}")
                     | f"Encode[{split}]" >> beam.Map(encode_row)
                     | f"Write[{split}]" >> WriteSplit(examples_dir, split))
        counters = run.counters
        split_counts = {split: counters.get(f"split:{split}", 0) for split in splits}
        ctx.log.info("read %d rows from %d file(s): %s, quarantined %s", counters.get("rows_read", 0),
                     len(files), split_counts, quarantined_counts(counters) or "none")
        return {"examples": {
            "files": files,
            "rows_read": counters.get("rows_read", 0),
            "split_counts": split_counts,
            "quarantined": quarantined_counts(counters),
            "quarantine_dir": storage.join(examples_dir, QUARANTINE_DIR),
        }}
