"""A variant against its teacher: quality on the same rows, speed on this
machine, cost per 1M predictions, and the push decision (thresholds are data).

Example of the rule alone:

>>> from tfx_pipeline.config import CompressionThresholds
>>> rule = CompressionThresholds(max_accuracy_drop=0.005, min_speedup_batch_1=2.0, min_speedup_served_batch=1.5)
>>> decide(rule, {"accuracy_drop": 0.002, "speedup_batch_1": 2.4, "speedup_served_batch": 1.7})[0]
True
>>> decide(rule, {"accuracy_drop": 0.02, "speedup_batch_1": 2.4, "speedup_served_batch": 1.7})
(False, 'accuracy drop 0.0200 vs teacher is above the allowed 0.0050')
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from tfx_pipeline.config import CompressionThresholds

QUALITY = ("accuracy", "macro_f1", "expected_calibration_error")


def decide(thresholds: CompressionThresholds, comparison: Mapping[str, float | None]) -> tuple[bool, str]:
    """(push, reason): every rule must hold; the reason names the first that fails, or all that hold."""
    drop = comparison["accuracy_drop"]
    speedup_1, speedup_served = comparison["speedup_batch_1"], comparison["speedup_served_batch"]
    if drop is None:
        raise ValueError("comparison without an accuracy drop")
    if drop > thresholds.max_accuracy_drop:
        return False, f"accuracy drop {drop:.4f} vs teacher is above the allowed {thresholds.max_accuracy_drop:.4f}"
    if speedup_1 is None or speedup_served is None:
        return False, "not timed"
    if speedup_1 < thresholds.min_speedup_batch_1:
        return False, (f"speed-up at batch 1 {speedup_1:.2f}x is below the required "
                       f"{thresholds.min_speedup_batch_1:.2f}x")
    if speedup_served < thresholds.min_speedup_served_batch:
        return False, (f"speed-up at the served batch size {speedup_served:.2f}x is below the required "
                       f"{thresholds.min_speedup_served_batch:.2f}x")
    return True, (f"accuracy drop {drop:.4f} <= {thresholds.max_accuracy_drop:.4f}, speed-up {speedup_1:.2f}x "
                  f"at batch 1 and {speedup_served:.2f}x at the served batch size")


def write_variant_report(evaluation: Mapping[str, Any], path: Path) -> None:
    """`report.md`: teacher and variant side by side."""
    teacher, variant = evaluation["teacher"], evaluation["variant"]
    served = str(evaluation["served_batch_size"])
    rows = [(key, teacher[key], variant[key]) for key in QUALITY] + [("size (MiB)", teacher["size_mib"],
                                                                      variant["size_mib"])]
    if "examples_per_second" in variant:
        rows += [
            ("examples/s per core, batch 1", teacher["examples_per_second"]["1"], variant["examples_per_second"]["1"]),
            (f"examples/s per core, batch {served}", teacher["examples_per_second"][served],
             variant["examples_per_second"][served]),
            ("latency p50 / p99 at batch 1 (ms)", "{p50} / {p99}".format(**teacher["latency_ms_batch_1"]),
             "{p50} / {p99}".format(**variant["latency_ms_batch_1"])),
            (f"cost per 1M predictions (batch {served}, ${evaluation['price_per_core_hour']}/core-hour)",
             teacher["cost_per_million"], variant["cost_per_million"]),
            ("cost per 1M predictions (batch 1)", teacher["cost_per_million_batch_1"],
             variant["cost_per_million_batch_1"]),
            ("peak memory (MiB)", teacher["peak_memory_mib"], variant["peak_memory_mib"])]
    lines = [f"# Variant `{evaluation['variant_name']}` (served as `{evaluation['model_name']}`) vs its teacher", "",
             f"**{'PUSH' if evaluation['blessed'] else 'NOT PUSHED'}**: {evaluation['reason']}", "",
             f"Agreement with the teacher: {evaluation['comparison']['agreement']:.4f} of "
             f"{evaluation['num_examples']} {evaluation['split']} rows.", "",
             "| | teacher | variant |", "|---|---|---|"]
    lines += [f"| {name} | {_fmt(a)} | {_fmt(b)} |" for name, a, b in rows]
    lines += ["", "Throughput: one thread (one core) each, teacher and variant taking turns, best round kept; "
              "not timed when the accuracy rule already fails."]
    path.write_text("\n".join(lines) + "\n")


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)
