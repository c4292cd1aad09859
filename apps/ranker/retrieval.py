"""Stage-1 pieces without I/O: metadata filters, top-k under a mask, and rank fusion.

Fusion (``retrieval.fusion``: ``rrf``, the default, or ``score`` with
``score_weight_lexical``) is ``suite_core.fusion``'s, described there: the
ranking evaluation fuses with the same code.

Example:

>>> matches({"category": "kitchen", "price": 40, "in_stock": True},
...         compile_filters({"category": "kitchen", "price": {"max": 100}, "in_stock": True}))
True
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from apps.ranker.errors import InvalidRequest
from suite_core.fusion import fuse, rerank_head, top_k  # the app's and the evaluation's fusion: one implementation

__all__ = ["compile_filters", "fuse", "matches", "rerank_head", "top_k"]

Condition = Callable[[Any], bool]
_RANGE_OPERATORS = {"min": lambda v, b: v >= b, "max": lambda v, b: v <= b,
                    "gt": lambda v, b: v > b, "lt": lambda v, b: v < b}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _same(a: Any, b: Any) -> bool:
    """Equality that does not take True for 1 or "1" for 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_number(a) and _is_number(b):
        return a == b
    return type(a) is type(b) and a == b


def _condition(field: str, spec: Any) -> Condition:
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - set(_RANGE_OPERATORS))
        if unknown or not spec:
            raise InvalidRequest(f"filter {field!r}: a range takes {sorted(_RANGE_OPERATORS)}, got {sorted(spec)}",
                                 problem="invalid_filter")
        bounds = []
        for operator, bound in spec.items():
            if not (_is_number(bound) or isinstance(bound, str)):
                raise InvalidRequest(f"filter {field!r}: {operator} must be a number or a string, got {bound!r}",
                                     problem="invalid_filter")
            bounds.append((_RANGE_OPERATORS[operator], bound))

        def in_range(value: Any) -> bool:
            for compare, bound in bounds:
                comparable = (_is_number(value) and _is_number(bound)) or (
                    isinstance(value, str) and isinstance(bound, str))
                if not comparable or not compare(value, bound):
                    return False
            return True
        return in_range
    if isinstance(spec, list):
        if not spec or not all(isinstance(v, (str, int, float, bool)) for v in spec):
            raise InvalidRequest(f"filter {field!r}: a list means 'one of' and needs scalar values",
                                 problem="invalid_filter")
        return lambda value: any(_same(value, v) for v in spec)
    if isinstance(spec, (str, int, float, bool)):
        return lambda value: _same(value, spec)
    raise InvalidRequest(f"filter {field!r}: expected a value, a list of values or a range "
                         f"{{\"min\": .., \"max\": ..}}, got {spec!r}", problem="invalid_filter")


def compile_filters(filters: Mapping[str, Any] | None) -> dict[str, Condition]:
    """``{"field": value | [values] | {"min"/"max"/"gt"/"lt": bound}}`` -> one test per field."""
    if filters is None:
        return {}
    if not isinstance(filters, Mapping):
        raise InvalidRequest(f"filters must be an object, got {filters!r}", problem="invalid_filter")
    return {str(field): _condition(str(field), spec) for field, spec in filters.items()}


def matches(metadata: Mapping[str, Any], conditions: Mapping[str, Condition]) -> bool:
    """Every condition holds; an item without the field does not match."""
    return all(field in metadata and test(metadata[field]) for field, test in conditions.items())
