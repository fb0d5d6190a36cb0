"""P0's demand in the replay: each P0 model's daily load, as the GPUs its pool needs.

A model's load is a base rate with spikes (market open and close) on some days, in
the stack's timezone. ``capacity.gpus_needed`` turns a rate into GPUs twice: *needed*
keeps the predicted quantile a margin under the threshold (what "served in full"
means), *breach* is the fewest GPUs within the threshold itself (below it the
latency alert's condition holds). A pool's demand is the sum over its models.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from scheduler.core.capacity import ServingSpec, gpus_needed

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
UNSERVABLE = 1 << 30  # GPUs "needed" by a load no number of GPUs serves within the threshold


@dataclass(frozen=True)
class ModelLoad:
    """One P0 model's load profile and what serving it takes (from the stack)."""

    model: str
    pool: str
    serving: ServingSpec
    threshold_seconds: float
    quantile: float
    base_rps: float
    spikes: tuple[tuple[int, float, float], ...]  # (start minute of the day, minutes, rps)
    days: tuple[int, ...]  # 0 = Monday

    def rate(self, local: datetime) -> tuple[float, bool]:
        """(requests per second, inside a spike) at a local time."""
        if local.weekday() in self.days:
            minute = local.hour * 60 + local.minute + local.second / 60.0
            for start, minutes, rps in self.spikes:
                if start <= minute < start + minutes:
                    return rps, True
        return self.base_rps, False


@dataclass(frozen=True)
class Demand:
    """A P0 pool's demand from ``at`` until the next change."""

    at: float
    needed: int  # GPUs that serve it with the margin
    breach: int  # below this many GPUs the predicted quantile passes the threshold
    rps: float
    spike: bool
    rates: tuple[tuple[str, float], ...] = ()  # (model, requests per second): the load feed


@lru_cache(maxsize=4096)
def _gpus(
    rps: float, serving: ServingSpec, threshold: float, quantile: float, margin: float
) -> int:
    n = gpus_needed(rps, serving, threshold_seconds=threshold, quantile=quantile, margin=margin)
    return UNSERVABLE if n is None else n


def changes(
    loads: Sequence[ModelLoad], timezone: str, start: float, margin: float, scale: float = 1.0
) -> Iterator[Demand]:
    """A pool's demand at ``start`` and then at each change (loads of one pool).

    The profile repeats every week: once a whole week passes without a change (no
    spikes, or spikes that never change what is needed), none will come, and it ends.

    ``scale`` multiplies every rate (a cluster scaled by ``--gpus`` serves scaled load).
    """
    tz = ZoneInfo(timezone)
    # Every minute edge of a spike, each day: the only instants the rate can change.
    edges = sorted({e for m in loads for s, n, _ in m.spikes for e in (s, s + n)})
    t = start
    last: tuple[int, int, bool] | None = None
    day = datetime.fromtimestamp(start, tz).date()
    quiet_days = 0
    while quiet_days <= 7:
        quiet_days += 1
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        instants = [midnight.timestamp()] + [
            _local(midnight, minute, tz) for minute in edges if minute < 24 * 60
        ]
        for at in sorted(instants):
            if at < start:
                continue
            local = datetime.fromtimestamp(at, tz)
            needed = breach = 0
            rps = 0.0
            spike = False
            rates = []
            for m in loads:
                r, s = m.rate(local)
                r *= scale
                rps += r
                rates.append((m.model, r))
                spike = spike or s
                needed += _gpus(r, m.serving, m.threshold_seconds, m.quantile, margin)
                breach += _gpus(r, m.serving, m.threshold_seconds, m.quantile, 0.0)
            if (needed, breach, spike) != last:
                last = (needed, breach, spike)
                quiet_days = 0
                yield Demand(max(at, t), needed, breach, rps, spike, tuple(rates))
        day += timedelta(days=1)


def _local(midnight: datetime, minute: float, tz: ZoneInfo) -> float:
    whole = int(minute)
    wall = datetime(midnight.year, midnight.month, midnight.day, whole // 60, whole % 60)
    return wall.replace(tzinfo=tz).timestamp() + (minute - whole) * 60.0
