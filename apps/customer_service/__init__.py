"""Support-desk app: classify a customer's message on the model server, suggest a reply or hand off.

Library use::

    from apps.customer_service import Context, CustomerService, load_config

    with CustomerService.from_config(load_config()) as service:
        suggestion = service.reply("I lost my card", Context(customer_name="Ana"))
        print(suggestion.decision.action, suggestion.reply)

Also a CLI (``python -m apps.customer_service --help``), an HTTP JSON
endpoint and an agent web page (``serve``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from apps.customer_service.config import AppConfig, load_config
from apps.customer_service.errors import AppError, InvalidMessage, ModelError, ModelUnavailable
from apps.customer_service.messages import Context, CustomerMessage

if TYPE_CHECKING:
    from apps.customer_service.service import CustomerService, Suggestion

__all__ = ["AppConfig", "AppError", "Context", "CustomerMessage", "CustomerService", "InvalidMessage",
           "ModelError", "ModelUnavailable", "Suggestion", "load_config"]

# Loaded on first use: the service brings the gRPC client and TensorFlow's protos, which
# `python -m apps.customer_service --help` (this package is imported first) does not need.
_LAZY = {"CustomerService": "apps.customer_service.service", "Suggestion": "apps.customer_service.service"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
