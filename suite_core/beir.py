"""BEIR-format datasets: `corpus.jsonl`, `queries.jsonl`, `qrels/<split>.tsv`.

Also accepted, as the SciFact copy in `../shared/data` is laid out:
`queries_<split>.jsonl` and `qrels_<split>.tsv` side by side.

Example:

>>> import json, pathlib, tempfile
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "corpus.jsonl").write_text(json.dumps({"_id": "d1", "title": "T", "text": "body"}) + "\\n")
>>> _ = (d / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "what?"}) + "\\n")
>>> (d / "qrels").mkdir()
>>> _ = (d / "qrels" / "train.tsv").write_text("query-id\\tcorpus-id\\tscore\\nq1\\td1\\t1\\n")
>>> data = BeirDataset.load(d, "train")
>>> data.qrels, data.document_text("d1")
({'q1': {'d1': 1}}, 'T. body')
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterator, Mapping
from pathlib import Path


class BeirFormatError(ValueError):
    """A BEIR file is missing or a line of it is malformed; the message names file and line."""


@dataclasses.dataclass(frozen=True)
class Document:
    id: str
    title: str
    text: str
    metadata: Mapping[str, object] = dataclasses.field(default_factory=dict)

    @property
    def full_text(self) -> str:
        """Title and body as one passage, the way BEIR baselines index them."""
        return f"{self.title}. {self.text}" if self.title else self.text


@dataclasses.dataclass(frozen=True)
class BeirDataset:
    corpus: Mapping[str, Document]
    queries: Mapping[str, str]  # Only queries that have judgements in the split.
    qrels: Mapping[str, Mapping[str, int]]  # query id -> {document id: relevance grade}

    @classmethod
    def load(cls, directory: str | Path, split: str = "test") -> "BeirDataset":
        directory = Path(directory)
        corpus = {doc.id: doc for doc in read_corpus(_first_existing(directory, ["corpus.jsonl"]))}
        queries_file = _first_existing(directory, [f"queries_{split}.jsonl", "queries.jsonl"])
        qrels_file = _first_existing(directory, [f"qrels/{split}.tsv", f"qrels_{split}.tsv"])
        qrels = read_qrels(qrels_file)
        all_queries = dict(read_queries(queries_file))
        missing = sorted(set(qrels) - set(all_queries))
        if missing:
            raise BeirFormatError(f"{qrels_file}: {len(missing)} query ids have no text in {queries_file}, "
                                  f"e.g. {missing[0]!r}")
        unknown = sorted({doc for judged in qrels.values() for doc in judged} - set(corpus))
        if unknown:
            raise BeirFormatError(f"{qrels_file}: {len(unknown)} corpus ids are not in corpus.jsonl, "
                                  f"e.g. {unknown[0]!r}")
        return cls(corpus, {qid: all_queries[qid] for qid in qrels}, qrels)

    def document_text(self, doc_id: str) -> str:
        return self.corpus[doc_id].full_text

    def relevant(self, query_id: str) -> set[str]:
        return {doc for doc, grade in self.qrels.get(query_id, {}).items() if grade > 0}


def read_corpus(path: Path) -> Iterator[Document]:
    """Documents of a corpus file; `id` is accepted for `_id` (catalog files)."""
    for line_number, record in _json_lines(path):
        doc_id = record.get("_id", record.get("id"))
        if doc_id is None or not isinstance(record.get("text", ""), str):
            raise BeirFormatError(f"{path}:{line_number}: expected an object with _id (or id) and text")
        metadata = record.get("metadata") or {}
        if not isinstance(metadata, dict):
            raise BeirFormatError(f"{path}:{line_number}: metadata must be an object")
        yield Document(str(doc_id), str(record.get("title") or ""), record.get("text") or "", metadata)


def read_queries(path: Path) -> Iterator[tuple[str, str]]:
    for line_number, record in _json_lines(path):
        if "_id" not in record or not isinstance(record.get("text"), str):
            raise BeirFormatError(f"{path}:{line_number}: expected an object with _id and text")
        yield str(record["_id"]), record["text"]


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(newline="") as handle:
        for line_number, row in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not row or (line_number == 1 and row[0] == "query-id"):
                continue
            try:
                query_id, doc_id, grade = row[0], row[1], int(row[2])
            except (IndexError, ValueError):
                raise BeirFormatError(f"{path}:{line_number}: expected query-id<TAB>corpus-id<TAB>integer score, "
                                      f"got {row!r}") from None
            qrels.setdefault(query_id, {})[doc_id] = grade
    return qrels


def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    with path.open() as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise BeirFormatError(f"{path}:{line_number}: not valid JSON: {e}") from None
            if not isinstance(record, dict):
                raise BeirFormatError(f"{path}:{line_number}: expected a JSON object")
            yield line_number, record


def _first_existing(directory: Path, names: list[str]) -> Path:
    for name in names:
        if (directory / name).is_file():
            return directory / name
    raise BeirFormatError(f"{directory}: none of {', '.join(names)} found (BEIR layout expected)")
