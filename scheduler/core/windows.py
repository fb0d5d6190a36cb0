"""Recurring, timezone-aware windows: reservations (Slurm's recurring reservations) and lending.

Pure: given the epoch time ``now`` it answers which occurrence of a window is
open (or inside its drain lead), and what a pool's lending windows let it lend.
Local wall-clock times are converted with ``zoneinfo`` so that a window keeps its
local time across DST changes. A window whose end is not after its start ends on
the next day (18:00-08:30); 24:00 is midnight at the end of the day.

Owns: nothing (pure functions).
May call: ``model``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo

from scheduler.core.model import LendingWindowSpec

DAY_MINUTES = 24 * 60


class Weekly(Protocol):
    """A window that recurs on some days of the week (a reservation, a lending window)."""

    @property
    def timezone(self) -> str: ...
    @property
    def days(self) -> tuple[int, ...]: ...
    @property
    def windows(self) -> tuple[tuple[int, int], ...]: ...
    @property
    def drain_lead_seconds(self) -> float: ...


@dataclass(frozen=True)
class Occurrence:
    start: float  # epoch seconds: the window opens (the bell)
    end: float
    drain_from: float  # start - drain lead: borrowers are drained from here

    def active(self, now: float) -> bool:
        return self.drain_from <= now < self.end

    def open(self, now: float) -> bool:
        return self.start <= now < self.end


def occurrences(spec: Weekly, now: float, days_ahead: int = 8) -> list[Occurrence]:
    """Occurrences from yesterday (local) up to ``days_ahead`` days after ``now``, in order."""
    tz = ZoneInfo(spec.timezone)
    today = datetime.fromtimestamp(now, tz).date()
    out = []
    for offset in range(-1, days_ahead + 1):
        day = today + timedelta(days=offset)
        if day.weekday() not in spec.days:
            continue
        for start_min, end_min in spec.windows:
            if end_min <= start_min:
                end_min += DAY_MINUTES  # overnight: ends the next day
            start = _local(day, start_min, tz)
            end = _local(day, end_min, tz)
            out.append(Occurrence(start, end, start - spec.drain_lead_seconds))
    out.sort(key=lambda o: o.start)
    return out


def _local(day: date, minutes: int, tz: ZoneInfo) -> float:
    # Build the wall-clock time directly (not midnight + timedelta), so that a
    # window at 09:15 stays at 09:15 local on a DST day.
    day += timedelta(days=minutes // DAY_MINUTES)
    minutes %= DAY_MINUTES
    wall = datetime(day.year, day.month, day.day, minutes // 60, minutes % 60)
    return wall.replace(tzinfo=tz).timestamp()


def current(spec: Weekly, now: float) -> Occurrence | None:
    """The occurrence that is draining or open at ``now``, if any."""
    for o in occurrences(spec, now, days_ahead=1):
        if o.active(now):
            return o
    return None


def next_occurrence(spec: Weekly, now: float) -> Occurrence | None:
    """The first occurrence that has not ended at ``now``."""
    for o in occurrences(spec, now):
        if o.end > now:
            return o
    return None


@dataclass(frozen=True)
class Lending:
    """What a pool's lending windows let it lend at an instant, and until when."""

    limit: int  # the lending limit in force
    until: float | None  # loans past the usual limit are drained from then (None: none made)
    end: float | None  # ... and gone by then
    next_change: float  # when to look again


def lending(base: int, specs: Sequence[LendingWindowSpec], now: float) -> Lending:
    """The limit a pool with lending limit ``base`` and these windows lends within at ``now``.

    Inside a window the limit is its ``gpus`` (if above ``base``); overlapping or
    touching windows add up to one stretch at the larger limit. A limit about to
    drop lets no more out from ``drain_lead_seconds`` before the drop, so that
    what was lent above the lower limit is drained in time: the limit at ``t`` is
    the least limit between ``t`` and the end of the drain lead of every window
    that ends within it.
    """
    occs = [(o, w) for w in specs for o in occurrences(w, now, days_ahead=8) if o.end > now]

    def raw(t: float) -> int:
        return max([base, *(w.gpus for o, w in occs if o.start <= t < o.end)])

    def lends(t: float) -> int:
        limit = raw(t)
        for o, w in occs:
            if t < o.end <= t + w.drain_lead_seconds:
                limit = min(limit, raw(o.end))
        return limit

    limit = lends(now)
    # Where the limit may change: windows start, drain leads start, windows end.
    points = sorted(
        {p for o, w in occs for p in (o.start, o.end - w.drain_lead_seconds, o.end) if p > now}
    )
    next_change = points[0] if points else math.inf
    if limit <= base:
        return Lending(limit, None, None, next_change)
    for p in points:
        if lends(p) < limit:  # loans above the limit there are drained from p ...
            ends = [o.end for o, w in occs if p < o.end <= p + w.drain_lead_seconds]
            return Lending(limit, p, min(ends, default=p), next_change)  # ... gone by the end
    return Lending(limit, math.inf, math.inf, next_change)  # lends for the next week at least
