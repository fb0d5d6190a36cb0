"""Endpoint plumbing: the one wrapper every route runs through, and its request context.

The wrapper authenticates, checks the route's permission, validates
parameters and body, maps scheduler errors to status codes, counts the
request and writes its audit record. Denied requests are audited like any
other. Handlers see a ``Ctx`` and fill in what their audit record says.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import PayloadEncodingError
from aiohttp.web_protocol import RequestPayloadError

from scheduler.audit import AuditEntry, AuditQueryError, AuditUnavailable
from scheduler.core.errors import (
    ActuatorError,
    Conflict,
    InvalidRequest,
    SchedulerError,
    StoreUnavailable,
    UnknownJob,
    UnknownPool,
)
from scheduler.service.audit_writer import AuditWriter
from scheduler.service.auth import Authenticator, Principal
from scheduler.service.config import ServiceConfig
from scheduler.service.denials import Denials
from scheduler.service.errors import IntentStoreUnavailable, PayloadError
from scheduler.service.metrics import ServiceMetrics
from scheduler.service.payload import load_json
from scheduler.service.ratelimit import RateLimiter
from scheduler.service.records import ALERTMANAGER_ROLE, ANONYMOUS
from scheduler.service.routes import Route
from scheduler.service.validation import coerce_query, validate

log = logging.getLogger("novabrain.scheduler.service")


class HttpError(Exception):
    def __init__(self, status: int, error: str, reason: str = "") -> None:
        super().__init__(f"{status} {error}: {reason}")
        self.status = status
        self.error = error
        self.reason = reason


# A request reaches the scheduler only once it matches its schema; what the scheduler then
# finds invalid is so for this cluster or job as they stand (more GPUs than the pool may
# ever hold, a checkpoint time outside the job's run): a conflict, not a malformed request.
_SCHEDULER_STATUS: tuple[tuple[type[SchedulerError], int], ...] = (
    (UnknownPool, 404),
    (UnknownJob, 404),
    (InvalidRequest, 409),
    (Conflict, 409),
    (StoreUnavailable, 503),
    (ActuatorError, 503),
)


@dataclass
class Ctx:
    """What one request accumulates for its audit record (mutable, request-local)."""

    route: Route
    received: float
    source_ip: str
    correlation_id: str
    principal: Principal | None = None
    args: dict[str, Any] = field(default_factory=dict)
    body: Any = None
    params: dict[str, Any] = field(default_factory=dict)
    result: str = "ok"
    reason: str = ""
    extra: list[AuditEntry] = field(default_factory=list)
    webhook_result: str = ""
    audited: bool = False  # its record is written already (the webhook writes its own)
    # A reported action's record names that action, not the request (audit.record).
    operation: str = ""
    object: str = ""

    @property
    def user(self) -> str:
        return self.principal.name if self.principal else ANONYMOUS


Handler = Callable[[web.Request, Ctx], Awaitable[web.StreamResponse]]
Endpoint = Callable[[web.Request], Awaitable[web.StreamResponse]]


def jsonable(x: Any) -> Any:
    """Runtime views (dataclasses with ``to_dict``, enums, tuples) as plain JSON values."""
    to_dict = getattr(x, "to_dict", None)
    if callable(to_dict):
        return jsonable(to_dict())
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return jsonable(dataclasses.asdict(x))
    if isinstance(x, enum.Enum):
        return x.value
    if isinstance(x, Mapping):
        return {str(k): jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple | set | frozenset):
        return [jsonable(v) for v in x]
    return x


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(jsonable(data), separators=(",", ":")),
        content_type="application/json",
    )


def webhook_result(status: int) -> str:
    return {
        400: "invalid",
        401: "unauthorized",
        403: "forbidden",
        413: "too_large",
        429: "rate_limited",
        503: "unavailable",
    }.get(status, "error" if status >= 400 else "accepted")


async def read_body(request: web.Request) -> bytes:
    """The request body; one that cannot be read as sent (a broken ``Content-Encoding``,
    a truncated chunk) is the sender's to fix: ``PayloadError``, answered 400."""
    try:
        return await request.read()
    except (RequestPayloadError, PayloadEncodingError) as e:
        raise PayloadError(f"body cannot be read: {e}") from None


