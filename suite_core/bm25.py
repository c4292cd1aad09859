"""The one BM25 of the suite: bm25s (Lucene scoring) over lower-cased words, English
stop words out, Snowball English stemmer (PyStemmer).

The ranker app's index, the pipeline's hard-negative miner and the ranking
evaluation all score with these functions, so a document ranks the same for a
query wherever it is scored.

Example:

>>> index = build_index(["red apples and pears", "fast red cars", "green pears"])
>>> scores = lexical_scores(index, "red fruit apples", 3)
>>> [int(i) for i in (-scores).argsort()[:2]]
[0, 1]
>>> float(lexical_scores(index, "zebra", 3).max())
0.0
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import bm25s
import numpy as np
import Stemmer

_local = threading.local()  # PyStemmer's stemmers keep an unsynchronised cache: one per thread


def stemmer() -> Stemmer.Stemmer:
    if not hasattr(_local, "stemmer"):
        _local.stemmer = Stemmer.Stemmer("english")
    return _local.stemmer


def tokenize_query(text: str) -> list[str]:
    """The query's BM25 terms: lower-cased words, English stop words out, stemmed."""
    [tokens] = bm25s.tokenize([text], stopwords="en", stemmer=stemmer(), return_ids=False, show_progress=False)
    return tokens


def build_index(texts: Sequence[str]) -> bm25s.BM25:
    """A BM25 index of ``texts`` (document i is text i)."""
    tokens = bm25s.tokenize(list(texts), stopwords="en", stemmer=stemmer(), show_progress=False)
    index = bm25s.BM25()
    index.index(tokens, show_progress=False)
    return index


def lexical_scores(index: bm25s.BM25 | None, text: str, size: int) -> np.ndarray:
    """The BM25 score of each of the ``size`` documents for ``text`` (zeros when no term of it is indexed)."""
    tokens = [t for t in tokenize_query(text) if t in index.vocab_dict] if index is not None else []
    if index is None or not tokens:
        return np.zeros(size, np.float32)
    return np.asarray(index.get_scores(tokens), dtype=np.float32)
