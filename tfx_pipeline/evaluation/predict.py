"""Runs an exported SavedModel's `serving_default` on raw texts, in batches."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np


def load_saved_model(path: str | Path):
    import tensorflow as tf
    import tensorflow_text  # noqa: F401  Registers the tokenizer ops the graph uses.
    return tf.saved_model.load(str(path))


def predict_probabilities(model_path: str | Path, texts: Sequence[str], text_pairs: Optional[Sequence[str]] = None,
                          batch_size: int = 64) -> tuple[np.ndarray, list[str]]:
    """(probabilities [N, C], class names in column order)."""
    import tensorflow as tf
    signature = load_saved_model(model_path).signatures["serving_default"]
    chunks: list[np.ndarray] = []
    class_names: list[str] | None = None
    for start in range(0, len(texts), batch_size):
        inputs = {"text": tf.constant(list(texts[start:start + batch_size]))}
        if text_pairs is not None:
            inputs["text_pair"] = tf.constant(list(text_pairs[start:start + batch_size]))
        outputs = signature(**inputs)
        chunks.append(outputs["probabilities"].numpy())
        if class_names is None:
            class_names = [name.decode() for name in outputs["all_class_names"].numpy()[0]]
    if not chunks:
        return np.zeros((0, 0), dtype=np.float32), []
    assert class_names is not None  # Read from the first chunk.
    return np.concatenate(chunks), class_names


def align_columns(probabilities: np.ndarray, names: Sequence[str], target_names: Sequence[str]) -> np.ndarray:
    """Reorders probability columns into `target_names` order; classes the
    model does not know get probability 0."""
    index = {name: i for i, name in enumerate(names)}
    aligned = np.zeros((len(probabilities), len(target_names)), dtype=probabilities.dtype)
    for j, name in enumerate(target_names):
        if name in index:
            aligned[:, j] = probabilities[:, index[name]]
    return aligned


def text_embedder(model_path: str | Path, batch_size: int = 64) -> Callable[[Sequence[str]], np.ndarray]:
    """An exported embedder's `serving_default` as texts -> [N, D] vectors, called in batches."""
    import tensorflow as tf
    signature = load_saved_model(model_path).signatures["serving_default"]

    def embed(texts: Sequence[str]) -> np.ndarray:
        chunks = [signature(text=tf.constant(list(texts[i:i + batch_size])))["embedding"].numpy()
                  for i in range(0, len(texts), batch_size)]
        return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros((0, 0), np.float32)

    return embed
