"""The catalog of suggested replies and how a reply is filled in.

A template holds ``{name}`` placeholders and optional ``[[ ... ]]``
segments.  Facts (bank-specific values in the catalog) are always present;
context values (the customer's name, the channel) may be missing, so they
may only appear inside an optional segment, which is dropped when any of its
placeholders has no value.  That way a reply never shows a raw placeholder.

Example::

    catalog = Catalog.load(Path("apps/customer_service/templates.yaml"))
    catalog.render("card_arrival", {"customer_name": "Ana"})
    # 'Hi Ana, thanks for getting in touch. Cards usually arrive within ...'
    catalog.render("card_arrival", {})
    # 'Hi, thanks for getting in touch. Cards usually arrive within ...'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

# The values a conversation may supply; everything else comes from the facts.
CONTEXT_FIELDS = ("customer_name", "channel")

_OPTIONAL = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class TemplateError(ValueError):
    """The catalog is malformed or lacks a template."""


def _placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def _check_template(key: str, text: str, facts: Mapping[str, str]) -> None:
    """Every placeholder is known, and context placeholders sit inside [[ ]]."""
    unknown = _placeholders(text) - set(facts) - set(CONTEXT_FIELDS)
    if unknown:
        raise TemplateError(f"template {key!r} uses unknown placeholder(s) {sorted(unknown)}; "
                            f"known are the facts {sorted(facts)} and context {list(CONTEXT_FIELDS)}")
    outside = _placeholders(_OPTIONAL.sub("", text)) & set(CONTEXT_FIELDS)
    if outside:
        raise TemplateError(f"template {key!r} uses context placeholder(s) {sorted(outside)} outside [[ ... ]]; "
                            "they may be missing, so wrap them in an optional segment")
    if "{" in _PLACEHOLDER.sub("", text) or "}" in _PLACEHOLDER.sub("", text):
        raise TemplateError(f"template {key!r} has a stray brace or a placeholder that is not {{lower_case}}")


def fill(text: str, values: Mapping[str, str]) -> str:
    """``text`` with optional segments kept or dropped, then placeholders filled.

    >>> fill("Hi[[ {customer_name}]],", {"customer_name": "Ana"})
    'Hi Ana,'
    >>> fill("Hi[[ {customer_name}]],", {})
    'Hi,'
    """

    def segment(match: re.Match) -> str:
        inner = match.group(1)
        return inner if all(values.get(name) for name in _placeholders(inner)) else ""

    # One pass each: a value holding "{x}" or "[[" is inserted literally, never expanded.
    kept = _OPTIONAL.sub(segment, text)
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], kept)


@dataclass(frozen=True)
class Catalog:
    """Reply templates by intent, plus the greeting and closing around each."""

    intents: Mapping[str, str]
    facts: Mapping[str, str]
    greeting: str = ""
    closing: str = ""

    def __post_init__(self) -> None:
        for key, text in [("greeting", self.greeting), ("closing", self.closing), *self.intents.items()]:
            _check_template(key, text, self.facts)

    @classmethod
    def load(cls, path: Path) -> Catalog:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TemplateError(f"template catalog not found: {path}") from None
        if not isinstance(data, dict) or not isinstance(data.get("intents"), dict):
            raise TemplateError(f"template catalog {path} must have an 'intents' mapping")
        empty = sorted(k for k, v in data["intents"].items() if not isinstance(v, str) or not v.strip())
        if empty:
            raise TemplateError(f"template catalog {path}: empty template(s) for {empty}")
        return cls(
            intents={str(k): " ".join(v.split()) for k, v in data["intents"].items()},
            facts={str(k): str(v) for k, v in (data.get("facts") or {}).items()},
            greeting=data.get("greeting", ""),
            closing=data.get("closing", ""),
        )

    def missing(self, intents: Iterable[str]) -> list[str]:
        """The intents of ``intents`` that have no template."""
        return sorted(set(intents) - set(self.intents))

    def render(self, intent: str, context: Mapping[str, str | None]) -> str:
        """The full reply for ``intent``; context values that are empty count as missing."""
        if intent not in self.intents:
            raise TemplateError(f"no reply template for intent {intent!r}")
        values = {**self.facts, **{k: v.strip() for k, v in context.items() if k in CONTEXT_FIELDS and v and v.strip()}}
        parts = (self.greeting, self.intents[intent], self.closing)
        return " ".join(filled for filled in (fill(p, values).strip() for p in parts) if filled)
