"""aiohttp: one request recorded per inference call, from the route and the status.

Two ways to attach the same recording:

* ``instrument_middleware(instruments)``: every route of the app; inference
  routes are recorded, others (``/metrics``, ``/healthz``) pass through;
* ``instrument_handler(instruments)``: a decorator for the hot routes' handlers
  only. It records exactly what the middleware records, but an app without
  middlewares skips aiohttp's middleware chain altogether (the lookup and the
  extra call aiohttp makes per request once any middleware is installed; see
  ``benchmarks/bench_model_exporter.py`` for what each costs).

The model comes from the matched route (``{model}`` and optional ``{version}``
in the route pattern) or, failing that, from the path (``model_from_path``). A
model the stack does not declare is served as usual but only counted in the
unlabelled unknown-requests counter.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from exporters.instrument.core import ErrorReason, Outcome
from exporters.instrument.http import classify_status, model_from_path
from exporters.instrument.instruments import ModelInstruments

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route_model(request: web.Request) -> tuple[str, str | None] | None:
    info = request.match_info
    model = info.get("model")
    if model is not None:
        return model, info.get("version")
    return model_from_path(request.path)


def _classify_raised(e: BaseException) -> tuple[Outcome, ErrorReason | None]:
    if isinstance(e, web.HTTPException):
        # aiohttp answers these as responses: a 404 is the client's, a 503 ours.
        return classify_status(e.status)
    if isinstance(e, asyncio.CancelledError):
        # aiohttp cancels the handler when the client disconnects (if configured to).
        return Outcome.CANCELLED, None
    if isinstance(e, Exception):
        return Outcome.ERROR, ErrorReason.BACKEND
    return Outcome.ERROR, ErrorReason.OTHER


ModelOf = Callable[[web.Request], tuple[str, str | None] | None]


def _observer(instruments: ModelInstruments, model_of: ModelOf) -> Middleware:
    """``observe(request, handler)``: serve ``request`` with ``handler``, recorded as one request
    of the model it names. The middleware is this function; the decorator calls it with its handler.

    A request that ends well costs a clock reading and an append to its recorder's
    journal (``exporters.instrument.inprocess``): every call here is measurable
    on a trivial handler (``benchmarks/bench_model_exporter.py``)."""
    clock = instruments.clock
    get = instruments.get

    async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
        which = model_of(request)
        rec = None if which is None else get(*which)
        if rec is None:
            return await handler(request)
        rec.begin()
        started = clock()
        try:
            response = await handler(request)
        except BaseException as e:
            rec.in_flight.dec()
            rec.observe(clock() - started, *_classify_raised(e))
            raise
        status = response.status
        # The common case first, without building an outcome tuple.
        if status < 400:
            rec.finish_ok(clock() - started)
        else:
            rec.in_flight.dec()
            rec.observe(clock() - started, *classify_status(status))
        return response

    return observe


def instrument_middleware(
    instruments: ModelInstruments, model_of: ModelOf = _route_model
) -> Middleware:
    """A middleware for ``web.Application(middlewares=[...])``."""
    return web.middleware(_observer(instruments, model_of))


def instrument_handler(
    instruments: ModelInstruments, model_of: ModelOf = _route_model
) -> Callable[[Handler], Handler]:
    """Decorate an inference handler: ``app.router.add_post(path, instrument_handler(ins)(infer))``."""
    observe = _observer(instruments, model_of)

    def decorate(handler: Handler) -> Handler:
        # A closure, not functools.partial(observe, handler=...): the partial builds a
        # keyword dictionary on every call, which costs a request more than this frame.
        @functools.wraps(handler)
        async def instrumented(request: web.Request) -> web.StreamResponse:
            return await observe(request, handler)

        return instrumented

    return decorate
