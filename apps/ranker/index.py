"""The catalog index on disk: items, their vectors (exact numpy search) and a BM25 index (bm25s).

Layout of ``index.path``::

    CURRENT                 the name of the generation in force, e.g. "gen-000007"
    gen-000007/
        manifest.json       item count, vector size, the embedder (model, version) that made the vectors
        items.jsonl         id, title, text, metadata, content hash; row i is vector i and BM25 document i
        vectors.npy         [items, D] float32, rows L2-normalised
        bm25/               bm25s's saved index (English stop words, Snowball English stemmer)

Every change writes a whole new generation into a hidden temporary directory,
renames it into place and then replaces ``CURRENT`` (write, fsync, rename), so
a crash at any point leaves the previous generation in force and never a
half-written one; the generation before last is deleted afterwards.  Exact
search is a matrix-vector product: a few milliseconds for tens of thousands of
items.  For catalogs in the millions an approximate nearest-neighbour library
such as usearch would replace :meth:`CatalogIndex.vector_scores`.

Example::

    index = CatalogIndex.load(Path("work/ranker/index"))   # empty when nothing was ingested
    index.lexical_scores("light tent")                      # BM25 score of every item
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import bm25s
import numpy as np

from suite_core.bm25 import build_index as _build_bm25_index
from suite_core.bm25 import lexical_scores

CURRENT = "CURRENT"
_GENERATION_PREFIX = "gen-"


def content_hash(title: str, text: str) -> str:
    """What the item's vector depends on: its embedded text (metadata changes need no re-embedding)."""
    return hashlib.sha256(full_text(title, text).encode("utf-8")).hexdigest()[:32]


def full_text(title: str, text: str) -> str:
    """Title and body as one passage, as ``suite_core.beir.Document.full_text`` makes it."""
    return f"{title}. {text}" if title else text


@dataclasses.dataclass(frozen=True)
class Item:
    id: str
    title: str
    text: str
    metadata: Mapping[str, Any]
    content_hash: str

    @property
    def full_text(self) -> str:
        return full_text(self.title, self.text)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "text": self.text, "metadata": dict(self.metadata),
                "hash": self.content_hash}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Item:
        return cls(record["id"], record["title"], record["text"], record["metadata"], record["hash"])


class CatalogIndex:
    """One generation of the index, in memory; read-only (changes build a new one)."""

    def __init__(self, items: Sequence[Item], vectors: np.ndarray, *, embedder: Mapping[str, Any] | None = None,
                 generation: str = "", bm25: bm25s.BM25 | None = None) -> None:
        if len(items) != len(vectors):
            raise ValueError(f"{len(items)} items but {len(vectors)} vectors")
        self.items = list(items)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.embedder = dict(embedder or {})  # {"model": name, "version": n}
        self.generation = generation
        self.position = {item.id: i for i, item in enumerate(self.items)}
        self.bm25 = bm25 if bm25 is not None or not self.items else _build_bm25(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def get(self, item_id: str) -> Item | None:
        row = self.position.get(item_id)
        return None if row is None else self.items[row]

    def lexical_scores(self, text: str) -> np.ndarray:
        """The BM25 score of every item for ``text`` (zeros when no term of it is in the catalog)."""
        return lexical_scores(self.bm25, text, len(self.items))  # suite_core.bm25: as mining and evaluation

    def vector_scores(self, vector: np.ndarray) -> np.ndarray:
        """Cosine similarity of every item to the unit ``vector`` (exact search)."""
        return self.vectors @ np.asarray(vector, dtype=np.float32)

    # -- persistence ---------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path) -> CatalogIndex:
        """The generation in force under ``directory``; an empty index when there is none yet."""
        name = current_generation(directory)
        if name is None:
            return cls([], np.zeros((0, 0), np.float32))
        path = Path(directory) / name
        manifest = json.loads((path / "manifest.json").read_text())
        with (path / "items.jsonl").open(encoding="utf-8") as handle:
            items = [Item.from_json(json.loads(line)) for line in handle if line.strip()]
        vectors = np.load(path / "vectors.npy")
        bm25 = bm25s.BM25.load(path / "bm25", show_progress=False) if items else None
        return cls(items, vectors, embedder=manifest.get("embedder"), generation=name, bm25=bm25)

    def save(self, directory: Path) -> str:
        """Writes this index as the next generation and puts it in force atomically; returns its name."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        previous = current_generation(directory)
        number = int(previous[len(_GENERATION_PREFIX):]) + 1 if previous else 1
        name = f"{_GENERATION_PREFIX}{number:06d}"
        staging = directory / f".tmp-{name}-{os.getpid()}-{threading.get_ident()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        manifest = {"items": len(self.items), "dimension": int(self.vectors.shape[1]) if self.items else 0,
                    "embedder": self.embedder}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1))
        with (staging / "items.jsonl").open("w", encoding="utf-8") as handle:
            for item in self.items:
                handle.write(json.dumps(item.to_json(), ensure_ascii=False) + "\n")
        np.save(staging / "vectors.npy", self.vectors)
        if self.bm25 is not None:
            self.bm25.save(staging / "bm25", show_progress=False)
        _fsync_tree(staging)
        os.replace(staging, directory / name)
        _write_atomically(directory / CURRENT, name)
        self.generation = name
        _remove_old_generations(directory, keep={name, previous})
        return name


def current_generation(directory: Path) -> str | None:
    try:
        name = (Path(directory) / CURRENT).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def build_index(items: Iterable[Item], vectors: np.ndarray, embedder: Mapping[str, Any]) -> CatalogIndex:
    return CatalogIndex(list(items), vectors, embedder=embedder)


def _build_bm25(items: Sequence[Item]) -> bm25s.BM25:
    return _build_bm25_index([item.full_text for item in items])


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with temporary.open("w") as handle:
        handle.write(text + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    _fsync_directory(path.parent)


def _fsync_tree(root: Path) -> None:
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    for path in [root, *sorted(p for p in root.rglob("*") if p.is_dir())]:
        _fsync_directory(path)


def _fsync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_old_generations(directory: Path, keep: set[str | None]) -> None:
    """Generations other than the one in force and the one before (a reader may still be loading it),
    and staging directories a crashed writer left behind."""
    for path in directory.iterdir():
        stale_generation = path.name.startswith(_GENERATION_PREFIX) and path.name not in keep
        stale_staging = path.name.startswith(".tmp-") and not path.name.endswith(
            f"-{os.getpid()}-{threading.get_ident()}")
        if path.is_dir() and (stale_generation or stale_staging):
            shutil.rmtree(path, ignore_errors=True)
