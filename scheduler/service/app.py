"""The scheduler's HTTP rim: Alertmanager webhook, REST API, /metrics and /healthz (aiohttp).

``build_app`` makes the aiohttp application of a ``Service`` (``service``):
every endpoint comes from ``routes.ROUTES`` and runs through one wrapper
(``endpoint``); ``serve`` runs it with the real runtime until SIGTERM. The
parts, one concern each: the webhook (``webhook``), the intent worker
(``worker``), the REST handlers (``rest``), the audit writer
(``audit_writer``), the background loops (``loops``).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from deploy.stack import Stack
from scheduler.service.caller import Runtime
from scheduler.service.config import ServiceConfig
from scheduler.service.routes import ROUTES
from scheduler.service.service import Service

__all__ = [
    "SERVICE",
    "Service",
    "ServiceConfig",
    "build_app",
    "serve",
    "service_config",
    "tune_process",
]

log = logging.getLogger("novabrain.scheduler.service")

SERVICE = web.AppKey("novabrain_service", Service)
UNMATCHED = "unmatched"  # the route label of requests no endpoint answers (404/405)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
DAY = 86400.0


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
        svc.metrics.requests.labels(UNMATCHED, method, str(code)).inc()
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
        app.router.add_route(r.method, r.path, svc.endpoints.endpoint(r, handlers[r.name]))
    app.on_startup.append(svc.start)
    app.on_cleanup.append(svc.stop)
    return app


def service_config(stack: Stack) -> ServiceConfig:
    """What the stack sets of the service: the audit log's retention and off-box copy."""
    return ServiceConfig(
        audit_archive_after_seconds=stack.audit.online_days * DAY,
        audit_purge_after_seconds=stack.audit.retention_days * DAY,
        audit_forward=stack.audit.forward,
    )


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
        app = build_app(
            stack,
            runtime,
            audit_path=state_dir / "audit.db",
            registry=registry,
            config=service_config(stack),
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
