"""Tunes the hand-off threshold for a target precision of the answered messages.

The validation split is the pipeline's own eval split (same hash of the
text, :func:`suite_core.splits.split_of`), so the model never
trained on it.  The threshold is the lowest confidence that keeps the
precision of everything at or above it at the target: the most messages
answered at that precision.

Example::

    rows = validation_rows(Path("../shared/data/banking77/train.csv"))
    run = tune(classifier, rows, target_precision=0.95)
    run.result.threshold, run.result.coverage, run.result.precision    # (0.71, 0.83, 0.951)
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from apps.customer_service.config import PolicyConfig
from suite_core.splits import HashSplit, split_of

if TYPE_CHECKING:  # The classifier loads the gRPC client and TensorFlow's protos: not for `--help`.
    from apps.customer_service.classifier import IntentClassifier

REPO = Path(__file__).resolve().parents[2]
# The pipeline's split: 90 % train, 10 % eval; the eval rows are the validation split.
TRAIN_PERCENT, EVAL_PERCENT = 90, 10
ALL_ANSWERED_MARGIN = 1e-4  # below the lowest confidence when every validation message is answered


def default_data_path() -> Path:
    """Banking77 in the shared data (``SUITE_SHARED_DATA``, default ``<repo>/../shared/data``)."""
    shared = Path(os.environ.get("SUITE_SHARED_DATA", REPO.parent / "shared" / "data"))
    return shared / "banking77" / "train.csv"


@dataclass(frozen=True)
class LabelledText:
    text: str
    intent: str


def validation_rows(path: Path, split: str = "eval") -> list[LabelledText]:
    """The rows of a ``text,category`` CSV that fall in ``split`` of the pipeline's 90/10 split."""
    split_config = HashSplit(train=TRAIN_PERCENT, eval=EVAL_PERCENT)
    try:
        # surrogateescape: one undecodable row is skipped below instead of failing the whole file.
        with open(path, newline="", encoding="utf-8", errors="surrogateescape") as handle:
            reader = csv.DictReader(handle)
            if not {"text", "category"} <= set(reader.fieldnames or ()):
                raise ValueError(f"{path} must have columns text,category; it has {reader.fieldnames}")
            rows = [LabelledText(r["text"].strip(), r["category"]) for r in reader if _usable(r)
                    and split_of({"text": r["text"]}, split_config) == split]
    except FileNotFoundError:
        raise FileNotFoundError(f"validation data not found: {path} (set --data or SUITE_SHARED_DATA)") from None
    if not rows:
        raise ValueError(f"{path} has no usable rows in the {split!r} split")
    return rows


def _usable(row: dict) -> bool:
    """A row with text and a label, both valid UTF-8, and no extra fields."""
    text, label = row.get("text"), row.get("category")
    if None in row or not text or not text.strip() or not label:
        return False
    try:
        (text + label).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class TuningResult:
    threshold: float
    coverage: float  # share of validation messages answered
    precision: float  # share of answered messages whose intent was right
    accuracy: float  # of the top intent on all validation messages
    target_precision: float
    reached: bool  # False: even the most confident message alone misses the target
    messages: int

    def policy(self, base: PolicyConfig, tuned_on: str, model_version: int) -> PolicyConfig:
        return PolicyConfig(threshold=self.threshold, target_precision=self.target_precision,
                            coverage=round(self.coverage, 4), precision=round(self.precision, 4),
                            tuned_on=tuned_on, tuned_model_version=model_version, top_k=base.top_k)


def choose_threshold(confidences: Sequence[float], correct: Sequence[bool], target_precision: float) -> TuningResult:
    """The threshold answering the most messages with precision >= ``target_precision``.

    It sits halfway between the last answered and the first handed-off
    confidence (just below the lowest, when all are answered), so float noise
    between runs does not flip a validation message across it.

    >>> r = choose_threshold([0.9, 0.8, 0.7, 0.6], [True, True, False, True], 0.75)
    >>> round(r.threshold, 4), r.coverage, r.precision
    (0.5999, 1.0, 0.75)
    >>> round(choose_threshold([0.9, 0.8, 0.7, 0.6], [True, True, False, True], 0.9).threshold, 4)
    0.75
    """
    if len(confidences) != len(correct) or not confidences:
        raise ValueError("need one correctness flag per confidence, and at least one")
    pairs = sorted(zip(confidences, correct), key=lambda p: -p[0])
    best_k, hits = 0, 0
    for k, (confidence, is_correct) in enumerate(pairs, start=1):
        hits += is_correct
        # Cut only between distinct confidences: a threshold answers all ties or none.
        tie_follows = k < len(pairs) and pairs[k][0] == confidence
        if not tie_follows and hits / k >= target_precision:
            best_k = k
    total = len(pairs)
    accuracy = sum(correct) / total
    if best_k == 0:
        return TuningResult(1.0, 0.0, 0.0, accuracy, target_precision, False, total)
    lowest_answered = pairs[best_k - 1][0]
    if best_k < total:
        threshold = (lowest_answered + pairs[best_k][0]) / 2
    else:
        threshold = max(0.0, lowest_answered - ALL_ANSWERED_MARGIN)
    return TuningResult(
        threshold=float(threshold),
        coverage=best_k / total,
        precision=sum(c for _, c in pairs[:best_k]) / best_k,
        accuracy=accuracy,
        target_precision=target_precision,
        reached=True,
        messages=total,
    )


@dataclass(frozen=True)
class TuningRun:
    result: TuningResult
    model_version: int
    skipped: int  # validation rows whose label the served model does not know


def tune(classifier: IntentClassifier, rows: Sequence[LabelledText], target_precision: float) -> TuningRun:
    """Classifies ``rows`` on the served model and chooses the threshold.

    Rows labelled with an intent the model cannot predict are left out: they
    were not in its training data either (the pipeline drops unknown labels).
    """
    known = set(classifier.known_intents())
    usable = [row for row in rows if row.intent in known]
    if not usable:
        raise ValueError(f"none of the {len(rows)} validation rows has an intent the served model knows")
    ranked = classifier.classify([row.text for row in usable])
    confidences = [r.top.confidence for r in ranked]
    correct = [r.top.intent == row.intent for r, row in zip(ranked, usable)]
    return TuningRun(choose_threshold(confidences, correct, target_precision), ranked[0].model_version,
                     len(rows) - len(usable))
