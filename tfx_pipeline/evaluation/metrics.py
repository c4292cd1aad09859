"""Classification metrics from labels and predicted probabilities (NumPy).

Example:

>>> import numpy as np
>>> m = classification_metrics(np.array([0, 1, 1]), np.array([[.9, .1], [.2, .8], [.6, .4]]), ["a", "b"])
>>> round(m["accuracy"], 3), m["confusion_matrix"]
(0.667, [[1, 0], [1, 1]])
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

# Word-count buckets for the built-in `text_length` slice.
TEXT_LENGTH_BUCKETS = ((1, 5), (6, 10), (11, 20), (21, 40), (41, 10**9))


def classification_metrics(labels: np.ndarray, probabilities: np.ndarray, class_names: Sequence[str],
                           calibration_bins: int = 10) -> dict[str, Any]:
    num_classes = len(class_names)
    predictions = probabilities.argmax(axis=1)
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(confusion, (labels, predictions), 1)
    true_positives = np.diag(confusion).astype(float)
    predicted = confusion.sum(axis=0).astype(float)
    support = confusion.sum(axis=1).astype(float)
    precision = np.divide(true_positives, predicted, out=np.zeros(num_classes), where=predicted > 0)
    recall = np.divide(true_positives, support, out=np.zeros(num_classes), where=support > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(num_classes),
                   where=precision + recall > 0)
    present = support > 0  # Macro averages over classes that occur in the data.
    return {
        "num_examples": int(len(labels)),
        "accuracy": float((predictions == labels).mean()) if len(labels) else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "expected_calibration_error": expected_calibration_error(labels, probabilities, calibration_bins),
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                   "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "confusion_matrix": confusion.tolist(),
    }


def expected_calibration_error(labels: np.ndarray, probabilities: np.ndarray, bins: int = 10) -> float:
    """Mean |accuracy - confidence| over equal-width confidence bins, weighted by size."""
    if not len(labels):
        return 0.0
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    bin_ids = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = bin_ids == b
        if members.any():
            error += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(error)


def text_length_bucket(text: str) -> str:
    words = len(text.split())
    for low, high in TEXT_LENGTH_BUCKETS:
        if low <= words <= high:
            return f"{low}+ words" if high >= 10**9 else f"{low}-{high} words"
    return "empty"


def sliced_metrics(slices: Mapping[str, Sequence[str]], labels: np.ndarray, probabilities: np.ndarray,
                   class_names: Sequence[str]) -> dict[str, dict[str, dict[str, Any]]]:
    """{slice column: {slice value: headline metrics}}."""
    result: dict[str, dict[str, dict[str, Any]]] = {}
    for column, column_values in slices.items():
        values = np.asarray(column_values, dtype=object)
        result[column] = {}
        for value in sorted(set(values), key=str):
            members = values == value
            metrics = classification_metrics(labels[members], probabilities[members], class_names)
            result[column][str(value)] = {key: metrics[key] for key in
                                          ("num_examples", "accuracy", "macro_f1", "expected_calibration_error")}
    return result
