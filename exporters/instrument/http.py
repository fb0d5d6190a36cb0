"""What HTTP integrations share: which model a path names, and what a status code means.

Both are pure functions of bounded input. The path parser accepts the routes
of the common model-serving protocols; anything else is "not a model route"
and is not instrumented at all.
"""

from __future__ import annotations

import re

from exporters.instrument.core import ErrorReason, Outcome

# Our simulator:           /v1/models/{model}/infer
# KServe/TF Serving v1:    /v1/models/{model}:predict
# KServe/Triton v2 (OIP):  /v2/models/{model}[/versions/{version}]/infer
_ROUTE = re.compile(
    r"^/v[12]/models/(?P<model>[^/:]+)"
    r"(?:/versions/(?P<version>[^/]+))?"
    r"(?:/infer|/generate|/generate_stream|:predict)$"
)


def model_from_path(path: str) -> tuple[str, str | None] | None:
    """``(model, version or None)`` for an inference route, ``None`` for any other path."""
    m = _ROUTE.match(path)
    if m is None:
        return None
    return m["model"], m["version"]


def classify_status(status: int) -> tuple[Outcome, ErrorReason | None]:
    """An HTTP status as a bounded outcome and, for server-side failures, a reason."""
    if status < 400:
        return Outcome.OK, None
    if status in (429, 503):
        return Outcome.ERROR, ErrorReason.REJECTED
    if status in (408, 504):
        return Outcome.ERROR, ErrorReason.TIMEOUT
    if status == 499:  # nginx's "client closed request"
        return Outcome.CANCELLED, None
    if status < 500:
        return Outcome.INVALID, None
    if status in (500, 502):
        return Outcome.ERROR, ErrorReason.BACKEND
    return Outcome.ERROR, ErrorReason.OTHER
