"""Alert notifications as the core receives them: which action, and whether it was decided already.

Alertmanager re-sends a notification it got no answer for, and HA peers send the
same one each: a delivery whose correlation id, action, pool and state were seen
among the last ``SEEN_ALERTS_KEPT`` is decided already and changes nothing. (Not
persisted: after a restart the service's durable intent queue de-duplicates.)

Owns: the deliveries seen.
May call: ``errors`` only.
"""

from __future__ import annotations

from enum import StrEnum

from scheduler.core.errors import InvalidRequest

# Alert correlation ids remembered for de-duplicating retried notifications.
SEEN_ALERTS_KEPT = 1_000
# The annotation in which P0's latency alert carries its model's request rate (req/s),
# filled by a Prometheus template query when the alert fires: it sizes the grant.
REQUEST_RATE_ANNOTATION = "request_rate_rps"


class AlertAction(StrEnum):
    """What a model's alert asks of the scheduler (``models[].action`` in the stack)."""

    REBALANCE = "rebalance"  # lend the pool GPUs (rebalance.py)
    SCALE = "scale"  # ask for a node (scaling.py)

    @classmethod
    def parse(cls, action: str) -> AlertAction:
        try:
            return cls(action)
        except ValueError:
            raise InvalidRequest(f"unknown action {action!r}") from None


class Deliveries:
    def __init__(self) -> None:
        self._seen: dict[str, None] = {}  # insertion-ordered: the oldest go first

    def first(self, correlation_id: str, action: AlertAction, pool: str, firing: bool) -> bool:
        """Whether this is the first delivery of this notification (always, without an id)."""
        if not correlation_id:
            return True
        key = f"{correlation_id}|{action}|{pool}|{firing}"
        if key in self._seen:
            return False
        self._seen[key] = None
        while len(self._seen) > SEEN_ALERTS_KEPT:
            del self._seen[next(iter(self._seen))]
        return True
