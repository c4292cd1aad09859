"""Asks the model server which intent each message is, over the TF Serving gRPC API.

All messages of a call go to the server in as few Predict requests as the
batch limit allows (one, for up to ``max_batch_size`` messages), through the
suite's model client (:mod:`serving.model_client`).  Its errors become the app's:
not answered (UNAVAILABLE after the client's retries, DEADLINE_EXCEEDED,
RESOURCE_EXHAUSTED) is :class:`ModelUnavailable` (retry later), anything else
is :class:`ModelError`.

Example::

    with IntentClassifier(ServerConfig(address="127.0.0.1:8500")) as classifier:
        [ranked] = classifier.classify(["I lost my card"])
        ranked.top.intent, ranked.top.confidence      # ('lost_or_stolen_card', 0.97)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from apps.customer_service.config import ServerConfig
from apps.customer_service.errors import ModelError, ModelUnavailable
from serving.client import ServingClient
from serving.model_client import ModelCallError, ModelClient
from serving.model_client import ModelUnavailable as NotAnswered

_OUTPUTS = ("probabilities", "all_class_names")


@dataclass(frozen=True)
class IntentScore:
    intent: str
    confidence: float


@dataclass(frozen=True)
class RankedIntents:
    """Every intent of one message, most probable first, and the model version that ranked them."""

    scores: tuple[IntentScore, ...]
    model_version: int

    @property
    def top(self) -> IntentScore:
        return self.scores[0]


def _decode(value: object) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def rank(probabilities: np.ndarray, class_names: np.ndarray, model_version: int) -> list[RankedIntents]:
    """Rows of ``probabilities`` [N, C] with their ``class_names`` [N, C], ranked."""
    if probabilities.ndim != 2 or probabilities.shape != class_names.shape:
        raise ModelError(f"the model returned probabilities of shape {probabilities.shape} and class names of shape "
                         f"{class_names.shape}; expected two equal [messages, classes] shapes")
    ranked = []
    for row, names in zip(probabilities, class_names):
        order = np.argsort(-row, kind="stable")
        scores = tuple(IntentScore(_decode(names[i]), float(row[i])) for i in order)
        ranked.append(RankedIntents(scores, model_version))
    return ranked


class IntentClassifier:
    """One gRPC channel to the model server; safe to share between threads."""

    def __init__(self, server: ServerConfig, client: ServingClient | None = None) -> None:
        self.server = server
        self.models = ModelClient(server.address, deadline_seconds=server.deadline_seconds,
                                  max_attempts=server.max_attempts, signature=server.signature,
                                  max_rows_per_call=server.max_batch_size, client=client)
        self.client = self.models.client

    def close(self) -> None:
        self.models.close()

    def __enter__(self) -> IntentClassifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def classify(self, texts: Sequence[str]) -> list[RankedIntents]:
        """Ranked intents per text, in order; one Predict request per ``max_batch_size`` texts."""
        return self._predict(list(texts)) if texts else []

    def known_intents(self) -> list[str]:
        """Every intent the served model can predict (its class names)."""
        return sorted(score.intent for score in self.probe().scores)

    def probe(self) -> RankedIntents:
        """One small request: the served version and its class names, and a check that the server answers."""
        [ranked] = self._predict(["hello"])
        return ranked

    def _predict(self, texts: list[str]) -> list[RankedIntents]:
        try:
            answer = self.models.predict(self.server.model_name, texts, _OUTPUTS, input_name=self.server.input_name)
        except NotAnswered as exc:
            raise ModelUnavailable(str(exc)) from None
        except ModelCallError as exc:  # Refused, not served, or outputs the app cannot use.
            raise ModelError(str(exc)) from None
        return rank(answer.outputs["probabilities"], answer.outputs["all_class_names"], answer.version)
