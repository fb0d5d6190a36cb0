"""Scheduler service metrics: the Alertmanager webhook and the REST API (the HTTP rim)."""

from __future__ import annotations

from exporters.catalog._metric import Metric, counter, gauge, histogram

WEBHOOK_NOTIFICATIONS = counter(
    "scheduler_webhook_notifications", "Alertmanager notifications received, by result.", "result"
)
ALERT_TO_ACTION = histogram(
    "scheduler_alert_to_action_seconds", "From webhook received to actuator called.", "action"
)
API_REQUESTS = counter(
    "scheduler_api_requests",
    "API requests by route, method and status code.",
    "route",
    "method",
    "code",
)

WEBHOOK_INTENTS_PENDING = gauge(
    "scheduler_webhook_intents_pending",
    "Alert intents persisted by the webhook and not yet acted on.",
)
AUDIT_RECORDS = counter("scheduler_audit_records", "Audit records written, by result.", "result")
AUDIT_CHAIN_VERIFIED = gauge(
    "audit_chain_verified",
    "1 while the audit log's hash chain verifies in the background, 0 once tampering is found.",
)
AUDIT_VERIFIED_SEQ = gauge(
    "audit_chain_verified_seq", "Sequence number of the last audit record verified."
)
AUDIT_HEAD_SEQ = gauge(
    "audit_head_seq",
    "Sequence number of the audit head last published (its hash is in the 'audit head' log line).",
)
AUDIT_FORWARDED_SEQ = gauge(
    "audit_forwarded_seq", "Sequence number of the last audit record forwarded off the box."
)
AUDIT_FORWARD_FAILURES = counter(
    "audit_forward_failures", "Attempts to forward audit records off the box that failed."
)

SERVICE_METRICS: tuple[Metric, ...] = (
    WEBHOOK_NOTIFICATIONS,
    ALERT_TO_ACTION,
    API_REQUESTS,
    WEBHOOK_INTENTS_PENDING,
    AUDIT_RECORDS,
    AUDIT_CHAIN_VERIFIED,
    AUDIT_VERIFIED_SEQ,
    AUDIT_HEAD_SEQ,
    AUDIT_FORWARDED_SEQ,
    AUDIT_FORWARD_FAILURES,
)
