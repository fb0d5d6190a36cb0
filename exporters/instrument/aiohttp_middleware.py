"""aiohttp middleware: one request recorded per inference call, from the route and the status.

The model comes from the matched route (``{model}`` and optional ``{version}``
in the route pattern) or, failing that, from the path (``model_from_path``);
other routes (``/metrics``, ``/healthz``) pass through unrecorded. A model the
stack does not declare is served as usual but only counted in the unlabelled
unknown-requests counter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from exporters.instrument.core import ErrorReason, ModelInstruments, Outcome
from exporters.instrument.http import classify_status, model_from_path

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route_model(request: web.Request) -> tuple[str, str | None] | None:
    info = request.match_info
    model = info.get("model")
    if model is not None:
        return model, info.get("version")
    return model_from_path(request.path)


def instrument_middleware(
    instruments: ModelInstruments,
    model_of: Callable[[web.Request], tuple[str, str | None] | None] = _route_model,
) -> Middleware:
    """A middleware for ``web.Application(middlewares=[...])``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        which = model_of(request)
        if which is None:
            return await handler(request)
        rec = instruments.get(*which)
        if rec is None:
            return await handler(request)
        outcome: Outcome = Outcome.ERROR
        reason: ErrorReason | None = ErrorReason.OTHER
        rec.in_flight.inc()
        started = rec.now()
        try:
            response = await handler(request)
            outcome, reason = classify_status(response.status)
            return response
        except web.HTTPException as e:
            # aiohttp answers these as responses: a 404 is the client's, a 503 ours.
            outcome, reason = classify_status(e.status)
            raise
        except asyncio.CancelledError:
            # aiohttp cancels the handler when the client disconnects.
            outcome, reason = Outcome.CANCELLED, None
            raise
        except Exception:
            outcome, reason = Outcome.ERROR, ErrorReason.BACKEND
            raise
        finally:
            rec.in_flight.dec()
            rec.observe(rec.now() - started, outcome, reason)

    return middleware
