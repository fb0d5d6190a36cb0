"""Recurring, timezone-aware reservation windows."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from scheduler.core.model import ReservationSpec
from scheduler.core.windows import current, next_occurrence

BELL = ReservationSpec(
    name="bell",
    pool="p0",
    gpus=8,
    timezone="Asia/Shanghai",
    days=(0, 1, 2, 3, 4),
    windows=((9 * 60 + 15, 9 * 60 + 45), (14 * 60 + 45, 15 * 60 + 15)),
    drain_lead_seconds=300,
)


def at(tz: str, *args: int) -> float:
    return datetime(*args, tzinfo=ZoneInfo(tz)).timestamp()


def test_window_opens_at_local_time_with_its_drain_lead() -> None:
    bell = at("Asia/Shanghai", 2027, 1, 15, 9, 15)  # Friday
    assert current(BELL, bell - 301) is None
    occ = current(BELL, bell - 300)
    assert occ is not None and occ.start == bell and occ.end == bell + 1800
    assert not occ.open(bell - 1) and occ.open(bell)
    assert current(BELL, bell + 1800) is None
    afternoon = current(BELL, at("Asia/Shanghai", 2027, 1, 15, 15, 0))
    assert afternoon is not None and afternoon.start == at("Asia/Shanghai", 2027, 1, 15, 14, 45)


def test_weekends_are_skipped() -> None:
    saturday = at("Asia/Shanghai", 2027, 1, 16, 9, 20)
    assert current(BELL, saturday) is None
    nxt = next_occurrence(BELL, saturday)
    assert nxt is not None and nxt.start == at("Asia/Shanghai", 2027, 1, 18, 9, 15)  # Monday


def test_local_time_holds_across_a_dst_change() -> None:
    ny = ReservationSpec(
        name="nyse",
        pool="p0",
        gpus=8,
        timezone="America/New_York",
        days=(0, 1, 2, 3, 4),
        windows=((9 * 60 + 30, 10 * 60),),
        drain_lead_seconds=0,
    )
    before = next_occurrence(ny, at("America/New_York", 2027, 3, 12, 0, 0))  # Fri, EST
    after = next_occurrence(ny, at("America/New_York", 2027, 3, 15, 0, 0))  # Mon, EDT
    assert before is not None and after is not None
    assert before.start == at("America/New_York", 2027, 3, 12, 9, 30)
    assert after.start == at("America/New_York", 2027, 3, 15, 9, 30)
    # Same wall-clock time, one hour less in UTC offset terms.
    assert (after.start - before.start) % 86400 == 86400 - 3600
