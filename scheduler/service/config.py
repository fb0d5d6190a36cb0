"""The service's tunables, with the defaults ``serve`` runs with."""

from __future__ import annotations

from dataclasses import dataclass

from deploy.stack import AuditForward
from scheduler.service.ratelimit import RateLimit

DEFAULT_WEBHOOK_RATE = RateLimit(rate=100.0, burst=200.0)
DEFAULT_API_RATE = RateLimit(rate=50.0, burst=100.0)
DEFAULT_ANONYMOUS_RATE = RateLimit(rate=10.0, burst=20.0)


@dataclass(frozen=True)
class ServiceConfig:
    max_body_bytes: int = 1 << 20
    # Limits are applied after authentication, so that nobody can spend another's.
    # Per authenticated caller on the webhook. Alertmanager sends a handful per group
    # interval; over this it is answered 503 with Retry-After, and retries.
    webhook_rate: RateLimit = DEFAULT_WEBHOOK_RATE
    # Per authenticated caller on the rest of the API (429 with Retry-After).
    api_rate: RateLimit = DEFAULT_API_RATE
    # Per source address, for requests without valid credentials: a bucket of their own.
    anonymous_rate: RateLimit = DEFAULT_ANONYMOUS_RATE
    # Denials are audited once per (source, user, operation, status) and window, with a count.
    denial_window_seconds: float = 60.0
    tick_interval_seconds: float = 0.5
    maintenance_interval_seconds: float = 3600.0
    # Far beyond Alertmanager's repeat_interval: a pruned key that is replayed acts again.
    intent_key_retention_seconds: float = 30 * 86400.0
    # None keeps every record in the live log; otherwise older ones move to the archive ...
    audit_archive_after_seconds: float | None = None
    # ... and are purged from it past this (None: kept for ever).
    audit_purge_after_seconds: float | None = None
    # The background verifier's pass (the chain's new records, and a slice of the old).
    audit_verify_interval_seconds: float = 10.0
    # How often the verified head is published (a log line and a metric).
    audit_publish_interval_seconds: float = 60.0
    audit_forward: AuditForward | None = None
    forward_interval_seconds: float = 0.25
    busy_timeout_seconds: float = 5.0
    retry_backoff_seconds: float = 0.5
