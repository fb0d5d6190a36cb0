"""The Alertmanager webhook: persist each new alert state, hand it to the worker, answer.

Each notification is parsed and validated (``payload``), its alerts mapped to
intents, and the batch of notifications that arrived meanwhile is persisted in
the durable intent queue in one fsynced statement on a group-commit thread.
The same thread hands the new intents straight to the intent worker
(``worker``, its own thread) and writes the requests' audit records; only
then is the request answered. The worker calls the scheduler runtime in
order. An intent a crash left pending is resolved at startup against the
runtime's decisions (by correlation id), so an action runs once even when the
process dies in the middle of it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from deploy.stack import Stack
from scheduler.audit import AuditEntry, AuditLog, AuditUnavailable
from scheduler.service.batch import GroupCommit
from scheduler.service.endpoint import Ctx, read_body
from scheduler.service.intents import IntentQueue
from scheduler.service.metrics import ServiceMetrics
from scheduler.service.payload import Intent, actionable_pairs, intent_for, parse_notification
from scheduler.service.reconcile import Marks
from scheduler.service.records import ALERTMANAGER_USER, receipt_entry
from scheduler.service.routes import ALERTS_PATH
from scheduler.service.worker import IntentWorker

log = logging.getLogger("novabrain.scheduler.service")


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


class Webhook:
    def __init__(
        self,
        stack: Stack,
        *,
        intents: IntentQueue,
        audit: AuditLog,
        worker: IntentWorker,
        metrics: ServiceMetrics,
        marks: Marks,
    ) -> None:
        self.allowed = actionable_pairs(stack)
        self.marks = marks
        self.intents = intents
        self.audit = audit
        self.worker = worker
        self.metrics = metrics
        self.commit = GroupCommit(self._record, name="intents")

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
        recorded = self.intents.record_many(
            [(a.intents, a.received_at) for a in arrivals],
            [(a.user, a.source_ip) for a in arrivals],
        )
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
            alert_entries = [receipt_entry(i, a.user, a.source_ip) for _, i in new]
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
            self.metrics.audit.labels("written").inc(len(entries))
            self.marks.written(entries)
            out = [dataclasses.replace(r, audited=True) for r in out]
        finally:
            # Written, or handed back to the requests: either way the worker need not wait.
            self.worker.audited_upto(max((i for new in recorded for i, _ in new), default=0))
        return out

    async def receive(self, request: web.Request, ctx: Ctx) -> web.StreamResponse:
        note = parse_notification(await read_body(request))
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
        rec = await self.commit.submit(arrival)
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

    async def close(self) -> None:
        await self.commit.close()
