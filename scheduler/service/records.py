"""Who the service names in the audit log, and the records it writes for an alert's receipt
and for a scheduler decision."""

from __future__ import annotations

from scheduler.audit import AuditEntry
from scheduler.core.model import Decision
from scheduler.service.payload import Intent

ALERTMANAGER_USER = "alertmanager"
ALERTMANAGER_ROLE = "alertmanager"  # the role whose over-limit answer is a 503, never a 429
SCHEDULER_USER = "scheduler"  # decisions the scheduler takes on its own (tick, recovery)
ANONYMOUS = "anonymous"
RECEIPTS = ("alert.queued", "alert.ignored")


def receipt_entry(i: Intent, user: str, source_ip: str, reason: str = "") -> AuditEntry:
    """That an alert state was received: queued for the worker, or recorded and ignored."""
    return AuditEntry(
        user=user,
        source_ip=source_ip,
        object=f"pool/{i.pool}" if i.pool else "alert",
        operation=RECEIPTS[0] if i.action else RECEIPTS[1],
        result="queued" if i.action else "ignored",
        reason=reason or i.reason,
        params={"alert": i.alert, "action": i.action, "firing": i.firing, "key": i.key},
        correlation_id=i.correlation_id,
    )


def decision_user(d: Decision) -> str:
    """Who caused a decision no caller claimed: an alert's, or the scheduler's own."""
    return ALERTMANAGER_USER if d.correlation_id.startswith("am-") else SCHEDULER_USER


def decision_entry(d: Decision, user: str, source_ip: str = "") -> AuditEntry:
    return AuditEntry(
        user=user,
        source_ip=source_ip,
        object=f"job/{d.job}" if d.job and not d.pool else f"pool/{d.pool}",
        operation=f"decision.{d.action}",
        result=d.result,
        reason=d.reason,
        params={
            "decision": d.id,
            "gpus": d.gpus,
            "gpu_ids": list(d.gpu_ids),
            "victims": list(d.victims),
            "job": d.job,
            "cause": d.cause,
            "nodes": list(d.nodes),
            "dry_run": d.dry_run,
        },
        correlation_id=d.correlation_id,
    )
