"""Rows <-> tf.train.Example, deterministic splits, and split-sharded TFRecords.

An Examples artifact is a directory with one sub-directory per split,
`Split-<name>/`, holding gzipped TFRecord shards, as in TFX.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import apache_beam as beam
from apache_beam.metrics import Metrics

from suite_core.splits import split_of as split_of  # The apps find the eval rows with it too.
from tfx_pipeline import storage
from tfx_pipeline.beam import example_proto
from tfx_pipeline.config import SplitConfig

SHARD_SUFFIX = ".tfrecord.gz"


def encode_row(row: Mapping[str, str | None]) -> bytes:
    """Every field is a bytes feature; a missing value is an absent feature."""
    example = example_proto.Example()
    for name, value in row.items():
        if value is not None:
            example.features.feature[name].bytes_list.value.append(value.encode("utf-8"))
    # Deterministic: sorted map keys, so equal rows are equal bytes on every worker.
    return example.SerializeToString(deterministic=True)


def decode_row(serialized: bytes) -> dict[str, str | None]:
    example = example_proto.Example.FromString(serialized)
    return {name: feature.bytes_list.value[0].decode("utf-8") if feature.bytes_list.value else None
            for name, feature in sorted(example.features.feature.items())}


def encode_int_lists(features: Mapping[str, Any]) -> bytes:
    """Transformed features: lists of ints (token ids) or single ints (label id)."""
    example = example_proto.Example()
    for name, value in features.items():
        values = value if isinstance(value, (list, tuple)) else [value]
        example.features.feature[name].int64_list.value.extend(int(v) for v in values)
    return example.SerializeToString(deterministic=True)


def counted(row: Any, namespace: str, counter_name: str) -> Any:
    """The row unchanged, counted in a Beam counter (`beam.Map(counted, "ExampleGen", "split:train")`)."""
    Metrics.counter(namespace, counter_name).inc()
    return row


def split_names(split: SplitConfig) -> list[str]:
    return [name for name in ("train", "eval", "test") if getattr(split, name) > 0]


def split_pattern(artifact_uri: str, split: str) -> str:
    return storage.join(artifact_uri, f"Split-{split}", f"*{SHARD_SUFFIX}")


class WriteSplit(beam.PTransform):
    """Serialized examples -> `<uri>/Split-<name>/examples-*.tfrecord.gz`."""

    def __init__(self, artifact_uri: str, split: str):
        super().__init__()
        self.prefix = storage.join(artifact_uri, f"Split-{split}", "examples")

    def expand(self, serialized):
        return serialized | beam.io.WriteToTFRecord(self.prefix, file_name_suffix=SHARD_SUFFIX)


class ReadSplit(beam.PTransform):
    """`<uri>/Split-<name>/` -> rows (dicts of strings), counted as `rows_read:<name>`
    so every step's log line says how many rows it processed."""

    def __init__(self, artifact_uri: str, split: str):
        super().__init__()
        self.pattern = split_pattern(artifact_uri, split)
        self.counter_name = f"rows_read:{split}"

    def expand(self, pbegin):
        return (pbegin
                | "ReadTFRecords" >> beam.io.ReadFromTFRecord(self.pattern)
                | "DecodeExamples" >> beam.Map(decode_row)
                | "CountRows" >> beam.Map(counted, "ReadSplit", self.counter_name)
                # A gzipped shard is read by one worker; spread its rows before the heavy steps.
                | "SpreadRows" >> beam.Reshuffle())


def read_split_records(artifact_uri: str, split: str) -> list[bytes]:
    """All serialized examples of one split, in this process (for small splits; a local path)."""
    import tensorflow as tf
    files = storage.glob(split_pattern(artifact_uri, split))
    return list(tf.data.TFRecordDataset(files, compression_type="GZIP").as_numpy_iterator())


def read_split_rows(artifact_uri: str, split: str) -> list[dict[str, str | None]]:
    """All rows of one split, in this process (for small splits: eval, warm-up)."""
    return [decode_row(record) for record in read_split_records(artifact_uri, split)]
