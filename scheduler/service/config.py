"""The service's tunables, with the defaults ``serve`` runs with."""

from __future__ import annotations

from dataclasses import dataclass

from scheduler.service.ratelimit import RateLimit

DEFAULT_WEBHOOK_RATE = RateLimit(rate=100.0, burst=200.0)


@dataclass(frozen=True)
class ServiceConfig:
    max_body_bytes: int = 1 << 20
    # Per source address. Alertmanager sends a handful per group interval;
    # anything near this is a loop or an attack.
    webhook_rate: RateLimit = DEFAULT_WEBHOOK_RATE
    tick_interval_seconds: float = 0.5
    maintenance_interval_seconds: float = 3600.0
    # Far beyond Alertmanager's repeat_interval: a pruned key that is replayed acts again.
    intent_key_retention_seconds: float = 30 * 86400.0
    # None keeps every record in the live log; otherwise older ones move to the archive.
    audit_retention_seconds: float | None = None
    busy_timeout_seconds: float = 5.0
    retry_backoff_seconds: float = 0.5
