"""The audit log's panels on the scheduler dashboard: is the chain verified, how far has
verification got against the published head, and how far behind is the off-box copy.

The audit alerts (``alerts.rules.audit``) link here: ``NovabrainAuditChainTampered`` to the
chain panel, ``NovabrainAuditForwardingBehind`` to the forwarding lag. One series per
scheduler instance: each keeps its own log.
"""

from __future__ import annotations

from dashboards.panels import Spec, stat, timeseries
from exporters.catalog import service as svc

CHAIN_TITLE = "Audit chain verified"
SEQ_TITLE = "Audit records verified and published"
LAG_TITLE = "Audit forwarding lag"


def audit_panels() -> list[Spec]:
    verified = svc.AUDIT_CHAIN_VERIFIED.series
    head, checked = svc.AUDIT_HEAD_SEQ.series, svc.AUDIT_VERIFIED_SEQ.series
    forwarded = svc.AUDIT_FORWARDED_SEQ.series
    return [
        stat(
            CHAIN_TITLE,
            [(f"min by (instance) ({verified})", "{{instance}}")],
            "bool_yes_no",
            w=6,
            h=8,
            colors=(("red", 0.0), ("green", 1.0)),
            description="No once the background verifier found a record changed, deleted or "
            "out of place: the scheduler's log says where ('audit log TAMPERED at record N').",
        ),
        timeseries(
            SEQ_TITLE,
            [
                (f"max by (instance) ({checked})", "verified {{instance}}"),
                (f"max by (instance) ({head})", "published head {{instance}}"),
            ],
            "none",
            w=9,
            description="Sequence numbers: the last record the background verifier checked, "
            "and the head it published ('audit head SEQ:HASH' log line, every minute).",
        ),
        timeseries(
            LAG_TITLE,
            [(f"max by (instance) ({head} - {forwarded})", "{{instance}}")],
            "none",
            w=9,
            description="Records published but not yet copied off the box (audit.forward); "
            "no data when forwarding is not configured.",
        ),
    ]
