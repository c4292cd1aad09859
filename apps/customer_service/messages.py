"""Customer messages and their context, validated before anything is sent.

Every check names the field and the problem, so the agent (or the chat front
end) can fix the request.

Example::

    limits = LimitsConfig(max_message_chars=200)
    message = CustomerMessage.parse({"message": "Where is my card?",
                                     "context": {"customer_name": "Ana"}}, limits)
    message.text, message.context.customer_name     # ('Where is my card?', 'Ana')
    validate_text(b"\\xff", limits)                  # raises InvalidMessage('undecodable_bytes')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from apps.customer_service.config import LimitsConfig
from apps.customer_service.errors import InvalidMessage

MAX_CONTEXT_VALUE_CHARS = 100  # a name or channel longer than this is not one


def _decode(raw: str | bytes, name: str) -> str:
    if isinstance(raw, bytes):
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidMessage(
                f"{name} is not valid UTF-8: byte 0x{raw[exc.start]:02x} at position {exc.start} cannot be decoded",
                problem="undecodable_bytes", status=400) from None
    if not isinstance(raw, str):
        raise InvalidMessage(f"{name} must be a string, got {type(raw).__name__}", problem="invalid_field", status=400)
    try:
        raw.encode("utf-8")  # JSON may carry lone surrogates ("\ud800") that no encoder accepts
    except UnicodeEncodeError as exc:
        raise InvalidMessage(f"{name} holds an unpaired surrogate at position {exc.start}; it is not valid text",
                             problem="undecodable_bytes", status=400) from None
    return raw


def validate_text(raw: str | bytes, limits: LimitsConfig, name: str = "message") -> str:
    """The message as stripped text, or :class:`InvalidMessage` naming what is wrong."""
    text = _decode(raw, name).strip()
    if not text:
        raise InvalidMessage(f"{name} is empty or only whitespace; send the customer's words",
                             problem="empty_message")
    if len(text) > limits.max_message_chars:
        raise InvalidMessage(
            f"{name} is {len(text)} characters long; the limit is {limits.max_message_chars}",
            problem="message_too_long", status=413)
    return text


def _optional_value(values: Mapping[str, Any], key: str) -> str | None:
    value = values.get(key)
    if value is None:
        return None
    text = _decode(value, f"context.{key}").strip()
    if len(text) > MAX_CONTEXT_VALUE_CHARS:
        raise InvalidMessage(f"context.{key} is {len(text)} characters long; the limit is {MAX_CONTEXT_VALUE_CHARS}",
                             problem="invalid_field", status=400)
    return text or None


@dataclass(frozen=True)
class Context:
    """What the conversation knows besides the message; every field is optional."""

    customer_name: str | None = None
    channel: str | None = None  # e.g. "chat", "email"; echoed back, for the front end's routing
    history: tuple[str, ...] = ()  # earlier customer messages, oldest first

    @classmethod
    def parse(cls, values: Any, limits: LimitsConfig) -> Context:
        if values is None:
            return cls()
        if not isinstance(values, Mapping):
            raise InvalidMessage(f"context must be an object, got {type(values).__name__}",
                                 problem="invalid_field", status=400)
        unknown = sorted(set(values) - {"customer_name", "channel", "history"})
        if unknown:
            raise InvalidMessage(f"context has unknown field(s) {unknown}; known: customer_name, channel, history",
                                 problem="invalid_field", status=400)
        history = values.get("history") or []
        if not isinstance(history, (list, tuple)):
            raise InvalidMessage("context.history must be a list of earlier messages",
                                 problem="invalid_field", status=400)
        if len(history) > limits.max_history_messages:
            raise InvalidMessage(f"context.history has {len(history)} messages; the limit is "
                                 f"{limits.max_history_messages}", problem="invalid_field", status=400)
        texts = tuple(_decode(item, f"context.history[{i}]").strip() for i, item in enumerate(history))
        return cls(
            customer_name=_optional_value(values, "customer_name"),
            channel=_optional_value(values, "channel"),
            history=tuple(text for text in texts if text),
        )

    def template_values(self) -> dict[str, str | None]:
        return {"customer_name": self.customer_name, "channel": self.channel}


@dataclass(frozen=True)
class CustomerMessage:
    """One validated message to classify and answer."""

    text: str
    context: Context = field(default_factory=Context)

    @classmethod
    def parse(cls, values: Any, limits: LimitsConfig) -> CustomerMessage:
        """From a JSON object ``{"message": ..., "context": {...}}``."""
        if not isinstance(values, Mapping):
            raise InvalidMessage(f"each request must be an object with a 'message', got {type(values).__name__}",
                                 problem="invalid_field", status=400)
        if "message" not in values:
            raise InvalidMessage("the request has no 'message' field", problem="missing_message", status=400)
        unknown = sorted(set(values) - {"message", "context"})
        if unknown:
            raise InvalidMessage(f"unknown field(s) {unknown}; known: message, context",
                                 problem="invalid_field", status=400)
        return cls(validate_text(values["message"], limits), Context.parse(values.get("context"), limits))
