"""ExampleValidator: rows against the schema, the dataset against the last run.

Row anomalies (missing or unknown label, empty text, over-long text) send the
row to quarantine with the reason; the rest continue as validated examples.
Dataset anomalies (share of bad rows, label distribution skew against the
previous run) go to `anomalies.json`. The run stops, naming the top reasons,
only when the configured bounds are exceeded.
"""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Mapping
from typing import Any

import apache_beam as beam

from tfx_pipeline import storage
from tfx_pipeline.beam.examples import ReadSplit, WriteSplit, counted, encode_row
from tfx_pipeline.beam.pipeline_options import counted_pipeline
from tfx_pipeline.beam.quarantine import (
    QUARANTINE_TAG,
    WriteQuarantine,
    quarantined_counts,
)
from tfx_pipeline.beam.validation import CheckRow
from tfx_pipeline.config import ValidationConfig
from tfx_pipeline.dsl import Channel, Component, ExecutionContext, PipelineError

ANOMALIES_FILE = "anomalies.json"


class ExampleValidator(Component):
    OUTPUTS = {"examples": "Examples", "anomalies": "ExampleAnomalies"}

    def __init__(self, examples: Channel, statistics: Channel, schema: Channel,
                 validation: ValidationConfig, splits: list[str], baseline_statistics: str):
        super().__init__({"examples": examples, "statistics": statistics, "schema": schema})
        self.validation, self.splits = validation, list(splits)
        # Statistics of the last validated data; only compared against, never
        # a cache key, so re-running on unchanged data stays cached.
        self.baseline_statistics = str(baseline_statistics)

    def fingerprint_data(self):
        return [dataclasses.asdict(self.validation), self.splits]

    def execute(self, ctx: ExecutionContext):
        schema = storage.read_json(storage.join(ctx.inputs["schema"].uri, "schema.json"))
        statistics = storage.read_json(storage.join(ctx.inputs["statistics"].uri, "statistics.json"))
        examples_in = ctx.inputs["examples"]
        examples_out, anomalies_dir = ctx.output_dirs["examples"], ctx.output_dirs["anomalies"]
        with counted_pipeline(ctx.beam_args, ctx.log) as run:
            quarantines = []
            for split in self.splits:
                checked = (run.pipeline
                           | f"Read[{split}]" >> ReadSplit(examples_in.uri, split)
                           | f"Check[{split}]" >> beam.ParDo(CheckRow(schema)).with_outputs(QUARANTINE_TAG, main="ok"))
                _ = (checked.ok
                     | f"Count[{split}]" >> beam.Map(counted, "ExampleValidator", f"valid:{split}")
                     | f"Encode[{split}]" >> beam.Map(encode_row)
                     | f"Write[{split}]" >> WriteSplit(examples_out, split))
                quarantines.append(checked[QUARANTINE_TAG])
            _ = quarantines | "MergeQuarantine" >> beam.Flatten() | "WriteQuarantine" >> WriteQuarantine(
                storage.join(anomalies_dir, "quarantine"))

        bad_rows = collections.Counter(examples_in.properties.get("quarantined", {}))
        bad_rows.update(quarantined_counts(run.counters))
        rows_read = examples_in.properties.get("rows_read") or 1
        report: dict[str, Any] = {
            "rows_read": rows_read,
            "valid_counts": {split: run.counters.get(f"valid:{split}", 0) for split in self.splits},
            "bad_rows": dict(bad_rows),
            "bad_row_fraction": sum(bad_rows.values()) / rows_read,
            "max_bad_row_fraction": self.validation.max_bad_row_fraction,
            "quarantine_files": [examples_in.properties.get("quarantine_dir"),
                                 storage.join(anomalies_dir, "quarantine")],
            "label_skew": self._label_skew(statistics),
            "statistics": {split: _brief(s) for split, s in statistics.items()},
        }
        report["anomalies"] = self._anomalies(report)
        storage.write_json(storage.join(anomalies_dir, ANOMALIES_FILE), report)
        for message in report["anomalies"]:
            ctx.log.warning("anomaly: %s", message)
        self._stop_if_over_bounds(report)
        storage.write_json(self.baseline_statistics, statistics)
        return {"examples": {"split_counts": report["valid_counts"]},
                "anomalies": {"anomalies": report["anomalies"], "bad_rows": report["bad_rows"],
                              "bad_row_fraction": report["bad_row_fraction"]}}

    def _label_skew(self, statistics) -> dict[str, Any] | None:
        if not storage.exists(self.baseline_statistics):
            return None
        previous = storage.read_json(self.baseline_statistics)["train"]["labels"]
        current = statistics["train"]["labels"]
        p, q = _distribution(previous), _distribution(current)
        distances = {label: abs(p.get(label, 0.0) - q.get(label, 0.0)) for label in set(p) | set(q)}
        if not distances:
            return {"linf_distance": 0.0, "label": None, "bound": self.validation.max_label_skew}
        worst = max(distances, key=distances.__getitem__)
        return {"linf_distance": distances[worst], "label": worst, "bound": self.validation.max_label_skew}

    def _anomalies(self, report) -> list[str]:
        messages = [f"{n} row(s) quarantined: {reason}" for reason, n in sorted(report["bad_rows"].items())]
        skew = report["label_skew"]
        if skew and skew["linf_distance"] > skew["bound"]:
            messages.append(f"label distribution skew {skew['linf_distance']:.3f} against the previous run "
                            f"exceeds {skew['bound']} (label {skew['label']!r})")
        for split, brief in report["statistics"].items():
            if brief["over_sequence_length"]:
                messages.append(f"{brief['over_sequence_length']} {split} text(s) exceed the model's "
                                "sequence length and will be truncated")
        return messages

    def _stop_if_over_bounds(self, report) -> None:
        if report["bad_row_fraction"] > self.validation.max_bad_row_fraction:
            top = ", ".join(f"{reason} ({n})" for reason, n in collections.Counter(report["bad_rows"]).most_common(3))
            raise PipelineError(
                f"{report['bad_row_fraction']:.1%} of {report['rows_read']} rows are bad, above "
                f"validation.max_bad_row_fraction={self.validation.max_bad_row_fraction:.1%}; "
                f"top reasons: {top}; quarantined rows are in "
                f"{', '.join(p for p in report['quarantine_files'] if p)}")
        skew = report["label_skew"]
        if self.validation.fail_on_skew and skew and skew["linf_distance"] > skew["bound"]:
            raise PipelineError(f"label distribution skew {skew['linf_distance']:.3f} on label "
                                f"{skew['label']!r} exceeds validation.max_label_skew={skew['bound']}")


def _distribution(counts: Mapping[str, int]) -> dict[str, float]:
    total = sum(counts.values()) or 1
    return {label: n / total for label, n in counts.items()}


def _brief(statistics: Mapping[str, Any]) -> dict[str, Any]:
    return {"num_examples": statistics["num_examples"],
            "unknown_token_rate": statistics["unknown_token_rate"],
            "over_sequence_length": statistics["text_tokens"]["over_sequence_length"]}
