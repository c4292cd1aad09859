"""The library call: a customer message in, a suggestion out.

Example::

    with CustomerService.from_config(load_config()) as service:
        suggestion = service.reply("Where is my new card?", Context(customer_name="Ana"))
        suggestion.decision.action      # 'answer'
        suggestion.reply                # 'Hi Ana, thanks for getting in touch. Cards usually ...'
        suggestion.to_dict()            # JSON-ready
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from apps.customer_service.classifier import IntentClassifier, IntentScore, RankedIntents
from apps.customer_service.config import AppConfig
from apps.customer_service.errors import ModelError, ModelUnavailable
from apps.customer_service.messages import Context, CustomerMessage, validate_text
from apps.customer_service.policy import ANSWER, Decision, decide
from apps.customer_service.templates import Catalog


@dataclass(frozen=True)
class Suggestion:
    """What the agent sees for one message."""

    message: str
    intent: IntentScore
    alternatives: tuple[IntentScore, ...]  # the next most probable intents
    decision: Decision
    reply: str | None  # None on hand-off: nothing to send to the customer
    model_version: int
    channel: str | None = None

    def to_dict(self) -> dict:
        return {
            "message": self.message,
            "intent": self.intent.intent,
            "confidence": round(self.intent.confidence, 4),
            "decision": self.decision.action,
            "reason": self.decision.reason,
            "reply": self.reply,
            "alternatives": [{"intent": a.intent, "confidence": round(a.confidence, 4)} for a in self.alternatives],
            "channel": self.channel,
            "model_version": self.model_version,
        }


class CustomerService:
    """Classifies messages on the model server and turns each into a suggestion."""

    def __init__(self, config: AppConfig, classifier: IntentClassifier, catalog: Catalog) -> None:
        self.config = config
        self.classifier = classifier
        self.catalog = catalog

    @classmethod
    def from_config(cls, config: AppConfig) -> CustomerService:
        return cls(config, IntentClassifier(config.server), Catalog.load(config.templates_path))

    def close(self) -> None:
        self.classifier.close()

    def __enter__(self) -> CustomerService:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def reply(self, message: str | bytes, context: Context | None = None) -> Suggestion:
        """One message; raises InvalidMessage, ModelUnavailable or ModelError."""
        text = validate_text(message, self.config.limits)
        [suggestion] = self.reply_many([CustomerMessage(text, context or Context())])
        return suggestion

    def reply_many(self, messages: Sequence[CustomerMessage]) -> list[Suggestion]:
        """Several messages, classified together in one Predict request per batch."""
        # Each message's previous customer message rides in the same request, for the repeat rule.
        texts = [m.text for m in messages]
        earlier_index: dict[int, int] = {}
        for i, message in enumerate(messages):
            if message.context.history:
                earlier_index[i] = len(texts)
                texts.append(message.context.history[-1])
        ranked = self.classifier.classify(texts)
        return [self._suggest(m, ranked[i], ranked[earlier_index[i]] if i in earlier_index else None)
                for i, m in enumerate(messages)]

    def _suggest(self, message: CustomerMessage, ranked: RankedIntents, earlier: RankedIntents | None) -> Suggestion:
        policy = self.config.policy
        top = ranked.top
        has_template = top.intent in self.catalog.intents
        decision = decide(ranked, policy, has_template=has_template, earlier=earlier)
        answered = decision.action == ANSWER
        reply = self.catalog.render(top.intent, message.context.template_values()) if answered else None
        return Suggestion(
            message=message.text,
            intent=top,
            alternatives=ranked.scores[1:1 + policy.top_k],
            decision=decision,
            reply=reply,
            model_version=ranked.model_version,
            channel=message.context.channel,
        )

    def missing_templates(self) -> list[str]:
        """Intents the served model can predict that the catalog has no reply for."""
        return self.catalog.missing(self.classifier.known_intents())

    def info(self) -> dict:
        """The policy in force, how it performed on its validation split, and whether it fits the served model.

        ``tuned_for_served_model`` is False when the server now serves another
        version than the one the threshold was tuned for (re-run tune-threshold),
        None when the server cannot be asked.
        """
        policy = self.config.policy
        try:
            served: int | None = self.classifier.probe().model_version
        except (ModelUnavailable, ModelError):
            served = None
        return {
            "model": self.config.server.model_name,
            "server": self.config.server.address,
            "threshold": policy.threshold,
            "target_precision": policy.target_precision,
            "coverage": policy.coverage,
            "precision": policy.precision,
            "tuned_on": policy.tuned_on,
            "tuned_model_version": policy.tuned_model_version,
            "served_model_version": served,
            "tuned_for_served_model": None if served is None else served == policy.tuned_model_version,
        }
