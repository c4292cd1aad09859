"""The app's errors, each carrying the HTTP status it maps to.

An error never carries a made-up reply: callers get either a suggestion that
came from the model or one of these.

Example::

    try:
        service.reply("")
    except InvalidMessage as exc:
        exc.status, exc.problem    # (422, 'empty_message')
"""

from __future__ import annotations

from apps.http_json import HttpError
from serving import model_errors


class AppError(HttpError):
    """Base of the app's errors: ``status`` is the HTTP status, ``problem`` a stable code; ``to_dict()`` the
    JSON error body."""


class InvalidMessage(AppError):
    """The request is wrong (empty, too long, undecodable, malformed): the caller must fix it."""

    status = 422
    problem = "invalid_message"

    def __init__(self, message: str, *, problem: str, status: int = 422) -> None:
        super().__init__(message, problem=problem, status=status)


class ModelUnavailable(AppError, model_errors.ModelUnavailable):
    """The model server cannot be reached or did not answer within the deadline; retry later."""

    status = 503
    problem = "model_unavailable"


class ModelError(AppError, model_errors.ModelError):
    """The model server answered with an error, or with outputs this app cannot use."""

    status = 502
    problem = "model_error"
