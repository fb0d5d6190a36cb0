"""ASGI middleware (FastAPI, Starlette, any ASGI 3 app): one request per inference call.

Wraps the app; the status is read from the ``http.response.start`` message the
app sends. An exception before the response started is a backend error (the
server will answer 500); a cancelled task or an ``http.disconnect`` received by
the app is a cancellation. Non-HTTP scopes (lifespan, websocket) and paths that
name no model pass through untouched.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from exporters.instrument.core import ErrorReason, Outcome
from exporters.instrument.http import classify_status, model_from_path
from exporters.instrument.instruments import ModelInstruments

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _scope_model(scope: Scope) -> tuple[str, str | None] | None:
    return model_from_path(str(scope.get("path", "")))


class InstrumentMiddleware:
    """``app = InstrumentMiddleware(app, instruments)``."""

    def __init__(
        self,
        app: ASGIApp,
        instruments: ModelInstruments,
        model_of: Callable[[Scope], tuple[str, str | None] | None] = _scope_model,
    ) -> None:
        self.app = app
        self.instruments = instruments
        self.model_of = model_of

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        which = self.model_of(scope)
        rec = None if which is None else self.instruments.get(*which)
        if rec is None:
            await self.app(scope, receive, send)
            return

        status: int | None = None
        disconnected = False

        async def send_status(message: Message) -> None:
            nonlocal status
            if message.get("type") == "http.response.start":
                status = int(message["status"])
            await send(message)

        async def receive_disconnect() -> Message:
            nonlocal disconnected
            message = await receive()
            if message.get("type") == "http.disconnect":
                disconnected = True
            return message

        outcome: Outcome = Outcome.ERROR
        reason: ErrorReason | None = ErrorReason.OTHER
        rec.begin()
        started = rec.now()
        try:
            await self.app(scope, receive_disconnect, send_status)
            if status is not None:
                outcome, reason = classify_status(status)
            elif disconnected:
                outcome, reason = Outcome.CANCELLED, None
            else:
                # Returned without a response: the server answers 500.
                outcome, reason = Outcome.ERROR, ErrorReason.BACKEND
        except asyncio.CancelledError:
            outcome, reason = Outcome.CANCELLED, None
            raise
        except Exception:
            # Before the response started the server answers 500. After, the body
            # was cut short: a started 2xx is a backend failure, an error status
            # keeps its own meaning.
            if status is None:
                outcome, reason = Outcome.ERROR, ErrorReason.BACKEND
            else:
                outcome, reason = classify_status(status)
                if outcome is Outcome.OK:
                    outcome, reason = Outcome.ERROR, ErrorReason.BACKEND
            raise
        finally:
            rec.in_flight.dec()
            rec.observe(rec.now() - started, outcome, reason)
