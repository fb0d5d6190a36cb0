"""Who the service names in the audit log, and the record it writes for a scheduler decision."""

from __future__ import annotations

from scheduler.audit import AuditEntry
from scheduler.core.model import Decision

ALERTMANAGER_USER = "alertmanager"
ALERTMANAGER_ROLE = "alertmanager"  # the role whose over-limit answer is a 503, never a 429
SCHEDULER_USER = "scheduler"  # decisions the scheduler takes on its own (tick, recovery)
ANONYMOUS = "anonymous"


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
