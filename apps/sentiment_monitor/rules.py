"""The alert rules, as pure functions of a window's figures.

Each rule returns a :class:`RuleHit` (severity and the figures behind it) or
``None``.  Which windows are looked at, de-duplication and the cooldown are
the monitor's business (:mod:`apps.sentiment_monitor.monitor`).

- ``negative_share``: the negative share of a window is above a threshold,
  with at least ``min_items`` items in it.
- ``baseline_shift``: the window's mean score is ``z_threshold`` standard
  errors below the entity's own baseline (the ``baseline_seconds`` before the
  window): z = (mean_window - mean_baseline) / (std_baseline / sqrt(n_window)).
- ``strong_negative``: one item from a high-priority source with
  P(negative) at or above ``min_negative_probability``.

Example:

>>> from apps.sentiment_monitor.config import NegativeShareRule
>>> from apps.sentiment_monitor.windows import Figures
>>> negative_share(NegativeShareRule(threshold=0.6, min_items=3), Figures(4, 3, 1, 0, -2.5, 2.0))
RuleHit(rule='negative_share', severity='warning', figures={'negative_share': 0.75, 'threshold': 0.6, 'count': 4})
>>> negative_share(NegativeShareRule(threshold=0.6, min_items=5), Figures(4, 4, 0, 0, -3.6, 3.3)) is None
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from apps.sentiment_monitor.config import BaselineShiftRule, NegativeShareRule, StrongNegativeRule
from apps.sentiment_monitor.items import Score
from apps.sentiment_monitor.windows import Figures

NEGATIVE_SHARE = "negative_share"
BASELINE_SHIFT = "baseline_shift"
STRONG_NEGATIVE = "strong_negative"
SEVERITY_ORDER = {"info": 0, "warning": 1, "critical": 2}


@dataclass(frozen=True)
class RuleHit:
    rule: str
    severity: str
    figures: dict = field(default_factory=dict)


def negative_share(rule: NegativeShareRule, window: Figures) -> RuleHit | None:
    if not rule.enabled or window.count < rule.min_items or window.negative_share <= rule.threshold:
        return None
    severity = "critical" if window.negative_share >= rule.critical_share else rule.severity
    return RuleHit(NEGATIVE_SHARE, severity, {"negative_share": round(window.negative_share, 4),
                                              "threshold": rule.threshold, "count": window.count})


def baseline_z(window: Figures, baseline: Figures, min_std: float) -> float:
    """How many standard errors the window's mean lies from the baseline's (negative: worse)."""
    std = max(baseline.std, min_std)
    return (window.mean - baseline.mean) / (std / math.sqrt(window.count))


def baseline_shift(rule: BaselineShiftRule, window: Figures, baseline: Figures) -> RuleHit | None:
    """
    >>> steady = Figures(40, 4, 16, 20, 16.0, 12.0)        # mean 0.4
    >>> baseline_shift(BaselineShiftRule(), Figures(6, 5, 1, 0, -4.5, 3.7), steady).figures["z"]
    -7.53
    """
    if not rule.enabled or window.count < rule.min_items or baseline.count < rule.min_baseline_items:
        return None
    z = baseline_z(window, baseline, rule.min_baseline_std)
    if z > -rule.z_threshold:
        return None
    severity = "critical" if z <= -rule.critical_z else rule.severity
    return RuleHit(BASELINE_SHIFT, severity, {
        "z": round(z, 2), "z_threshold": rule.z_threshold, "count": window.count,
        "mean_score": round(window.mean, 4), "baseline_mean_score": round(baseline.mean, 4),
        "baseline_std": round(baseline.std, 4), "baseline_count": baseline.count})


def strong_negative(rule: StrongNegativeRule, score: Score, source: str) -> RuleHit | None:
    """
    >>> strong_negative(StrongNegativeRule(), Score("negative", 0.95, 0.03, 0.02), "wire").severity
    'critical'
    >>> strong_negative(StrongNegativeRule(), Score("negative", 0.95, 0.03, 0.02), "forum") is None
    True
    """
    if not rule.enabled or source not in rule.sources or score.negative < rule.min_negative_probability:
        return None
    return RuleHit(STRONG_NEGATIVE, rule.severity, {"negative_probability": round(score.negative, 4),
                                                    "threshold": rule.min_negative_probability, "source": source})
