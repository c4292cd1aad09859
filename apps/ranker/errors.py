"""The ranker's errors, each carrying the HTTP status it maps to and a stable code.

A ranking never silently comes from fewer stages than configured: when the
model server is down the caller gets :class:`ModelUnavailable`, unless
degraded mode is switched on, and then the response says ``degraded: true``.

Example::

    try:
        ranker.rank(RankRequest(text=""))
    except InvalidRequest as exc:
        exc.status, exc.to_dict()    # (422, {'error': 'empty_context', 'message': '...'})
"""

from __future__ import annotations

from apps.http_json import HttpError


class RankerError(HttpError):
    """Base of the ranker's errors: ``status`` is the HTTP status, ``problem`` a stable code; ``to_dict()`` the
    JSON error body."""


class InvalidRequest(RankerError):
    """The request is wrong (no context, bad filter, bad K, malformed JSON): the caller must fix it."""

    status = 422
    problem = "invalid_request"


class EmptyIndex(RankerError):
    """There is no catalog to rank: nothing was ingested into the index (or everything was removed)."""

    status = 409
    problem = "empty_index"


class IngestError(RankerError):
    """A catalog file cannot be read (missing, malformed line, duplicate field types)."""

    status = 400
    problem = "invalid_catalog"


class ModelUnavailable(RankerError):
    """The model server cannot be reached or did not answer within the deadline; retry later."""

    status = 503
    problem = "model_unavailable"


class ModelError(RankerError):
    """The model server answered with an error, or with outputs this app cannot use."""

    status = 502
    problem = "model_error"


class ModelTimeout(ModelUnavailable):
    """The model server did not answer within the call's deadline (DEADLINE_EXCEEDED)."""


class ModelNotServed(ModelError):
    """The model server serves no version of the model (NOT_FOUND): for the re-ranker, none was blessed and
    pushed yet, and the app answers from hybrid retrieval alone."""

    problem = "model_not_served"
