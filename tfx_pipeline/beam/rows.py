"""Raw CSV, TSV and JSON-lines files -> rows of named string columns.

Each file is parsed by one worker (line numbers stay exact for quarantine
messages); a glob of many files spreads over many workers. Rows keep the
configured columns under fixed names: `text`, `label`, `text_pair` and the
extra columns by their own names; a missing value is None.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from typing import Any, Iterator, Optional

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from tfx_pipeline.beam.quarantine import QUARANTINE_TAG, count_reason, quarantine_record
from tfx_pipeline.config import ConfigError, DataConfig

_NAMESPACE = "ExampleGen"
_DELIMITERS = {"csv": ",", "tsv": "\t"}


@dataclasses.dataclass(frozen=True)
class ColumnMapping:
    """Source column name for each field an example carries."""

    text: str
    label: str
    text_pair: Optional[str] = None
    extra: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, data: DataConfig) -> "ColumnMapping":
        if data.text_column is None or data.label_column is None:  # PipelineConfig's checks require both.
            raise ValueError("data.text_column and data.label_column must be set")
        return cls(data.text_column, data.label_column, data.text_pair_column, tuple(data.extra_columns))

    def fields(self) -> dict[str, str]:
        """Example field name -> source column name."""
        fields = {"text": self.text, "label": self.label}
        if self.text_pair:
            fields["text_pair"] = self.text_pair
        fields.update({column: column for column in self.extra})
        return fields


def file_format(path: str, configured: str) -> str:
    if configured != "auto":
        return configured
    for suffix, fmt in ((".csv", "csv"), (".tsv", "tsv"), (".jsonl", "jsonl"), (".json", "jsonl")):
        if path.endswith(suffix) or path.endswith(suffix + ".gz"):
            return fmt
    raise ConfigError(f"data.format: cannot tell the format of {path}; set data.format to csv, tsv or jsonl")


def matched_files(pattern: str) -> list[str]:
    """Files matching a path or glob on any Beam filesystem; an error names the pattern."""
    try:
        matches = FileSystems.match([pattern])[0].metadata_list
    except Exception as error:  # Beam raises BeamIOError with nested causes.
        raise ConfigError(f"data.path: cannot list {pattern}: {error}") from None
    paths = sorted(m.path for m in matches)
    if not paths:
        raise ConfigError(f"data.path: no file matches {pattern}")
    return paths


def check_header(path: str, fmt: str, columns: ColumnMapping) -> None:
    """Fails fast, naming file and column, when a delimited file lacks a configured column."""
    if fmt not in _DELIMITERS:
        return
    with FileSystems.open(path) as handle:
        first_line = handle.readline().decode("utf-8", errors="replace")
    header = next(csv.reader([first_line], delimiter=_DELIMITERS[fmt]), [])
    for field, column in columns.fields().items():
        if column not in header:
            raise ConfigError(
                f"{path}: column {column!r} (data.{field}_column) is not in the header; "
                f"columns are: {', '.join(header)}")


class ParseFileRows(beam.DoFn):
    """ReadableFile -> rows; malformed lines go to the quarantine output."""

    def __init__(self, fmt: str, columns: ColumnMapping):
        self.fmt = fmt
        self.columns = columns
        self.rows_read = Metrics.counter(_NAMESPACE, "rows_read")

    def process(self, readable_file: fileio.ReadableFile) -> Iterator[Any]:
        path = readable_file.metadata.path
        fmt = file_format(path, self.fmt)
        lines = _numbered_lines(readable_file.read())
        parse = self._parse_jsonl if fmt == "jsonl" else self._parse_delimited
        for item in parse(path, lines, _DELIMITERS.get(fmt)):
            self.rows_read.inc()
            if isinstance(item, beam.pvalue.TaggedOutput):
                count_reason(_NAMESPACE, item.value["reason"])
            yield item

    def _parse_jsonl(self, path, lines, _delimiter):
        for number, text, raw in lines:
            source = f"{path}:{number}"
            if text is None:
                yield _reject(source, "undecodable_bytes", _undecodable_message(raw), raw)
                continue
            if not text.strip():
                continue  # A blank line is not a row.
            try:
                record = json.loads(text)
            except json.JSONDecodeError as error:
                yield _reject(source, "malformed_row", f"not valid JSON: {error}", text)
                continue
            if not isinstance(record, dict):
                yield _reject(source, "malformed_row", f"expected a JSON object, got {type(record).__name__}", text)
                continue
            yield from self._to_row(source, record, text)

    def _parse_delimited(self, path, lines, delimiter):
        header: list[str] | None = None
        current = {"number": 0}

        def decodable_lines():
            for number, text, raw in lines:
                current["number"] = number
                if text is None:
                    rejected.append(_reject(f"{path}:{number}", "undecodable_bytes", _undecodable_message(raw), raw))
                    continue
                yield text

        rejected: list[beam.pvalue.TaggedOutput] = []
        for fields in csv.reader(decodable_lines(), delimiter=delimiter):
            yield from rejected
            rejected.clear()
            source = f"{path}:{current['number']}"
            if header is None:
                header = fields
                continue
            if not any(field.strip() for field in fields):
                continue  # Blank line.
            if len(fields) != len(header):
                yield _reject(source, "malformed_row",
                              f"expected {len(header)} fields, found {len(fields)}", delimiter.join(fields))
                continue
            yield from self._to_row(source, dict(zip(header, fields)), delimiter.join(fields))
        yield from rejected

    def _to_row(self, source: str, record: dict[str, Any], raw: str):
        row: dict[str, Optional[str]] = {"source": source}
        for field, column in self.columns.fields().items():
            value = record.get(column)
            if value is None or isinstance(value, str):
                row[field] = value
            elif isinstance(value, int) and not isinstance(value, bool) and field == "label":
                row[field] = str(value)  # Integer class ids are labels too.
            else:
                yield _reject(source, "wrong_type",
                              f"column {column!r} is {type(value).__name__}, expected string", raw)
                return
        yield row


def _reject(source: str, reason: str, message: str, raw: Any) -> beam.pvalue.TaggedOutput:
    return beam.pvalue.TaggedOutput(QUARANTINE_TAG, quarantine_record(source, reason, message, raw))


def _numbered_lines(data: bytes) -> Iterator[tuple[int, Optional[str], bytes]]:
    """(line number, decoded text or None if not UTF-8, raw bytes)."""
    for number, raw in enumerate(data.splitlines(keepends=True), start=1):
        try:
            yield number, raw.decode("utf-8"), raw
        except UnicodeDecodeError:
            yield number, None, raw


def _undecodable_message(raw: bytes) -> str:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"undecodable bytes: not UTF-8 at byte {error.start} ({raw[error.start:error.start + 4]!r})"
    return "undecodable bytes"


class ReadRows(beam.PTransform):
    """Path or glob -> rows (main output) and quarantine records."""

    def __init__(self, pattern: str, fmt: str, columns: ColumnMapping):
        super().__init__()
        self.pattern, self.fmt, self.columns = pattern, fmt, columns

    def expand(self, pbegin):
        parsed = (
            pbegin
            | "MatchFiles" >> fileio.MatchFiles(self.pattern)
            | "ReadMatches" >> fileio.ReadMatches()
            | "ParseRows" >> beam.ParDo(ParseFileRows(self.fmt, self.columns)).with_outputs(
                QUARANTINE_TAG, main="rows")
        )
        # One file is parsed by one worker; spread its rows before the heavy steps.
        rows = parsed.rows | "SpreadRows" >> beam.Reshuffle()
        return rows, parsed[QUARANTINE_TAG]