class Endpoints:
    """Builds the aiohttp handler of each route around its ``Handler``."""

    def __init__(
        self,
        *,
        auth: Authenticator,
        audit: AuditWriter,
        metrics: ServiceMetrics,
        clock: Callable[[], float],
        config: ServiceConfig,
    ) -> None:
        self.auth = auth
        self.audit = audit
        self.metrics = metrics
        self.clock = clock
        self.config = config
        self.webhook_callers = RateLimiter(config.webhook_rate, time.monotonic)
        self.api_callers = RateLimiter(config.api_rate, time.monotonic)
        self.anonymous = RateLimiter(config.anonymous_rate, time.monotonic)
        self.denials = Denials(clock, window_seconds=config.denial_window_seconds)
        # Request ids: unique per process start (random prefix) and cheap per request
        # (a uuid4 per request costs a urandom call on the hot path).
        self._boot = uuid.uuid4().hex[:12]
        self._request_seq = itertools.count(1)

    def endpoint(self, route: Route, handler: Handler) -> Endpoint:
        async def run(request: web.Request) -> web.StreamResponse:
            ctx = Ctx(
                route=route,
                received=self.clock(),
                source_ip=request.remote or "",
                correlation_id=f"req-{self._boot}-{next(self._request_seq)}",
            )
            try:
                try:
                    resp = await self._guarded(request, ctx, handler)
                except HttpError:
                    raise
                except Exception as e:
                    # A bug, not a request error: logged with its traceback, answered
                    # and audited like any other failure.
                    log.exception("unhandled error in %s", route.name)
                    raise HttpError(500, "internal error", type(e).__name__) from None
            except HttpError as e:
                denied = e.status in (401, 403, 429) or ctx.webhook_result == "throttled"
                ctx.result = "denied" if denied else "error"
                ctx.reason = f"{e.status} {e.error}" + (f": {e.reason}" if e.reason else "")
                resp = json_response({"error": e.error, "reason": e.reason}, e.status)
                if e.status == 401:
                    resp.headers["WWW-Authenticate"] = 'Bearer realm="novabrain"'
                if e.status in (429, 503):
                    resp.headers["Retry-After"] = "1"
            if ctx.route.audited and not ctx.audited:
                resp = await self._audit_request(ctx, resp)
            if route.name == "alerts.receive":
                self.metrics.notifications.labels(
                    ctx.webhook_result or webhook_result(resp.status)
                ).inc()
            self.metrics.requests.labels(route.path, route.method, str(resp.status)).inc()
            return resp

        return run

    async def _guarded(self, request: web.Request, ctx: Ctx, handler: Handler) -> web.StreamResponse:  # fmt: skip
        route = ctx.route
        try:
            if route.permission is not None:
                ctx.principal = self.auth.authenticate(request.headers.get("Authorization"))
                self._rate_limit(ctx)
                if ctx.principal is None:
                    raise HttpError(401, "unauthorized", "missing or unknown token")
                if not ctx.principal.may(route.permission):
                    raise HttpError(
                        403,
                        "forbidden",
                        f"role {ctx.principal.role} lacks permission {route.permission.value}",
                    )
            for p in route.params:
                raw = (
                    request.match_info.get(p.name)
                    if p.where == "path"
                    else request.query.get(p.name)
                )
                if raw is not None:
                    ctx.args[p.name] = coerce_query(raw, p.schema, p.name)
            ctx.params = dict(ctx.args)
            if route.body is not None and route.name != "alerts.receive":
                ctx.body = load_json(await read_body(request))
                validate(ctx.body, route.body)
                ctx.params["body"] = ctx.body
            return await handler(request, ctx)
        except PayloadError as e:
            raise HttpError(400, "invalid request", str(e)) from None
        except AuditQueryError as e:
            raise HttpError(400, "invalid request", str(e)) from None
        except web.HTTPRequestEntityTooLarge:
            raise HttpError(
                413, "payload too large", f"limit is {self.config.max_body_bytes} bytes"
            ) from None
        except (IntentStoreUnavailable, AuditUnavailable) as e:
            log.warning("storage unavailable: %s", e)
            raise HttpError(503, "storage unavailable", "retry later") from None
        except SchedulerError as e:
            for cls, status in _SCHEDULER_STATUS:
                if isinstance(e, cls):
                    raise HttpError(status, type(e).__name__, str(e)) from None
            raise HttpError(409, type(e).__name__, str(e)) from None

    def _rate_limit(self, ctx: Ctx) -> None:
        """After authentication: each caller spends only its own bucket.

        Requests without valid credentials share small per-source buckets of their own,
        so that a flood from Alertmanager's address (same host, NAT, ingress) cannot hold
        its alerts out. Alertmanager over its limit gets a 503 with Retry-After, which it
        retries; it never retries a 4xx, so it never gets a 429.
        """
        p = ctx.principal
        if p is None:
            if not self.anonymous.allow(ctx.source_ip):
                ctx.webhook_result = "rate_limited"
                raise HttpError(429, "rate limited", f"too many requests from {ctx.source_ip}")
            return
        webhook = ctx.route.name == "alerts.receive"
        limiter = self.webhook_callers if webhook else self.api_callers
        if limiter.allow(p.name):
            return
        rate = limiter.limit.rate
        if p.role == ALERTMANAGER_ROLE:
            ctx.webhook_result = "throttled"
            raise HttpError(503, "over the rate limit", f"over {rate:g}/s for {p.name}: retry")
        ctx.webhook_result = "rate_limited"
        raise HttpError(429, "rate limited", f"over {rate:g}/s for {p.name}")

    async def _audit_request(self, ctx: Ctx, resp: web.StreamResponse) -> web.StreamResponse:
        route = ctx.route
        obj = ctx.object or route.path
        for k, v in ctx.args.items():
            obj = obj.replace("{" + k + "}", str(v))
        entry = AuditEntry(
            user=ctx.user,
            source_ip=ctx.source_ip,
            object=obj,
            operation=ctx.operation or route.name,
            result=ctx.result,
            reason=ctx.reason or f"{resp.status}",
            params=ctx.params,
            correlation_id=ctx.correlation_id,
        )
        if ctx.result == "denied":
            admitted = self.denials.admit(entry, resp.status)
            if admitted is None:
                return resp  # counted: written with its group when the window ends
            entry = admitted
        try:
            await self.audit.write([entry, *ctx.extra])
        except AuditUnavailable:
            if resp.status < 400 or resp.status == 413:
                failed = json_response({"error": "storage unavailable", "reason": "audit log"}, 503)
                failed.headers["Retry-After"] = "1"
                # The held-back record must say what the caller was actually answered.
                answered = dataclasses.replace(
                    entry, result="error", reason="503 storage unavailable: audit log"
                )
                self.audit.replace_held(entry, answered)
                return failed
        return resp
