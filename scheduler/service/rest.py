"""The REST handlers: health, metrics, the spec, pools, jobs, queues, decisions, policy, audit
(query, export, verify, and actions done elsewhere recorded).

Each takes the request and its ``Ctx`` (validated arguments and body) and
answers; what it adds to ``ctx`` goes into the request's audit record.
Runtime calls run on the runtime thread (``RuntimeCaller``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry

from exporters.exposition import metrics_response
from scheduler.audit import AuditLog, ChainPoint, iter_export, verify
from scheduler.core.model import Decision, JobKind, JobRequest
from scheduler.service.caller import Runtime, RuntimeCaller
from scheduler.service.endpoint import Ctx, json_response
from scheduler.service.intents import IntentQueue
from scheduler.service.records import decision_entry
from scheduler.service.reports import REASON, audit_object
from scheduler.service.routes import openapi
from scheduler.service.worker import IntentWorker
from scheduler.store.sqlite import Actor

R = TypeVar("R")


class RestApi:
    def __init__(
        self,
        runtime: Runtime,
        *,
        call: RuntimeCaller,
        audit: AuditLog,
        intents: IntentQueue,
        worker: IntentWorker,
        registry: CollectorRegistry,
    ) -> None:
        self.rt = runtime
        self.call = call
        self.audit = audit
        self.intents = intents
        self.worker = worker
        self.registry = registry

    async def healthz(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        if not self.worker.alive:
            # Alerts would be accepted and never acted on: a liveness probe must restart us.
            return json_response({"error": "intent worker stopped", "reason": "see the log"}, 503)
        return json_response({"status": "ok", "pending_intents": self.intents.pending()})

    async def metrics(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return metrics_response(request, self.registry)

    async def spec(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return json_response(openapi())

    async def pools_list(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return json_response(await self.call(self.rt.pools))

    async def _acting(self, ctx: Ctx, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """A runtime call on the caller's behalf: its decisions are stored with who asked,
        so that their audit records name them even if a crash comes first."""
        actor = Actor(ctx.user, ctx.source_ip)

        def run() -> R:
            with self.rt.acting_as(actor):
                return fn(*args, **kwargs)

        return await self.call(run)

    def _decisions_reply(self, ctx: Ctx, decisions: list[Decision]) -> web.StreamResponse:
        ctx.extra.extend(decision_entry(d, ctx.user, ctx.source_ip) for d in decisions)
        ctx.result = ",".join(sorted({d.result for d in decisions})) or "noop"
        return json_response({"correlation_id": ctx.correlation_id, "decisions": decisions})

    async def pools_rebalance(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        ds = await self._acting(
            ctx, self.rt.manual_rebalance, ctx.args["pool"], ctx.body["gpus"], ctx.correlation_id
        )
        return self._decisions_reply(ctx, ds)

    async def pools_scale(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        ds = await self._acting(
            ctx, self.rt.manual_scale, ctx.args["pool"], ctx.body["delta_nodes"], ctx.correlation_id
        )
        return self._decisions_reply(ctx, ds)

    async def jobs_list(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        jobs = await self.call(self.rt.jobs, pool=ctx.args.get("pool"), state=ctx.args.get("state"))
        return json_response(jobs)

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
        job, ds = await self._acting(ctx, self.rt.submit, req, correlation_id=ctx.correlation_id)
        # Its placement, and any preemption to reclaim GPUs lent out, are audited with it.
        ctx.extra.extend(decision_entry(d, ctx.user, ctx.source_ip) for d in ds)
        return json_response(job)

    async def jobs_cancel(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        ds = await self._acting(
            ctx, self.rt.cancel_job, ctx.args["job_id"], correlation_id=ctx.correlation_id
        )
        return self._decisions_reply(ctx, ds)

    async def jobs_checkpoint(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        at = ctx.body.get("at")
        await self._acting(ctx, self.rt.report_checkpoint, ctx.args["job_id"], at=at)
        return json_response({"job": ctx.args["job_id"], "at": at})

    async def jobs_preemption_ack(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return self._decisions_reply(
            ctx, await self._acting(ctx, self.rt.ack_preemption, ctx.args["job_id"])
        )

    async def queues_list(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return json_response(await self.call(self.rt.queues))

    async def decisions_list(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return json_response(await self.call(self.rt.decisions, limit=ctx.args.get("limit", 100)))

    async def reservations_list(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return json_response(await self.call(self.rt.reservations))

    async def policy_get(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        return json_response(await self.call(self.rt.policy))

    async def policy_update(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        ds = await self._acting(ctx, self.rt.set_policy, **ctx.body)
        ctx.extra.extend(decision_entry(d, ctx.user, ctx.source_ip) for d in ds)
        return json_response(await self.call(self.rt.policy))

    def _audit_filters(self, ctx: Ctx) -> dict[str, Any]:
        return {k: ctx.args.get(k) for k in ("since", "until", "user", "operation")}

    async def audit_query(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        records = self.audit.query(
            **self._audit_filters(ctx),
            correlation_id=ctx.args.get("correlation_id"),
            limit=ctx.args.get("limit", 1000),
        )
        return json_response([r.as_dict() for r in records])

    async def audit_export(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        fmt = ctx.args.get("format", "jsonl")
        records = self.audit.query(**self._audit_filters(ctx))
        ctx.params["count"] = len(records)
        text = "".join(iter_export(records, fmt))
        ctype = "text/csv" if fmt == "csv" else "application/x-ndjson"
        return web.Response(text=text, content_type=ctype)

    async def audit_record(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        """The reported action becomes this request's audit record, under the caller's name
        and address; the endpoint answers only once it is written (503 if it cannot be)."""
        b = ctx.body
        ctx.operation, ctx.object, ctx.result = b["operation"], audit_object(b), b["result"]
        ctx.params = dict(b["params"])
        ctx.reason = REASON
        return json_response({"correlation_id": ctx.correlation_id}, ctx.route.status)

    async def audit_verify(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        head, first = (ctx.args.get(k) for k in ("head", "first"))
        # Without a published first point, the one the log's own purge record names (a
        # verifier that trusts nothing in the file gives it: first=).
        start = self.audit.purged_through() if first is None else ChainPoint.parse(first)
        res = verify(
            self.audit.path,
            archive=self.audit.archive_path,
            expected_head=None if head is None else ChainPoint.parse(head),
            expected_first=start,
        )
        ctx.params["ok"] = res.ok
        return json_response(
            {
                "ok": res.ok,
                "checked": res.checked,
                "first_seq": res.first_seq,
                "head_seq": res.head_seq,
                "head_hash": res.head_hash,
                "bad_seq": res.bad_seq,
                "problem": res.problem,
                "summary": str(res),
            }
        )
