"""Answer or hand off: the decision for one classified message.

Example::

    decide(ranked, PolicyConfig(threshold=0.6), has_template=True)
    # Decision(action='handoff', reason='confidence 0.41 for card_arrival is below the threshold 0.60')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from apps.customer_service.classifier import RankedIntents
from apps.customer_service.config import PolicyConfig

ANSWER: Literal["answer"] = "answer"
HANDOFF: Literal["handoff"] = "handoff"


@dataclass(frozen=True)
class Decision:
    action: Literal["answer", "handoff"]
    reason: str


def decide(ranked: RankedIntents, policy: PolicyConfig, *, has_template: bool,
           earlier: RankedIntents | None = None) -> Decision:
    """The first rule that applies wins: confidence, template, repeated question, else answer.

    ``earlier`` is the ranking of the customer's previous message, if any: the
    same confident intent twice means the suggested reply did not help.
    """
    top = ranked.top
    if top.confidence < policy.threshold:
        return Decision(HANDOFF, f"confidence {top.confidence:.2f} for {top.intent} is below the threshold "
                                 f"{policy.threshold:.2f}{_precision_note(policy)}")
    if not has_template:
        return Decision(HANDOFF, f"no reply template for intent {top.intent}")
    if earlier is not None and earlier.top.intent == top.intent and earlier.top.confidence >= policy.threshold:
        return Decision(HANDOFF, f"the customer asked about {top.intent} again; the earlier reply did not resolve it")
    note = f" (threshold {policy.threshold:.2f}{_precision_note(policy)})"
    return Decision(ANSWER, f"confidence {top.confidence:.2f} for {top.intent} is at or above the threshold{note}")


def _precision_note(policy: PolicyConfig) -> str:
    if policy.tuned_on is None:
        return ", not tuned yet"
    return f", tuned for {policy.target_precision:.0%} precision"
