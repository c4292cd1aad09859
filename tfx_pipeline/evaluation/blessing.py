"""The blessing rule: thresholds are data (configuration), this is the logic."""

from __future__ import annotations

from typing import Any, Mapping, Optional

from tfx_pipeline.config import Thresholds


def decide(thresholds: Thresholds, candidate: Mapping[str, Any],
           baseline: Optional[Mapping[str, Any]]) -> tuple[bool, str]:
    """(blessed, reason). Bless only when the candidate clears the absolute floor
    and is not worse than the pushed baseline by more than the allowed change."""
    metric = thresholds.metric
    value = candidate[metric]
    if value < thresholds.lower_bound:
        return False, f"{metric} {value:.4f} is below the lower bound {thresholds.lower_bound:.4f}"
    if baseline is None:
        return True, f"{metric} {value:.4f} >= lower bound {thresholds.lower_bound:.4f}; no baseline model pushed yet"
    change = value - baseline[metric]
    if change < thresholds.min_change_vs_baseline:
        return False, (f"{metric} {value:.4f} vs baseline {baseline[metric]:.4f}: change {change:+.4f} is below "
                       f"the required {thresholds.min_change_vs_baseline:+.4f}")
    return True, (f"{metric} {value:.4f} vs baseline {baseline[metric]:.4f}: change {change:+.4f} >= "
                  f"{thresholds.min_change_vs_baseline:+.4f}")
