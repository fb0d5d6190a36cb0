"""The service: its stores, threads and parts, wired together, started and stopped as one.

``Service`` owns the audit log, the intent queue, the intent worker and the
runtime thread, and composes the parts that use them: the endpoint wrapper
(``endpoint``), the webhook (``webhook``), the REST handlers (``rest``), the
audit writer (``audit_writer``) and the background loops (``loops``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from deploy.stack import FAST_WINDOW_SCRAPES, Stack
from scheduler.audit import AuditEntry, AuditLog, AuditUnavailable
from scheduler.core.errors import SchedulerError
from scheduler.service.audit_watch import AuditWatch
from scheduler.service.audit_writer import AuditWriter
from scheduler.service.auth import Authenticator
from scheduler.service.batch import GroupCommit
from scheduler.service.caller import Runtime, RuntimeCaller
from scheduler.service.config import ServiceConfig
from scheduler.service.endpoint import Endpoints, Handler
from scheduler.service.errors import IntentStoreUnavailable
from scheduler.service.intents import IntentQueue
from scheduler.service.load_poll import LoadPoller
from scheduler.service.loops import Loops
from scheduler.service.metrics import ServiceMetrics
from scheduler.service.reconcile import Marks, reconcile
from scheduler.service.rest import RestApi
from scheduler.service.webhook import Webhook
from scheduler.service.worker import IntentWorker

log = logging.getLogger("novabrain.scheduler.service")
WORKER_STOP_SECONDS = 10.0


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
        self.registry = registry
        archive = None
        if config.audit_archive_after_seconds is not None:
            archive = audit_path.with_name(audit_path.stem + "-archive" + audit_path.suffix)
        self.audit = AuditLog(
            audit_path,
            clock=clock,
            retention_seconds=config.audit_archive_after_seconds,
            archive_path=archive,
            busy_timeout=config.busy_timeout_seconds,
        )
        self.intents = IntentQueue(intents_path, busy_timeout=config.busy_timeout_seconds)
        self.metrics = ServiceMetrics.register(
            registry, forwarding=config.audit_forward is not None
        )
        self.watch = AuditWatch(self.audit, metrics=self.metrics, config=config)
        self.marks = Marks()
        self.call = RuntimeCaller()
        self.worker = IntentWorker(
            runtime,
            self.intents,
            self.audit,
            clock=clock,
            latency=self.metrics.latency,
            pending=self.metrics.pending,
            audit_records=self.metrics.audit,
            retry_backoff_seconds=config.retry_backoff_seconds,
            marks=self.marks,
        )
        self.writer = AuditWriter(self.audit, self.metrics.audit, self.marks)
        self.endpoints = Endpoints(
            auth=Authenticator(stack.users),
            audit=self.writer,
            metrics=self.metrics,
            clock=clock,
            config=config,
        )
        self.webhook = Webhook(
            stack,
            intents=self.intents,
            audit=self.audit,
            worker=self.worker,
            metrics=self.metrics,
            marks=self.marks,
        )
        self.api = RestApi(
            runtime,
            call=self.call,
            audit=self.audit,
            intents=self.intents,
            worker=self.worker,
            registry=registry,
        )
        self.loops = Loops(
            runtime,
            call=self.call,
            writer=self.writer,
            audit=self.audit,
            intents=self.intents,
            denials=self.endpoints.denials,
            marks=self.marks,
            clock=clock,
            config=config,
        )
        self._tasks: list[asyncio.Task[None]] = []
        # Each P0 model's load, polled from Prometheus for the core (load_poll.py): the
        # models whose serving the stack gives, with the fast alert's window.
        sized = [m.name for m in stack.models if m.serving is not None and m.action == "rebalance"]
        self.load = (
            LoadPoller(
                runtime,
                self.call,
                writer=self.writer,
                prometheus_url=stack.alerting.prometheus_url,
                models=sized,
                window=f"{FAST_WINDOW_SCRAPES * stack.prometheus.scrape_interval_seconds:.0f}s",
                interval=stack.prometheus.scrape_interval_seconds,
                stopping=self.loops.stopping,
            )
            if sized
            else None
        )

    @property
    def audit_commit(self) -> GroupCommit[list[AuditEntry], None]:
        """The audit writer's group commit (``flush`` waits for what is queued)."""
        return self.writer.commit

    def maintain(self) -> None:
        self.loops.maintain()

    def handlers(self) -> dict[str, Handler]:
        api = self.api
        return {
            "healthz": api.healthz,
            "metrics": api.metrics,
            "openapi": api.spec,
            "alerts.receive": self.webhook.receive,
            "pools.list": api.pools_list,
            "pools.rebalance": api.pools_rebalance,
            "pools.scale": api.pools_scale,
            "jobs.list": api.jobs_list,
            "jobs.submit": api.jobs_submit,
            "jobs.cancel": api.jobs_cancel,
            "jobs.checkpoint": api.jobs_checkpoint,
            "jobs.preemption_ack": api.jobs_preemption_ack,
            "queues.list": api.queues_list,
            "decisions.list": api.decisions_list,
            "reservations.list": api.reservations_list,
            "policy.get": api.policy_get,
            "policy.update": api.policy_update,
            "audit.query": api.audit_query,
            "audit.export": api.audit_export,
            "audit.record": api.audit_record,
            "audit.verify": api.audit_verify,
        }

    def reconcile(self) -> None:
        """Before anything writes: the records a crash kept out of the audit log."""
        try:
            reconcile(self.rt, self.intents, self.audit)
        except (AuditUnavailable, IntentStoreUnavailable, SchedulerError) as e:
            # Their rows stay unflagged: the next start writes them (doing it later in this
            # run could write a record that is on its way a second time).
            log.error("audit log: records a crash kept out not written, next start will: %s", e)

    async def start(self, app: web.Application) -> None:
        self.loops.stopping.clear()
        await asyncio.get_running_loop().run_in_executor(None, self.reconcile)
        self.watch.start()
        self.worker.start()
        self.loops.start_checkpoints()
        for name, coro in (
            ("tick", self.loops.ticker()),
            ("maintenance", self.loops.maintenance()),
        ):
            self._tasks.append(asyncio.create_task(coro, name=name))
        if self.load is not None:
            self._tasks.append(asyncio.create_task(self.load.run(), name="load"))

    async def stop(self, app: web.Application) -> None:
        self.loops.stopping.set()
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
        await self.webhook.close()
        loop = asyncio.get_running_loop()
        if not await loop.run_in_executor(None, self.worker.stop, WORKER_STOP_SECONDS):
            log.error("intent worker still busy after %.0f s; stopping anyway", WORKER_STOP_SECONDS)
        # The denials counted since their group's first record, however recent.
        await self.writer.write_quietly(self.endpoints.denials.due(everything=True))
        await self.writer.close()
        await self.loops.flush_marks()
        await loop.run_in_executor(None, self.watch.stop)
        await self.loops.stop_checkpoints()
        self.call.shutdown()
        self.audit.close()
        self.intents.close()
