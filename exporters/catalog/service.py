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

SERVICE_METRICS: tuple[Metric, ...] = (
    WEBHOOK_NOTIFICATIONS,
    ALERT_TO_ACTION,
    API_REQUESTS,
    WEBHOOK_INTENTS_PENDING,
    AUDIT_RECORDS,
)
