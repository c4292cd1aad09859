"""Recommender text ranker: a user's context in, the catalog's best items out, scored.

Stage 1 retrieves by BM25 and by the embedder's vectors (served model), fused;
stage 2 re-ranks the top N with the cross-encoder (served model), in one
batched Predict call.

Library use::

    from apps.ranker import Ranker, RankRequest, load_config

    with Ranker.from_config(load_config()) as ranker:
        ranker.ingest(Path("catalog.jsonl"), full=True)
        response = ranker.rank(RankRequest(text="a light tent", filters={"in_stock": True}, k=5))
        [(item.id, item.score, item.found_by) for item in response.items]

Also a CLI (``python -m apps.ranker --help``) and an HTTP JSON endpoint (``serve``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from apps.ranker.config import AppConfig, load_config
from apps.ranker.errors import EmptyIndex, IngestError, InvalidRequest, ModelError, ModelUnavailable, RankerError

if TYPE_CHECKING:
    from apps.ranker.ranker import RankedItem, Ranker, RankRequest, RankResponse

__all__ = ["AppConfig", "EmptyIndex", "IngestError", "InvalidRequest", "ModelError", "ModelUnavailable",
           "RankRequest", "RankResponse", "RankedItem", "Ranker", "RankerError", "load_config"]

# Loaded on first use: the ranker brings the gRPC client and TensorFlow's protos, which
# `python -m apps.ranker --help` (this package is imported first) does not need.
_LAZY = {name: "apps.ranker.ranker" for name in ("RankedItem", "Ranker", "RankRequest", "RankResponse")}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
