"""Rows against the schema, on the Beam workers (ExampleValidator's row check).

Here rather than in the component's module: a worker that unpickles it then
imports no TensorFlow (the components package does).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import apache_beam as beam

from tfx_pipeline.beam.quarantine import QUARANTINE_TAG, count_reason, quarantine_record


class CheckRow(beam.DoFn):
    """A row against the schema: passes it on, or quarantines it with the reason."""

    def __init__(self, schema: Mapping[str, Any]):
        self.labels = frozenset(schema["labels"])
        self.max_chars = schema["max_text_chars"]
        self.text_fields = ["text", "text_pair"] if schema["text_pair"] else ["text"]

    def process(self, row):
        problem = self.problem(row)
        if problem:
            reason, message = problem
            count_reason("ExampleValidator", reason)
            yield beam.pvalue.TaggedOutput(
                QUARANTINE_TAG, quarantine_record(row.get("source", "?"), reason, message, row))
        else:
            yield row

    def problem(self, row) -> tuple[str, str] | None:
        label = row.get("label")
        if label is None or not label.strip():
            return "missing_label", "label is missing or empty"
        if label not in self.labels:
            return "unknown_label", f"label {label!r} is not one of the schema's {len(self.labels)} labels"
        for field in self.text_fields:
            text = row.get(field)
            if text is None or not text.strip():
                return f"empty_{field}", f"{field} is missing or empty"
            if len(text) > self.max_chars:
                return f"{field}_too_long", f"{field} has {len(text)} characters, the schema allows {self.max_chars}"
        return None
