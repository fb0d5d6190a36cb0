"""Recurring, timezone-aware reservation windows (Slurm's recurring reservations).

Pure: given the epoch time ``now`` it answers which occurrence of a window is
open (or inside its drain lead). Local wall-clock times are converted with
``zoneinfo`` so that a window keeps its local time across DST changes.

Owns: nothing (pure functions).
May call: ``model``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from scheduler.core.model import ReservationSpec


@dataclass(frozen=True)
class Occurrence:
    reservation: str
    start: float  # epoch seconds: the window opens (the bell)
    end: float
    drain_from: float  # start - drain lead: borrowers are drained from here

    def active(self, now: float) -> bool:
        return self.drain_from <= now < self.end

    def open(self, now: float) -> bool:
        return self.start <= now < self.end


def occurrences(spec: ReservationSpec, now: float, days_ahead: int = 8) -> list[Occurrence]:
    """Occurrences from yesterday (local) up to ``days_ahead`` days after ``now``, in order."""
    tz = ZoneInfo(spec.timezone)
    today = datetime.fromtimestamp(now, tz).date()
    out = []
    for offset in range(-1, days_ahead + 1):
        day = today + timedelta(days=offset)
        if day.weekday() not in spec.days:
            continue
        midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
        for start_min, end_min in spec.windows:
            start = _local(midnight, start_min, tz)
            end = _local(midnight, end_min, tz)
            out.append(Occurrence(spec.name, start, end, start - spec.drain_lead_seconds))
    out.sort(key=lambda o: o.start)
    return out


def _local(midnight: datetime, minutes: int, tz: ZoneInfo) -> float:
    # Build the wall-clock time directly (not midnight + timedelta), so that a
    # window at 09:15 stays at 09:15 local on a DST day.
    wall = datetime(midnight.year, midnight.month, midnight.day, minutes // 60, minutes % 60)
    return wall.replace(tzinfo=tz).timestamp()


def current(spec: ReservationSpec, now: float) -> Occurrence | None:
    """The occurrence that is draining or open at ``now``, if any."""
    for o in occurrences(spec, now, days_ahead=1):
        if o.active(now):
            return o
    return None


def next_occurrence(spec: ReservationSpec, now: float) -> Occurrence | None:
    """The first occurrence that has not ended at ``now``."""
    for o in occurrences(spec, now):
        if o.end > now:
            return o
    return None
