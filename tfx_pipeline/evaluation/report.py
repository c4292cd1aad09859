"""Writes the evaluation for people: `report.md` and `confusion_matrix.png`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np


def draw_confusion_matrix(confusion: Sequence[Sequence[int]], class_names: Sequence[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")  # No display on servers and in CI.
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion, dtype=float)
    rows = matrix.sum(axis=1, keepdims=True)
    normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = max(5.0, 0.22 * len(class_names) + 3)
    figure, axes = plt.subplots(figsize=(size, size))
    image = axes.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    font = 9 if len(class_names) <= 12 else 5
    axes.set_xticks(ticks, labels=class_names, rotation=90, fontsize=font)
    axes.set_yticks(ticks, labels=class_names, fontsize=font)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title("Confusion matrix (row-normalised)")
    if len(class_names) <= 12:
        for i, j in np.ndindex(matrix.shape):
            axes.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=8,
                      color="white" if normalised[i, j] > 0.5 else "black")
    figure.colorbar(image, ax=axes, fraction=0.046)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _headline_lines(evaluation: Mapping[str, Any], keys: Sequence[str]) -> list[str]:
    """Title, verdict, and a candidate-vs-baseline table of `keys`."""
    candidate, baseline = evaluation["candidate"], evaluation.get("baseline")
    lines = [f"# Evaluation of model `{evaluation['model_name']}`", "",
             f"**{'BLESSED' if evaluation['blessed'] else 'NOT BLESSED'}**: {evaluation['reason']}", "",
             "| metric | candidate | baseline |", "|---|---|---|"]
    for key in keys:
        base = _fmt(baseline[key]) if baseline else "-"
        lines.append(f"| {key} | {_fmt(candidate[key])} | {base} |")
    if baseline:
        lines += ["", f"Baseline: version {evaluation['baseline_version']} at `{evaluation['baseline_path']}`."]
    return lines


def write_ranking_report(evaluation: Mapping[str, Any], keys: Sequence[str], path: Path) -> None:
    lines = _headline_lines(evaluation, keys)
    lines += ["", f"Each {evaluation['split']} query ranks its own candidate list (its relevant items and mined "
              f"negatives; {evaluation['candidates_per_query']} per query on average).", ""]
    path.write_text("\n".join(lines))


def write_report(evaluation: Mapping[str, Any], path: Path) -> None:
    candidate = evaluation["candidate"]
    lines = _headline_lines(evaluation, ("num_examples", "accuracy", "macro_f1", "expected_calibration_error"))
    lines += ["", "## Per class", "", "| class | precision | recall | f1 | support |", "|---|---|---|---|---|"]
    for name, m in candidate["per_class"].items():
        lines.append(f"| {name} | {m['precision']:.3f} | {m['recall']:.3f} | {m['f1']:.3f} | {m['support']} |")
    for column, values in candidate.get("slices", {}).items():
        lines += ["", f"## Slice: {column}", "", "| value | examples | accuracy | macro_f1 | ECE |",
                  "|---|---|---|---|---|"]
        for value, m in values.items():
            lines.append(f"| {value} | {m['num_examples']} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | "
                         f"{m['expected_calibration_error']:.3f} |")
    lines += ["", "## Confusion matrix", "", "![confusion matrix](confusion_matrix.png)", ""]
    path.write_text("\n".join(lines))


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
