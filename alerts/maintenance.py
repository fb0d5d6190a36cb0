"""Maintenance windows as Alertmanager 0.25 ``time_intervals`` and muted routes.

Each window of the stack becomes one named time interval, in the stack's
timezone (``location``): a one-off window is one entry per calendar day it
touches (year, month, day of month, times), a weekly one an entry per run of
days (one more for the part past midnight).

Alertmanager mutes a route, not an alert, and picks the first child route that
matches. So each on-call route gets a small tree of children: an alert that
matches the matchers of windows A and B lands on a child muted during A and B,
one that matches only A on a child muted during A. Windows with the same
matchers share a node, and a branch whose equality matchers contradict
(``node="a"`` and ``node="b"``) is left out. Children inherit the receiver, so
outside the windows the alert goes where it always did.

The scheduler's route is never given a child: P0 action alerts reach the
scheduler whatever maintenance is under way.
"""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from alerts.errors import AlertsError
from deploy.stack import DAYS, MATCHER, Maintenance, Stack, WeeklyWindow

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
# Each distinct matcher set doubles the muting tree under every on-call route.
MAX_MATCHER_SETS = 8


def _hhmm(t: time | None) -> str:
    return "24:00" if t is None else t.strftime("%H:%M")


def _span(start: time, end: time | None) -> dict[str, str]:
    return {"start_time": _hhmm(start), "end_time": _hhmm(end)}


def _once(start: datetime, end: datetime, tz: str) -> list[dict[str, Any]]:
    """One entry per calendar day of [start, end)."""
    out = []
    day = start.date()
    while datetime.combine(day, time()) < end:
        begin = start.time() if day == start.date() else time()
        stop = end.time() if day == end.date() else None
        out.append(
            {
                "times": [_span(begin, stop)],
                "days_of_month": [str(day.day)],
                "months": [MONTHS[day.month - 1]],
                "years": [str(day.year)],
                "location": tz,
            }
        )
        day += timedelta(days=1)
    return out


def _weekly(w: WeeklyWindow, tz: str) -> list[dict[str, Any]]:
    days = [WEEKDAYS[DAYS.index(d)] for d in w.days]
    if w.end is None or w.end > w.start:
        return [{"times": [_span(w.start, w.end)], "weekdays": days, "location": tz}]
    # Past midnight: the evening on the named days, the morning on the day after each.
    after = [WEEKDAYS[(DAYS.index(d) + 1) % 7] for d in w.days]
    return [
        {"times": [_span(w.start, None)], "weekdays": days, "location": tz},
        {"times": [_span(time(), w.end)], "weekdays": after, "location": tz},
    ]


def time_interval(m: Maintenance, tz: str) -> dict[str, Any]:
    entries = [e for start, end in m.once for e in _once(start, end, tz)]
    entries += [e for w in m.weekly for e in _weekly(w, tz)]
    return {"name": m.name, "time_intervals": entries}


def _minutes(t: time | None) -> int:
    return 1440 if t is None else t.hour * 60 + t.minute


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def utc_entries(m: Maintenance, tz: str) -> list[dict[str, Any]]:
    """The window's entries in UTC, without ``location``: for configurations that cannot say
    a timezone (the Prometheus Operator's AlertmanagerConfig). One-off windows convert
    exactly; weekly ones only where the zone's offset never changes."""
    zone = ZoneInfo(tz)
    out = []
    for start, end in m.once:
        begin = start.replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None)
        stop = end.replace(tzinfo=zone).astimezone(UTC).replace(tzinfo=None)
        out += [{k: v for k, v in e.items() if k != "location"} for e in _once(begin, stop, "")]
    if not m.weekly:
        return out
    offsets = {
        datetime(y, mo, 1, tzinfo=zone).utcoffset()
        for y in range(2000, 2041)
        for mo in (1, 4, 7, 10)
    }
    if len(offsets) != 1:
        raise AlertsError(
            f"alerting.maintenance {m.name}: a weekly window in {tz}, whose UTC offset changes, "
            "cannot be written without a timezone"
        )
    offset = int(next(iter(offsets)).total_seconds()) // 60  # type: ignore[union-attr]
    week = 7 * 1440
    pieces: dict[tuple[int, int], list[str]] = {}
    for w in m.weekly:
        length = (_minutes(w.end) - _minutes(w.start)) % 1440 or 1440
        for d in w.days:
            at = (DAYS.index(d) * 1440 + _minutes(w.start) - offset) % week
            left = length
            while left > 0:
                day, minute = divmod(at, 1440)
                take = min(left, 1440 - minute)
                pieces.setdefault((minute, minute + take), []).append(WEEKDAYS[day])
                at, left = (at + take) % week, left - take
    for (a, b), days in pieces.items():
        out.append({"times": [{"start_time": _clock(a), "end_time": _clock(b)}], "weekdays": days})
    return out


def time_intervals(stack: Stack) -> list[dict[str, Any]]:
    return [time_interval(m, stack.alerting.timezone) for m in stack.alerting.maintenance]


def _equalities(matchers: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for m in matchers:
        found = MATCHER.match(m)
        if found and found[2] == "=":
            out[found[1]] = found[3]
    return out


def _contradicts(a: dict[str, str], b: dict[str, str]) -> bool:
    return any(k in b and b[k] != v for k, v in a.items())


def matcher_sets(stack: Stack) -> list[tuple[tuple[str, ...], list[str]]]:
    """Distinct matcher sets, in stack order, each with the windows that use it."""
    sets: dict[frozenset[str], tuple[tuple[str, ...], list[str]]] = {}
    for m in stack.alerting.maintenance:
        sets.setdefault(frozenset(m.matchers), (m.matchers, []))[1].append(m.name)
    if len(sets) > MAX_MATCHER_SETS:
        raise AlertsError(
            f"alerting.maintenance: {len(sets)} distinct matcher sets, at most "
            f"{MAX_MATCHER_SETS}: give windows on the same things the same matchers"
        )
    return list(sets.values())


def mute_routes(stack: Stack) -> list[dict[str, Any]]:
    """The children to hang under an on-call route so it is muted during maintenance."""

    def tree(
        rest: list[tuple[tuple[str, ...], list[str]]], muted: tuple[str, ...], eq: dict[str, str]
    ) -> list[dict[str, Any]]:
        if not rest:
            return []
        (matchers, names), later = rest[0], rest[1:]
        out = []
        here = _equalities(matchers)
        if not _contradicts(here, eq):
            now = (*muted, *names)
            route: dict[str, Any] = {"matchers": list(matchers), "mute_time_intervals": list(now)}
            children = tree(later, now, {**eq, **here})
            if children:
                route["routes"] = children
            out.append(route)
        return out + tree(later, muted, eq)

    return tree(matcher_sets(stack), (), {})
