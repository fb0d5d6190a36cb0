"""A per-source token bucket: ``rate`` requests per second, bursts up to ``burst``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class RateLimit:
    rate: float  # tokens added per second
    burst: float  # bucket size


class RateLimiter:
    """Buckets keyed by source, least recently used dropped beyond ``max_sources``.

    Dropping a bucket forgives that source (it starts full again), which is the
    safe direction: memory stays bounded and no honest sender is starved.
    """

    def __init__(
        self, limit: RateLimit, clock: Callable[[], float], *, max_sources: int = 10_000
    ) -> None:
        if limit.rate <= 0 or limit.burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.limit = limit
        self.clock = clock
        self.max_sources = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, source: str) -> bool:
        now = self.clock()
        tokens, last = self._buckets.pop(source, (self.limit.burst, now))
        tokens = min(self.limit.burst, tokens + max(0.0, now - last) * self.limit.rate)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self._buckets[source] = (tokens, now)
        while len(self._buckets) > self.max_sources:
            self._buckets.popitem(last=False)
        return allowed
