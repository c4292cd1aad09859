"""The pipeline's deterministic train / eval / test split, as a pure function.

A hash of the text (or of a group column) picks the split, so a duplicated text,
or a query's group of rows, never straddles train and eval.  The pipeline's
ExampleGen splits with it and the apps use it to find the rows the served model
never trained on, without importing the pipeline.

>>> split_of({"text": "where is my card?"}, HashSplit(train=90, eval=10))
'train'
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from typing import Optional, Protocol


class SplitSpec(Protocol):
    """Percentages of rows per split, and the optional group column (the pipeline's SplitConfig)."""

    @property
    def train(self) -> int: ...

    @property
    def eval(self) -> int: ...

    @property
    def group_column(self) -> Optional[str]: ...


@dataclasses.dataclass(frozen=True)
class HashSplit:
    train: int = 80
    eval: int = 20
    group_column: Optional[str] = None


def split_of(row: Mapping[str, str | None], split: SplitSpec) -> str:
    """``train``, ``eval`` or ``test`` for ``row`` (the rest after train and eval is test)."""
    if split.group_column:
        key = row.get(split.group_column) or ""
    else:
        key = (row.get("text") or "") + "\x1f" + (row.get("text_pair") or "")
    bucket = int.from_bytes(hashlib.sha256(key.encode("utf-8")).digest()[:8], "big") % 100
    if bucket < split.train:
        return "train"
    return "eval" if bucket < split.train + split.eval else "test"
