"""Per-split dataset statistics: counts, missing and empty values, text length
in characters and WordPiece tokens, unknown-token rate, label distribution."""

from __future__ import annotations

import collections
from typing import TYPE_CHECKING, Any, Iterable, Mapping, Sequence

import apache_beam as beam

if TYPE_CHECKING:
    from tfx_pipeline.model.preprocessing import TextPreprocessor


class CountTokens(beam.DoFn):
    """Adds `_tokens` (WordPiece count) and `_unknown` ([UNK] count) to each row."""

    def __init__(self, preset: str, sequence_length: int):
        self.preset, self.sequence_length = preset, sequence_length
        self.preprocessor: TextPreprocessor | None = None

    def setup(self):
        # Imported here: TensorFlow loads once per worker, not at pipeline construction.
        from tfx_pipeline.model.preprocessing import TextPreprocessor
        self.preprocessor = TextPreprocessor.from_preset(self.preset, self.sequence_length)

    def process(self, rows: Sequence[dict[str, Any]]):
        assert self.preprocessor is not None, "setup() runs first"
        unknown_id = self.preprocessor.unknown_token_id
        for row, ids in zip(rows, self.preprocessor.word_pieces([row.get("text") or "" for row in rows])):
            yield {**row, "_tokens": len(ids), "_unknown": ids.count(unknown_id)}


class StatisticsCombineFn(beam.CombineFn):
    def __init__(self, columns: Sequence[str], sequence_length: int):
        self.columns = list(columns)
        self.sequence_length = sequence_length

    def create_accumulator(self):
        return {"n": 0, "missing": collections.Counter(), "empty": collections.Counter(),
                "chars": collections.Counter(), "tokens": collections.Counter(),
                "unknown": 0, "labels": collections.Counter()}

    def add_input(self, acc, row):
        acc["n"] += 1
        for column in self.columns:
            value = row.get(column)
            if value is None:
                acc["missing"][column] += 1
            elif not value.strip():
                acc["empty"][column] += 1
        acc["chars"][len(row.get("text") or "")] += 1
        acc["tokens"][row["_tokens"]] += 1
        acc["unknown"] += row["_unknown"]
        if row.get("label"):
            acc["labels"][row["label"]] += 1
        return acc

    def merge_accumulators(self, accumulators: Iterable[dict]):
        merged = self.create_accumulator()
        for acc in accumulators:
            merged["n"] += acc["n"]
            merged["unknown"] += acc["unknown"]
            for key in ("missing", "empty", "chars", "tokens", "labels"):
                merged[key].update(acc[key])
        return merged

    def extract_output(self, acc) -> dict[str, Any]:
        total_tokens = sum(length * count for length, count in acc["tokens"].items())
        return {
            "num_examples": acc["n"],
            "columns": {c: {"missing": acc["missing"][c], "empty": acc["empty"][c]} for c in self.columns},
            "text_chars": _summary(acc["chars"]),
            "text_tokens": {
                **_summary(acc["tokens"]),
                # +2 for [CLS] and [SEP]: these texts are truncated by the model.
                "over_sequence_length": sum(c for n, c in acc["tokens"].items() if n + 2 > self.sequence_length),
            },
            "unknown_token_rate": acc["unknown"] / total_tokens if total_tokens else 0.0,
            "labels": dict(sorted(acc["labels"].items())),
        }


def _summary(histogram: Mapping[int, int]) -> dict[str, float]:
    """min / mean / percentiles / max of a value -> count histogram."""
    total = sum(histogram.values())
    if not total:
        return {"min": 0, "mean": 0.0, "p50": 0, "p95": 0, "p99": 0, "max": 0}
    values = sorted(histogram)
    percentiles, seen, wanted = {}, 0, [(0.5, "p50"), (0.95, "p95"), (0.99, "p99")]
    for value in values:
        seen += histogram[value]
        while wanted and seen >= wanted[0][0] * total:
            percentiles[wanted.pop(0)[1]] = value
    return {"min": values[0], "mean": sum(v * c for v, c in histogram.items()) / total,
            **percentiles, "max": values[-1]}


class ComputeStatistics(beam.PTransform):
    """Rows of one split -> a single statistics dict."""

    def __init__(self, columns: Sequence[str], preset: str, sequence_length: int):
        super().__init__()
        self.columns, self.preset, self.sequence_length = columns, preset, sequence_length

    def expand(self, rows):
        return (
            rows
            | "Batch" >> beam.BatchElements(min_batch_size=32, max_batch_size=512)
            | "CountTokens" >> beam.ParDo(CountTokens(self.preset, self.sequence_length))
            | "Summarise" >> beam.CombineGlobally(StatisticsCombineFn(self.columns, self.sequence_length))
        )
