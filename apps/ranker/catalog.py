"""Catalog ingestion and removal: JSON lines in, a new index generation out.

A catalog line is ``{"id" (or BEIR's "_id"), "title", "text", "metadata": {...}}``.
Each item's content hash (of the text that is embedded, title and body) says
whether its vector can be kept: only new and changed items are sent to the
embedder, in batched Predict calls.  Metadata changes are applied without
re-embedding.  With ``full=True`` the file is the whole catalog and items
absent from it are removed; otherwise it is an upsert.  When the server now
serves another embedder version than the one that made the stored vectors,
every item is re-embedded (vectors of two versions are not comparable).

One writer at a time (a lock file in the index directory); readers never
wait, they keep the generation they loaded.

Example::

    report = ingest(Path("work/ranker/index"), read_catalog(Path("catalog.jsonl")), models, full=True)
    report.to_dict()    # {"added": 72, "updated": 0, "removed": 0, ...}
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

from apps.ranker.errors import IngestError
from apps.ranker.index import CatalogIndex, Item, content_hash
from apps.ranker.models import Models
from suite_core.beir import BeirFormatError, Document, read_corpus


@dataclasses.dataclass
class IngestReport:
    added: list[str] = dataclasses.field(default_factory=list)
    updated: list[str] = dataclasses.field(default_factory=list)  # text changed: re-embedded
    metadata_updated: list[str] = dataclasses.field(default_factory=list)  # only metadata changed
    unchanged: int = 0
    removed: list[str] = dataclasses.field(default_factory=list)
    duplicate_ids: list[str] = dataclasses.field(default_factory=list)  # in the file; the last line won
    embedded: int = 0  # texts sent to the embedder
    reembedded_all_reason: str | None = None
    items: int = 0  # in the index afterwards
    generation: str = ""

    def to_dict(self, limit: int = 20) -> dict:
        """Counts, with up to ``limit`` ids of each list."""
        result: dict = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, list):
                result[field.name] = len(value)
                if value:
                    result[f"{field.name}_ids"] = value[:limit]
            else:
                result[field.name] = value
        return result


def read_catalog(path: Path) -> list[Document]:
    """The items of a JSON-lines catalog file (``id`` or ``_id``, title, text, metadata)."""
    try:
        return list(read_corpus(Path(path)))
    except FileNotFoundError:
        raise IngestError(f"catalog file not found: {path}") from None
    except BeirFormatError as exc:
        raise IngestError(str(exc)) from None


@contextlib.contextmanager
def writer_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / ".lock").open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ingest(directory: Path, documents: Iterable[Document], models: Models, *, full: bool) -> IngestReport:
    """Adds, updates (and with ``full``, removes) items; writes and activates a new generation."""
    report = IngestReport()
    incoming: dict[str, Document] = {}
    for document in documents:
        if document.id in incoming:
            report.duplicate_ids.append(document.id)
        incoming[document.id] = document
    with writer_lock(Path(directory)):
        old = CatalogIndex.load(directory)
        probe, version = models.embed_with_version(["probe"], bulk=True)
        embedder = {"model": models.server.embedder_model, "version": version}
        reuse = old.embedder == embedder and len(old) > 0 and old.vectors.shape[1] == probe.shape[1]
        if len(old) and not reuse:
            report.reembedded_all_reason = (f"the stored vectors were made by {old.embedder or 'an unknown model'}"
                                            f", the server now serves {embedder}")
        items: dict[str, Item] = {}
        vectors: dict[str, np.ndarray] = {}
        to_embed: list[Item] = []
        kept = old.items if not full else [item for item in old.items if item.id in incoming]
        report.removed = [item.id for item in old.items if full and item.id not in incoming]
        for item in kept:
            items[item.id] = item
        for document in incoming.values():
            item = Item(document.id, document.title, document.text, dict(document.metadata),
                        content_hash(document.title, document.text))
            previous = old.get(document.id)
            if previous is None:
                report.added.append(item.id)
            elif previous.content_hash != item.content_hash:
                report.updated.append(item.id)
            elif dict(previous.metadata) != item.metadata:
                report.metadata_updated.append(item.id)
            else:
                report.unchanged += 1
            items[item.id] = item
        for item_id, item in items.items():
            previous = old.get(item_id)
            if reuse and previous is not None and previous.content_hash == item.content_hash:
                vectors[item_id] = old.vectors[old.position[item_id]]
            else:
                to_embed.append(item)
        if to_embed:
            fresh = models.embed([item.full_text for item in to_embed], bulk=True)
            vectors.update({item.id: row for item, row in zip(to_embed, fresh)})
        report.embedded = len(to_embed)
        changed = report.added or report.updated or report.metadata_updated or report.removed or to_embed
        if not changed:  # nothing to write: the generation in force stays
            report.generation, report.items = old.generation, len(old)
            return report
        ordered = list(items.values())
        dimension = probe.shape[1]
        matrix = np.stack([vectors[item.id] for item in ordered]) if ordered else np.zeros((0, dimension), np.float32)
        index = CatalogIndex(ordered, matrix, embedder=embedder)
        report.generation = index.save(directory)
        report.items = len(index)
    return report


def remove(directory: Path, ids: Sequence[str]) -> tuple[list[str], list[str]]:
    """Removes items by id; returns (removed, unknown).  No model call: vectors are kept as they are."""
    with writer_lock(Path(directory)):
        old = CatalogIndex.load(directory)
        wanted = set(ids)
        removed = [item.id for item in old.items if item.id in wanted]
        unknown = sorted(wanted - set(removed))
        if removed:
            keep = [i for i, item in enumerate(old.items) if item.id not in wanted]
            index = CatalogIndex([old.items[i] for i in keep], old.vectors[keep] if keep else
                                 np.zeros((0, old.vectors.shape[1]), np.float32), embedder=old.embedder)
            index.save(directory)
    return removed, unknown
