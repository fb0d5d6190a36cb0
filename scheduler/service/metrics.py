"""The service's own metrics (the webhook and the API), registered from the catalog."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporters.catalog import Metric
from exporters.catalog.service import (
    ALERT_TO_ACTION,
    API_REQUESTS,
    AUDIT_CHAIN_VERIFIED,
    AUDIT_FORWARD_FAILURES,
    AUDIT_FORWARDED_SEQ,
    AUDIT_HEAD_SEQ,
    AUDIT_RECORDS,
    AUDIT_VERIFIED_SEQ,
    WEBHOOK_INTENTS_PENDING,
    WEBHOOK_NOTIFICATIONS,
)

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


@dataclass(frozen=True)
class ServiceMetrics:
    notifications: Counter
    latency: Histogram
    requests: Counter
    pending: Gauge
    audit: Counter
    chain_verified: Gauge
    verified_seq: Gauge
    head_seq: Gauge
    forwarded_seq: Gauge | None  # only with audit.forward
    forward_failures: Counter

    @classmethod
    def register(cls, registry: CollectorRegistry, *, forwarding: bool) -> ServiceMetrics:
        """``forwarding``: the stack sets ``audit.forward``. Without it there is no forwarded
        sequence number to export: a 0 there would read as a copy lagging the whole log
        behind, and NovabrainAuditForwardingBehind (head - forwarded) would fire."""
        return cls(
            notifications=Counter(
                WEBHOOK_NOTIFICATIONS.name,
                WEBHOOK_NOTIFICATIONS.help,
                WEBHOOK_NOTIFICATIONS.labels,
                registry=registry,
            ),
            latency=Histogram(
                ALERT_TO_ACTION.name,
                ALERT_TO_ACTION.help,
                ALERT_TO_ACTION.labels,
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            requests=Counter(
                API_REQUESTS.name, API_REQUESTS.help, API_REQUESTS.labels, registry=registry
            ),
            pending=Gauge(
                WEBHOOK_INTENTS_PENDING.name, WEBHOOK_INTENTS_PENDING.help, registry=registry
            ),
            audit=Counter(
                AUDIT_RECORDS.name, AUDIT_RECORDS.help, AUDIT_RECORDS.labels, registry=registry
            ),
            chain_verified=_gauge(AUDIT_CHAIN_VERIFIED, registry),
            verified_seq=_gauge(AUDIT_VERIFIED_SEQ, registry),
            head_seq=_gauge(AUDIT_HEAD_SEQ, registry),
            forwarded_seq=_gauge(AUDIT_FORWARDED_SEQ, registry) if forwarding else None,
            forward_failures=Counter(
                AUDIT_FORWARD_FAILURES.name, AUDIT_FORWARD_FAILURES.help, registry=registry
            ),
        )


def _gauge(m: Metric, registry: CollectorRegistry) -> Gauge:
    return Gauge(m.name, m.help, m.labels, registry=registry)
