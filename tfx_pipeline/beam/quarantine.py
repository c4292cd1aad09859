"""Rows that fail a check go to a quarantine file with the reason, never silently away."""

from __future__ import annotations

import json
from typing import Any, Iterable

import apache_beam as beam
from apache_beam.metrics import Metrics

from tfx_pipeline import storage

QUARANTINE_TAG = "quarantine"
_RAW_PREVIEW_CHARS = 500


def quarantine_record(source: str, reason: str, message: str, raw: Any) -> dict[str, Any]:
    """One quarantined row: where it came from, a reason code, a sentence, the row."""
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="backslashreplace")
    return {"source": source, "reason": reason, "message": message, "row": str(raw)[:_RAW_PREVIEW_CHARS]}


def count_reason(namespace: str, reason: str) -> None:
    Metrics.counter(namespace, f"quarantined:{reason}").inc()


class WriteQuarantine(beam.PTransform):
    """Writes quarantine records as JSON lines under `directory`."""

    def __init__(self, directory: str):
        super().__init__()
        self.directory = directory

    def expand(self, records):
        return (
            records
            | "ToJsonLines" >> beam.Map(lambda record: json.dumps(record, sort_keys=True))
            | "WriteJsonLines" >> beam.io.WriteToText(storage.join(self.directory, "rows"), file_name_suffix=".jsonl")
        )


def quarantined_counts(counters: dict[str, int]) -> dict[str, int]:
    return {name.split(":", 1)[1]: n for name, n in counters.items() if name.startswith("quarantined:")}


def read_quarantine(directory: str) -> Iterable[dict[str, Any]]:
    for uri in storage.glob(storage.join(directory, "rows*.jsonl")):
        for line in storage.read_text(uri).splitlines():
            if line:
                yield json.loads(line)
