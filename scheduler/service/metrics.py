"""The service's own metrics (the webhook and the API), registered from the catalog."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from exporters.catalog.service import (
    ALERT_TO_ACTION,
    API_REQUESTS,
    AUDIT_RECORDS,
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

    @classmethod
    def register(cls, registry: CollectorRegistry) -> ServiceMetrics:
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
        )
