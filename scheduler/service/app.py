"""The scheduler's HTTP rim: Alertmanager webhook, REST API, /metrics and /healthz (aiohttp).

Every endpoint comes from ``routes.ROUTES`` and runs through one wrapper that
authenticates, checks the route's permission, validates parameters and body,
maps scheduler errors to status codes, counts the request and writes its audit
record. Denied requests are audited like any other.

The webhook persists each new alert state in the durable intent queue (one
fsynced statement, on a group-commit thread), hands it to the intent worker
(``worker.py``, its own thread), writes the request's audit records and
answers. The worker calls the scheduler runtime in order. An intent a crash
left pending is resolved at startup against the runtime's decisions (by
correlation id), so an action runs once even when the process dies in the
middle of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import functools
import gc
import itertools
import json
import logging
import signal
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from deploy.stack import Stack
from exporters.catalog.service import (
    ALERT_TO_ACTION,
    API_REQUESTS,
    AUDIT_RECORDS,
    WEBHOOK_INTENTS_PENDING,
    WEBHOOK_NOTIFICATIONS,
)
from exporters.exposition import metrics_response
from scheduler.audit import (
    AuditEntry,
    AuditError,
    AuditLog,
    AuditQueryError,
    AuditUnavailable,
    iter_export,
    verify,
)
from scheduler.core.errors import (
    ActuatorError,
    Conflict,
    InvalidRequest,
    SchedulerError,
    StoreUnavailable,
    UnknownJob,
    UnknownPool,
)
from scheduler.core.model import Decision, JobKind, JobRequest
from scheduler.service.auth import Authenticator, Principal
from scheduler.service.batch import GroupCommit
from scheduler.service.errors import IntentStoreUnavailable, PayloadError
from scheduler.service.intents import IntentQueue
from scheduler.service.payload import Intent, actionable_pairs, intent_for, parse_notification
from scheduler.service.ratelimit import RateLimit, RateLimiter
from scheduler.service.records import ALERTMANAGER_USER, ANONYMOUS, SCHEDULER_USER, decision_entry
from scheduler.service.routes import ALERTS_PATH, ROUTES, Route, coerce_query, openapi, validate
from scheduler.service.worker import IntentWorker

log = logging.getLogger("novabrain.scheduler.service")
R = TypeVar("R")

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
AUDIT_BACKLOG_MAX = 10_000
WORKER_STOP_SECONDS = 10.0
# Small, frequent checkpoints: each fsyncs the database file, and the disk makes the
# commits' own fsyncs wait behind it, so the fewer pages per checkpoint the shorter the
# stall. Measured at 1,000 alerts/s, alert -> actuator p99: 1 s -> ~25 ms,
# 0.2 s -> 10-17 ms, 0.05 s -> 5-7 ms.
CHECKPOINT_INTERVAL_SECONDS = 0.05
DEFAULT_WEBHOOK_RATE = RateLimit(rate=100.0, burst=200.0)


class Runtime(Protocol):
    """What the service needs from ``scheduler.runtime.SchedulerRuntime``."""

    def on_alert(
        self, *, pool: str, action: str, firing: bool, correlation_id: str
    ) -> list[Decision]: ...
    def tick(self) -> list[Decision]: ...
    def checkpoint(self) -> None: ...
    def pools(self) -> Any: ...
    def jobs(self, pool: str | None = None, state: str | None = None) -> Any: ...
    def queues(self) -> Any: ...
    def decisions(self, limit: int = 100) -> Any: ...
    def reservations(self) -> Any: ...
    def submit_job(self, req: JobRequest, *, correlation_id: str = "") -> Any: ...
    def cancel_job(self, job_id: str, *, correlation_id: str = "") -> list[Decision]: ...
    def report_checkpoint(self, job_id: str, at: float | None = None) -> None: ...
    def ack_preemption(self, job_id: str) -> list[Decision]: ...
    def manual_rebalance(self, pool: str, gpus: int, correlation_id: str) -> list[Decision]: ...
    def manual_scale(self, pool: str, delta_nodes: int, correlation_id: str) -> list[Decision]: ...
    def set_policy(self, **fields: Any) -> list[Decision]: ...
    def policy(self) -> Any: ...


@dataclass(frozen=True)
class ServiceConfig:
    max_body_bytes: int = 1 << 20
    # Per source address. Alertmanager sends a handful per group interval;
    # anything near this is a loop or an attack.
    webhook_rate: RateLimit = DEFAULT_WEBHOOK_RATE
    tick_interval_seconds: float = 0.5
    maintenance_interval_seconds: float = 3600.0
    # Far beyond Alertmanager's repeat_interval: a pruned key that is replayed acts again.
    intent_key_retention_seconds: float = 30 * 86400.0
    # None keeps every record in the live log; otherwise older ones move to the archive.
    audit_retention_seconds: float | None = None
    busy_timeout_seconds: float = 5.0
    retry_backoff_seconds: float = 0.5


class HttpError(Exception):
    def __init__(self, status: int, error: str, reason: str = "") -> None:
        super().__init__(f"{status} {error}: {reason}")
        self.status = status
        self.error = error
        self.reason = reason


_SCHEDULER_STATUS: tuple[tuple[type[SchedulerError], int], ...] = (
    (UnknownPool, 404),
    (UnknownJob, 404),
    (InvalidRequest, 400),
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


Handler = Callable[[web.Request, Ctx], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Arrival:
    """One notification on its way to the intent queue: its intents, and what its
    audit record says of the request."""

    intents: list[Intent]
    received_at: float
    user: str
    source_ip: str
    request_id: str
    summary: dict[str, Any]  # group key, receiver, status


@dataclass(frozen=True)
class Recorded:
    """What the queue made of an ``Arrival``: the new intents (row id, intent), the
    request's audit parameters, and whether its audit records are written (if not,
    the request writes them itself, and answers 503 if that fails too)."""

    new: list[tuple[int, Intent]]
    params: dict[str, Any]
    audited: bool
    alert_entries: list[AuditEntry]


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


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        status=status,
        text=json.dumps(jsonable(data), separators=(",", ":")),
        content_type="application/json",
    )


class Service:
    def __init__(
        self,
        stack: Stack,
        runtime: Runtime,
        *,
        audit_path: Path,
        intents_path: Path,
        registry: CollectorRegistry,
        clock: Callable[[], float],
        config: ServiceConfig,
    ) -> None:
        self.stack = stack
        self.rt = runtime
        self.clock = clock
        self.config = config
        self.auth = Authenticator(stack.users)
        self.allowed = actionable_pairs(stack)
        archive = None
        if config.audit_retention_seconds is not None:
            archive = audit_path.with_name(audit_path.stem + "-archive" + audit_path.suffix)
        self.audit = AuditLog(
            audit_path,
            clock=clock,
            retention_seconds=config.audit_retention_seconds,
            archive_path=archive,
            busy_timeout=config.busy_timeout_seconds,
        )
        self.intents = IntentQueue(intents_path, busy_timeout=config.busy_timeout_seconds)
        self.intent_commit = GroupCommit(self._record, name="intents")
        self.audit_commit = GroupCommit(self._append_batches, name="audit")
        self.limiter = RateLimiter(config.webhook_rate, time.monotonic)
        self._limited: set[str] = set()
        # Request ids: unique per process start (random prefix) and cheap per request
        # (a uuid4 per request costs a urandom call on the hot path).
        self._boot = uuid.uuid4().hex[:12]
        self._request_seq = itertools.count(1)
        self._backlog: list[AuditEntry] = []
        self._rt_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtime")
        self._checkpoint_stop = threading.Event()
        self._checkpoint_thread = threading.Thread(
            target=self._checkpoints, name="wal-checkpoint", daemon=True
        )
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self.m_notifications = Counter(
            WEBHOOK_NOTIFICATIONS.name,
            WEBHOOK_NOTIFICATIONS.help,
            WEBHOOK_NOTIFICATIONS.labels,
            registry=registry,
        )
        self.m_latency = Histogram(
            ALERT_TO_ACTION.name,
            ALERT_TO_ACTION.help,
            ALERT_TO_ACTION.labels,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.m_requests = Counter(
            API_REQUESTS.name, API_REQUESTS.help, API_REQUESTS.labels, registry=registry
        )
        self.m_pending = Gauge(
            WEBHOOK_INTENTS_PENDING.name, WEBHOOK_INTENTS_PENDING.help, registry=registry
        )
        self.m_audit = Counter(
            AUDIT_RECORDS.name, AUDIT_RECORDS.help, AUDIT_RECORDS.labels, registry=registry
        )
        self.registry = registry
        self.worker = IntentWorker(
            runtime,
            self.intents,
            self.audit,
            clock=clock,
            latency=self.m_latency,
            pending=self.m_pending,
            audit_records=self.m_audit,
            retry_backoff_seconds=config.retry_backoff_seconds,
        )

    # ------------------------------------------------------------------ runtime calls

    async def call(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """Run a runtime method on the runtime thread.

        The runtime blocks: every decision is fsynced to its SQLite store before
        it is actuated, and a production actuator calls the Kubernetes API. On
        one dedicated thread those waits never stall the event loop (the
        webhook keeps answering), and runtime calls stay strictly one at a time.
        """
        return await asyncio.get_running_loop().run_in_executor(
            self._rt_thread, functools.partial(fn, *args, **kwargs)
        )

    # ------------------------------------------------------------------ audit

    def _record(self, arrivals: list[Arrival]) -> list[Recorded]:
        """On the group-commit thread: persist the intents, hand the new ones to the worker,
        and audit the requests and each new alert.

        One trip to this thread per batch of requests, and one audit transaction.
        The worker gets the intents from here as soon as they are durable, not
        through the event loop (busy answering), and acts at once; it writes its
        own audit records only after these alerts' ``alert.queued`` records
        (``audited_upto``), so the audit log never shows an alert acted on before
        it was received. If the audit log fails, the intents still go ahead (they
        are durable) and each request writes its records itself (answering 503 if
        that fails too).
        """
        recorded = self.intents.record_many([(a.intents, a.received_at) for a in arrivals])
        for a, new in zip(arrivals, recorded, strict=True):
            self.worker.submit(new, a.received_at)
        out = []
        for a, new in zip(arrivals, recorded, strict=True):
            queued = sum(1 for _, i in new if i.action)
            params = {
                **a.summary,
                "alerts": len(a.intents),
                "queued": queued,
                "ignored": len(new) - queued,
                "duplicates": len(a.intents) - len(new),
                # The request's own id is per delivery; these link it to what the alerts cause.
                "correlation_ids": [i.correlation_id for _, i in new],
            }
            alert_entries = [
                AuditEntry(
                    user=a.user,
                    source_ip=a.source_ip,
                    object=f"pool/{i.pool}" if i.pool else "alert",
                    operation="alert.queued" if i.action else "alert.ignored",
                    result="queued" if i.action else "ignored",
                    reason=i.reason,
                    params={"alert": i.alert, "action": i.action, "firing": i.firing, "key": i.key},
                    correlation_id=i.correlation_id,
                )
                for _, i in new
            ]
            out.append(Recorded(new, params, False, alert_entries))
        entries = []
        for a, r in zip(arrivals, out, strict=True):
            # The record the endpoint wrapper would write for a 200, written here instead.
            request = AuditEntry(
                a.user, a.source_ip, ALERTS_PATH, "alerts.receive", "ok", "200", r.params,
                a.request_id,
            )  # fmt: skip
            entries += [request, *r.alert_entries]
        try:
            self.audit.append_many(entries)
        except AuditUnavailable as e:
            log.error("audit log unavailable for %d request(s): %s", len(arrivals), e)
        else:
            self.m_audit.labels("written").inc(len(entries))
            out = [dataclasses.replace(r, audited=True) for r in out]
        finally:
            # Written, or handed back to the requests: either way the worker need not wait.
            self.worker.audited_upto(max((i for new in recorded for i, _ in new), default=0))
        return out

    def _append_batches(self, batches: list[list[AuditEntry]]) -> list[None]:
        self.audit.append_many([e for b in batches for e in b])
        return [None] * len(batches)

    async def write_audit(self, entries: list[AuditEntry]) -> None:
        """Append, retrying what failed before first; raise ``AuditUnavailable`` if not written."""
        batch, self._backlog = self._backlog + entries, []
        try:
            await self.audit_commit.submit(batch)
        except AuditUnavailable:
            self._backlog = (batch + self._backlog)[-AUDIT_BACKLOG_MAX:]
            self.m_audit.labels("failed").inc(len(entries))
            raise
        self.m_audit.labels("written").inc(len(batch))

    async def write_audit_quietly(self, entries: list[AuditEntry]) -> None:
        """For background work: a failed write stays in the backlog for the next attempt."""
        try:
            await self.write_audit(entries)
        except AuditUnavailable as e:
            log.error("audit log unavailable, %d record(s) kept for retry: %s", len(entries), e)

    # ------------------------------------------------------------------ endpoint wrapper

    def endpoint(self, route: Route, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:  # fmt: skip
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
                ctx.result = "denied" if e.status in (401, 403, 429) else "error"
                ctx.reason = f"{e.status} {e.error}" + (f": {e.reason}" if e.reason else "")
                resp = _json({"error": e.error, "reason": e.reason}, e.status)
                if e.status == 401:
                    resp.headers["WWW-Authenticate"] = 'Bearer realm="novabrain"'
                if e.status in (429, 503):
                    resp.headers["Retry-After"] = "1"
            if ctx.route.audited and not ctx.audited:
                resp = await self._audit_request(ctx, resp)
            if route.name == "alerts.receive":
                self.m_notifications.labels(
                    ctx.webhook_result or _webhook_result(resp.status)
                ).inc()
            self.m_requests.labels(route.path, route.method, str(resp.status)).inc()
            return resp

        return run

    async def _guarded(self, request: web.Request, ctx: Ctx, handler: Handler) -> web.StreamResponse:  # fmt: skip
        route = ctx.route
        try:
            if route.name == "alerts.receive":
                self._rate_limit(ctx)
            if route.permission is not None:
                ctx.principal = self.auth.authenticate(request.headers.get("Authorization"))
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
                ctx.body = await self._json_body(request)
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
        source = ctx.source_ip
        if self.limiter.allow(source):
            self._limited.discard(source)
            return
        ctx.webhook_result = "rate_limited"
        if source in self._limited:
            # One record per episode: a flood must not turn into a flood of fsyncs.
            ctx.route = dataclasses.replace(ctx.route, audited=False)
        self._limited.add(source)
        raise HttpError(
            429, "rate limited", f"over {self.config.webhook_rate.rate:g}/s from {source}"
        )

    async def _json_body(self, request: web.Request) -> Any:
        raw = await request.read()
        try:
            return json.loads(raw)
        except (UnicodeDecodeError, ValueError) as e:
            raise PayloadError(f"body is not JSON: {e}") from None

    async def _audit_request(self, ctx: Ctx, resp: web.StreamResponse) -> web.StreamResponse:
        route = ctx.route
        user = ctx.principal.name if ctx.principal else ANONYMOUS
        obj = route.path
        for k, v in ctx.args.items():
            obj = obj.replace("{" + k + "}", str(v))
        entry = AuditEntry(
            user=user,
            source_ip=ctx.source_ip,
            object=obj,
            operation=route.name,
            result=ctx.result,
            reason=ctx.reason or f"{resp.status}",
            params=ctx.params,
            correlation_id=ctx.correlation_id,
        )
        try:
            await self.write_audit([entry, *ctx.extra])
        except AuditUnavailable:
            if resp.status < 400 or resp.status == 413:
                failed = _json({"error": "storage unavailable", "reason": "audit log"}, 503)
                failed.headers["Retry-After"] = "1"
                # The held-back record must say what the caller was actually answered.
                answered = dataclasses.replace(
                    entry, result="error", reason="503 storage unavailable: audit log"
                )
                self._backlog = [answered if e is entry else e for e in self._backlog]
                return failed
        return resp

    # ------------------------------------------------------------------ webhook

    async def alerts_receive(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        body = await request.read()
        note = parse_notification(body)
        arrival = Arrival(
            intents=[intent_for(a, self.allowed) for a in note.alerts],
            received_at=ctx.received,
            user=ctx.principal.name if ctx.principal else ALERTMANAGER_USER,
            source_ip=ctx.source_ip,
            request_id=ctx.correlation_id,
            summary={
                "group_key": note.group_key[:256],
                "receiver": note.receiver[:256],
                "status": note.status,
            },
        )
        rec = await self.intent_commit.submit(arrival)
        ctx.params = rec.params
        if rec.audited:
            ctx.audited = True
        else:
            ctx.extra += rec.alert_entries
        new = [i for _, i in rec.new]
        queued = [i for i in new if i.action]
        ignored = [i for i in new if not i.action]
        dups = len(arrival.intents) - len(new)
        ctx.webhook_result = "accepted" if queued else ("ignored" if ignored else "duplicate")
        # Plain values already: straight to JSON (jsonable's walk is the hot path's cost).
        reply = {
            "queued": len(queued),
            "ignored": len(ignored),
            "duplicates": dups,
            "correlation_ids": [i.correlation_id for i in queued],
        }
        return web.Response(
            text=json.dumps(reply, separators=(",", ":")), content_type="application/json"
        )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)

    async def ticker(self) -> None:
        while not self._stop.is_set():
            try:
                decisions = await self.call(self.rt.tick)
            except StoreUnavailable as e:
                log.warning("tick: store unavailable: %s", e)
            except SchedulerError as e:
                log.error("tick failed: %s", e)
            else:
                entries = [decision_entry(d, SCHEDULER_USER) for d in decisions]
                # Records an audit outage kept back go out on the next tick at the latest,
                # not only with the next request.
                if entries or self._backlog:
                    await self.write_audit_quietly(entries)
            await self._sleep(self.config.tick_interval_seconds)

    def maintain(self) -> None:
        """Retention: archive old audit records, forget long-settled alert keys."""
        moved = self.audit.apply_retention()
        pruned = self.intents.prune(self.clock() - self.config.intent_key_retention_seconds)
        if moved or pruned:
            log.info(
                "retention: %d audit record(s) archived, %d alert key(s) pruned", moved, pruned
            )

    async def maintenance(self) -> None:
        while not self._stop.is_set():
            try:
                self.maintain()
            except (AuditError, IntentStoreUnavailable) as e:
                log.error("retention failed, next try in an interval: %s", e)
            await self._sleep(self.config.maintenance_interval_seconds)

    def _checkpoints(self) -> None:
        """WAL upkeep of the three databases, off every commit path (``scheduler.store.wal``)."""
        stores = {
            "intent queue": self.intents.checkpoint,
            "audit log": self.audit.checkpoint,
            "scheduler store": self.rt.checkpoint,
        }
        failing: set[str] = set()
        while not self._checkpoint_stop.wait(CHECKPOINT_INTERVAL_SECONDS):
            for name, checkpoint in stores.items():
                try:
                    checkpoint()
                except (IntentStoreUnavailable, AuditUnavailable, SchedulerError) as e:
                    if name not in failing:  # once per outage, not five times a second
                        log.warning("%s: WAL checkpoint failed, retrying: %s", name, e)
                    failing.add(name)
                else:
                    failing.discard(name)

    async def start(self, app: web.Application) -> None:
        self._stop.clear()
        self.worker.start()
        self._checkpoint_thread.start()
        for name, coro in (
            ("tick", self.ticker()),
            ("maintenance", self.maintenance()),
        ):
            self._tasks.append(asyncio.create_task(coro, name=name))

    async def stop(self, app: web.Application) -> None:
        self._stop.set()
        # The loops end at their next check (cancelled only if one hangs).
        _, hung = await asyncio.wait(self._tasks, timeout=10.0)
        for t in hung:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks.clear()
        # Intents committed so far reach the worker; it settles the batch in hand and
        # stops. What it has not acted on stays pending in the table for the next start.
        await self.intent_commit.close()
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.worker.stop, WORKER_STOP_SECONDS):
            log.error("intent worker still busy after %.0f s; stopping anyway", WORKER_STOP_SECONDS)
        await self.audit_commit.close()
        self._checkpoint_stop.set()
        await loop.run_in_executor(None, self._checkpoint_thread.join)
        self._rt_thread.shutdown(wait=True)
        self.audit.close()
        self.intents.close()

    # ------------------------------------------------------------------ REST

    async def healthz(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        if not self.worker.alive:
            # Alerts would be accepted and never acted on: a liveness probe must restart us.
            return _json({"error": "intent worker stopped", "reason": "see the log"}, 503)
        return _json({"status": "ok", "pending_intents": self.intents.pending()})

    async def metrics(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return metrics_response(request, self.registry)

    async def spec(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return _json(openapi())

    async def pools_list(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return _json(await self.call(self.rt.pools))

    def _decisions_reply(self, ctx: Ctx, decisions: list[Decision]) -> web.StreamResponse:
        user = ctx.principal.name if ctx.principal else ANONYMOUS
        ctx.extra.extend(decision_entry(d, user, ctx.source_ip) for d in decisions)
        ctx.result = ",".join(sorted({d.result for d in decisions})) or "noop"
        return _json({"correlation_id": ctx.correlation_id, "decisions": decisions})

    async def pools_rebalance(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        ds = await self.call(
            self.rt.manual_rebalance, ctx.args["pool"], ctx.body["gpus"], ctx.correlation_id
        )
        return self._decisions_reply(ctx, ds)

    async def pools_scale(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        ds = await self.call(
            self.rt.manual_scale, ctx.args["pool"], ctx.body["delta_nodes"], ctx.correlation_id
        )
        return self._decisions_reply(ctx, ds)

    async def jobs_list(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        jobs = await self.call(self.rt.jobs, pool=ctx.args.get("pool"), state=ctx.args.get("state"))
        return _json(jobs)

    async def jobs_submit(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        b = ctx.body
        req = JobRequest(
            id=b["id"],
            pool=b["pool"],
            gpus=b["gpus"],
            kind=JobKind(b.get("kind", JobKind.BATCH.value)),
            preemptible=b.get("preemptible"),
            checkpointable=b.get("checkpointable", False),
            grace_seconds=b.get("grace_seconds"),
            duration_seconds=b.get("duration_seconds"),
        )
        return _json(await self.call(self.rt.submit_job, req, correlation_id=ctx.correlation_id))

    async def jobs_cancel(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        ds = await self.call(
            self.rt.cancel_job, ctx.args["job_id"], correlation_id=ctx.correlation_id
        )
        return self._decisions_reply(ctx, ds)

    async def jobs_checkpoint(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        at = ctx.body.get("at")
        await self.call(self.rt.report_checkpoint, ctx.args["job_id"], at=at)
        return _json({"job": ctx.args["job_id"], "at": at})

    async def jobs_preemption_ack(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return self._decisions_reply(
            ctx, await self.call(self.rt.ack_preemption, ctx.args["job_id"])
        )

    async def queues_list(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return _json(await self.call(self.rt.queues))

    async def decisions_list(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return _json(await self.call(self.rt.decisions, limit=ctx.args.get("limit", 100)))

    async def reservations_list(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return _json(await self.call(self.rt.reservations))

    async def policy_get(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return _json(await self.call(self.rt.policy))

    async def policy_update(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        ds = await self.call(self.rt.set_policy, **ctx.body)
        user = ctx.principal.name if ctx.principal else ANONYMOUS
        ctx.extra.extend(decision_entry(d, user, ctx.source_ip) for d in ds)
        return _json(await self.call(self.rt.policy))

    def _audit_filters(self, ctx: Ctx) -> dict[str, Any]:
        return {k: ctx.args.get(k) for k in ("since", "until", "user", "operation")}

    async def audit_query(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        records = self.audit.query(
            **self._audit_filters(ctx),
            correlation_id=ctx.args.get("correlation_id"),
            limit=ctx.args.get("limit", 1000),
        )
        return _json([r.as_dict() for r in records])

    async def audit_export(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        fmt = ctx.args.get("format", "jsonl")
        records = self.audit.query(**self._audit_filters(ctx))
        ctx.params["count"] = len(records)
        text = "".join(iter_export(records, fmt))
        ctype = "text/csv" if fmt == "csv" else "application/x-ndjson"
        return web.Response(text=text, content_type=ctype)

    async def audit_verify(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        res = verify(self.audit.path, archive=self.audit.archive_path)
        ctx.params["ok"] = res.ok
        return _json(
            {
                "ok": res.ok,
                "checked": res.checked,
                "head_seq": res.head_seq,
                "head_hash": res.head_hash,
                "bad_seq": res.bad_seq,
                "problem": res.problem,
                "summary": str(res),
            }
        )

    def handlers(self) -> dict[str, Handler]:
        return {
            "healthz": self.healthz,
            "metrics": self.metrics,
            "openapi": self.spec,
            "alerts.receive": self.alerts_receive,
            "pools.list": self.pools_list,
            "pools.rebalance": self.pools_rebalance,
            "pools.scale": self.pools_scale,
            "jobs.list": self.jobs_list,
            "jobs.submit": self.jobs_submit,
            "jobs.cancel": self.jobs_cancel,
            "jobs.checkpoint": self.jobs_checkpoint,
            "jobs.preemption_ack": self.jobs_preemption_ack,
            "queues.list": self.queues_list,
            "decisions.list": self.decisions_list,
            "reservations.list": self.reservations_list,
            "policy.get": self.policy_get,
            "policy.update": self.policy_update,
            "audit.query": self.audit_query,
            "audit.export": self.audit_export,
            "audit.verify": self.audit_verify,
        }


def _webhook_result(status: int) -> str:
    return {
        400: "invalid",
        401: "unauthorized",
        403: "forbidden",
        413: "too_large",
        429: "rate_limited",
        503: "unavailable",
    }.get(status, "error" if status >= 400 else "accepted")


SERVICE = web.AppKey("novabrain_service", Service)
UNMATCHED = "unmatched"  # the route label of requests no endpoint answers (404/405)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _count_unmatched(svc: Service) -> Any:
    @web.middleware
    async def middleware(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if request.match_info.http_exception is None:
            return await handler(request)
        # A fixed label, not the path: scanners must not grow the metric's cardinality.
        code = request.match_info.http_exception.status
        method = request.method if request.method in _METHODS else "OTHER"
        svc.m_requests.labels(UNMATCHED, method, str(code)).inc()
        return await handler(request)

    return middleware


def build_app(
    stack: Stack,
    runtime: Runtime,
    *,
    audit_path: Path,
    registry: CollectorRegistry,
    clock: Callable[[], float] = time.time,
    intents_path: Path | None = None,
    config: ServiceConfig | None = None,
) -> web.Application:
    """The aiohttp application; its tick loop and intent worker run while the app runs.

    ``intents_path`` defaults to ``<audit_path stem>-intents.db`` next to the audit log.
    """
    config = config or ServiceConfig()
    audit_path = Path(audit_path)
    if intents_path is None:
        intents_path = audit_path.with_name(audit_path.stem + "-intents.db")
    svc = Service(
        stack,
        runtime,
        audit_path=audit_path,
        intents_path=intents_path,
        registry=registry,
        clock=clock,
        config=config,
    )
    app = web.Application(
        client_max_size=config.max_body_bytes, middlewares=[_count_unmatched(svc)]
    )
    app[SERVICE] = svc
    handlers = svc.handlers()
    missing = {r.name for r in ROUTES} ^ set(handlers)
    if missing:
        raise RuntimeError(f"routes and handlers disagree: {sorted(missing)}")
    for r in ROUTES:
        app.router.add_route(r.method, r.path, svc.endpoint(r, handlers[r.name]))
    app.on_startup.append(svc.start)
    app.on_cleanup.append(svc.stop)
    return app


def tune_process() -> None:
    """Process-wide settings for a long-running server; call once, after startup.

    Garbage collection: every request allocates thousands of short-lived
    objects; with the default threshold (700) the young generation is collected
    every few requests and older generations often enough that their pauses
    make the webhook's p99 (measured: p99 at 1,000/s drops from ~20 ms to
    ~8 ms). Objects built at startup (stack, registry, routes) are frozen out
    of every collection.

    GIL switch interval: the group-commit and intent-worker threads give up
    the GIL at every call into SQLite and must win it back from the event loop.
    While the loop is busy that takes up to the switch interval (5 ms by
    default), several times on each alert's way to the actuator; 0.5 ms bounds
    each wait at a tenth of that, for a few more thread switches.
    """
    gc.freeze()
    gc.set_threshold(50_000, 50, 100)
    sys.setswitchinterval(0.0005)


async def serve(
    stack: Stack, host: str, port: int, *, state_dir: Path, actuator: str = "simulated"
) -> None:
    """Run the scheduler (runtime, webhook, API) until SIGINT or SIGTERM.

    ``actuator`` is ``simulated`` (an embedded cluster) or ``kubernetes`` (the
    stack's ``kubernetes`` section, in-cluster credentials or the kubeconfig).
    """
    from scheduler.runtime import SchedulerRuntime

    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    registry = CollectorRegistry()
    chosen = None
    if actuator == "kubernetes":
        from scheduler.actuators.kubernetes import from_stack

        chosen = from_stack(stack, clock=time.time)
    elif actuator != "simulated":
        raise ValueError(f"unknown actuator {actuator!r}: simulated or kubernetes")
    runtime = SchedulerRuntime.from_stack(
        stack, db_path=state_dir / "scheduler.db", registry=registry, actuator=chosen
    )
    try:
        days = stack.audit.retention_days
        config = ServiceConfig(audit_retention_seconds=None if days is None else days * 86400.0)
        app = build_app(
            stack, runtime, audit_path=state_dir / "audit.db", registry=registry, config=config
        )
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            log.info("scheduler listening on http://%s:%d", host, port)
            tune_process()
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
        finally:
            await runner.cleanup()
    finally:
        runtime.close()
