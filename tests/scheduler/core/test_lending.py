"""P0 lends its idle GPUs while the market is closed: lending windows, their loans, and the
drain that has every borrower gone before a window closes."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from core_testkit import FAST, T0, Clock, World, cluster, pool
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from scheduler.core import (
    Action,
    Cause,
    ClusterSpec,
    JobKind,
    JobRequest,
    JobState,
    LendingWindowSpec,
    ReservationSpec,
    Scheduler,
)
from scheduler.core.windows import lending

SH = ZoneInfo("Asia/Shanghai")
WEEKDAYS, WEEKEND = (6, 0, 1, 2, 3, 4), (5, 6)
# The committed stack's example: every evening to the next morning, and all weekend.
NIGHTS = LendingWindowSpec(6, "Asia/Shanghai", WEEKDAYS, ((18 * 60, 8 * 60 + 30),), 300)
WEEKENDS = LendingWindowSpec(6, "Asia/Shanghai", WEEKEND, ((0, 24 * 60),), 300)


def sh(*args: int) -> float:
    return datetime(*args, tzinfo=SH).timestamp()


def test_a_night_window_lends_from_the_evening_and_drains_before_the_morning() -> None:
    monday_evening = sh(2027, 1, 11, 18, 0)
    assert lending(0, (NIGHTS,), monday_evening - 1).limit == 0
    at = lending(0, (NIGHTS,), monday_evening)
    assert (at.limit, at.until, at.end) == (6, sh(2027, 1, 12, 8, 25), sh(2027, 1, 12, 8, 30))
    assert lending(0, (NIGHTS,), sh(2027, 1, 12, 8, 24, 59)).limit == 6
    assert lending(0, (NIGHTS,), sh(2027, 1, 12, 8, 25)).limit == 0  # the drain lead
    assert lending(0, (NIGHTS,), sh(2027, 1, 12, 12, 0)).limit == 0


def test_windows_that_touch_are_one_stretch_from_friday_evening_to_monday_morning() -> None:
    windows = (NIGHTS, WEEKENDS)
    friday = lending(0, windows, sh(2027, 1, 15, 20, 0))
    assert (friday.limit, friday.until) == (6, sh(2027, 1, 18, 8, 25))
    # No drain at midnight between Saturday and Sunday.
    assert lending(0, windows, sh(2027, 1, 16, 23, 57)).limit == 6
    assert lending(0, windows, sh(2027, 1, 18, 8, 0)).limit == 6
    assert lending(0, windows, sh(2027, 1, 18, 8, 26)).limit == 0


def test_a_window_never_lowers_the_usual_limit() -> None:
    assert lending(8, (NIGHTS,), sh(2027, 1, 11, 20, 0)).limit == 8
    assert lending(8, (NIGHTS,), sh(2027, 1, 11, 20, 0)).until is None


def night_cluster(**p2: int) -> ClusterSpec:
    bell = ReservationSpec(
        "bell", "p0", 4, "Asia/Shanghai", (0, 1, 2, 3, 4), ((9 * 60 + 15, 9 * 60 + 45),), 300
    )
    return cluster(
        [
            pool(
                "p0",
                "P0",
                1000,
                8,
                guaranteed=8,
                lending=0,
                borrowing=8,
                preemptible=False,
                lending_windows=(NIGHTS, WEEKENDS),
            ),
            pool("p1", "P1", 500, 4, lending=0, borrowing=6),
            pool("p2", "P2", 100, 4, lending=0, borrowing=p2.get("borrowing", 6)),
        ],
        reservations=(bell,),
    )


def test_p0_lends_at_night_to_jobs_that_can_go_by_the_morning(world: World) -> None:
    world.clock.now = sh(2027, 1, 12, 1, 0)  # Tuesday, 01:00
    core = world.make(night_cluster(), FAST)
    core.seed([JobRequest("p0-serving", "p0", 2, JobKind.INFERENCE, started_at=world.clock.now)])
    core.seed([JobRequest(f"own{p}", p, 4, started_at=world.clock.now) for p in ("p1", "p2")])
    core.tick()
    assert core.pool_view("p0").lending_limit == 6
    assert core.pool_view("p0").loans_until == sh(2027, 1, 12, 8, 25)
    # Training that checkpoints borrows P0's idle GPUs; P0 keeps two idle of its own.
    core.submit(JobRequest("train", "p1", 4, JobKind.TRAINING, checkpointable=True))
    assert core.job("train").state is JobState.RUNNING
    # Batch work that cannot checkpoint only if it is done before the drain.
    core.submit(JobRequest("endless", "p2", 2))
    core.submit(JobRequest("short", "p2", 2, duration_seconds=3 * 3600))
    assert core.job("endless").state is JobState.QUEUED
    assert core.job("short").state is JobState.RUNNING
    view = core.pool_view("p0")
    assert (view.lent, view.idle) == (6, 0)
    # A third borrower would pass the six: it waits.
    core.submit(JobRequest("more", "p1", 1, JobKind.TRAINING, checkpointable=True))
    assert core.job("more").state is JobState.QUEUED
    # 08:25: the drain lead; borrowers are preempted for no one (their GPUs go home).
    world.clock.now = sh(2027, 1, 12, 8, 24)
    core.tick()
    assert core.job("short").state is JobState.COMPLETED  # at 04:00
    assert core.job("more").state is JobState.RUNNING  # on what 'short' gave back
    assert core.pool_view("p0").lent == 5
    world.clock.now = sh(2027, 1, 12, 8, 25)
    ds = core.tick()
    drains = [d for d in ds if d.action == Action.PREEMPT]
    # Cheapest first: 'more' has 1 GPU x 4.4 h at risk, 'train' 4 GPUs x 7.4 h.
    assert [(d.job, d.cause) for d in drains] == [
        ("more", Cause.LOAN_END),
        ("train", Cause.LOAN_END),
    ]
    assert "lending window of p0 is closing" in drains[0].reason
    assert core.pool_view("p0").lending_limit == 0
    world.clock.advance(FAST.default_grace_seconds)
    core.tick()
    assert core.pool_view("p0").lent == 0  # gone before 08:30
    assert core.job("train").state is JobState.REQUEUED
    # The bell: the reservation drains at 09:10 and P0 is not kept waiting at 09:15.
    world.clock.now = sh(2027, 1, 12, 9, 10)
    core.tick()
    world.clock.now = sh(2027, 1, 12, 9, 15)
    (res,) = core.reservation_views()
    assert res.open and res.satisfied


def test_loans_need_a_job_the_guards_would_let_go_in_time(world: World) -> None:
    world.clock.now = sh(2027, 1, 12, 8, 21)  # four minutes before the drain lead
    core = world.make(night_cluster(), replace(FAST, min_runtime_seconds=300))
    core.seed([JobRequest(f"own{p}", p, 4, started_at=world.clock.now) for p in ("p1", "p2")])
    core.tick()
    # It would still be inside its minimum runtime at 08:25: no loan.
    core.submit(JobRequest("late", "p1", 1, JobKind.TRAINING, checkpointable=True))
    assert core.job("late").state is JobState.QUEUED
    # Nor for a job that may not be preempted, or whose grace outlasts the lead.
    world.clock.now = sh(2027, 1, 12, 2, 0)
    core.tick()
    core.submit(
        JobRequest("fixed", "p1", 1, JobKind.TRAINING, checkpointable=True, preemptible=False)
    )
    core.submit(
        JobRequest("slow", "p1", 1, JobKind.TRAINING, checkpointable=True, grace_seconds=600)
    )
    assert core.job("fixed").state is JobState.QUEUED
    assert core.job("slow").state is JobState.QUEUED
    core.cancel("fixed")
    core.cancel("slow")
    world.clock.advance(60)
    core.tick()
    assert core.job("late").state is JobState.RUNNING  # at 02:00 it has the whole night


def test_p0_reclaims_what_it_lent_when_it_needs_it_at_night(world: World) -> None:
    world.clock.now = sh(2027, 1, 12, 1, 0)
    core = world.make(night_cluster(), FAST)
    core.seed([JobRequest(f"own{p}", p, 4, started_at=world.clock.now) for p in ("p1", "p2")])
    core.tick()
    core.submit(JobRequest("train", "p1", 6, JobKind.TRAINING, checkpointable=True))
    assert core.pool_view("p0").lent == 6
    world.clock.advance(FAST.min_runtime_seconds)
    ds = core.submit(JobRequest("risk", "p0", 4, JobKind.INFERENCE))
    assert [(d.job, d.cause) for d in ds if d.action == Action.PREEMPT] == [
        ("train", Cause.RECLAIM)
    ]


# --------------------------------------------------------------------------- property

# T0 is 08:00 UTC: a window lending until 08:20 and one lending again from 08:30.
MORNING = LendingWindowSpec(3, "UTC", tuple(range(7)), ((7 * 60, 8 * 60 + 20),), 300)
LATER = LendingWindowSpec(2, "UTC", tuple(range(7)), ((8 * 60 + 30, 9 * 60),), 120)
CLOSES = (T0 + 20 * 60, T0 + 60 * 60)
OPENS = (T0 - 60 * 60, T0 + 30 * 60)


@st.composite
def clusters(draw: st.DrawFn) -> ClusterSpec:
    n0 = draw(st.integers(3, 6))
    return cluster(
        [
            pool(
                "p0",
                "P0",
                1000,
                n0,
                guaranteed=n0,
                lending=0,
                borrowing=4,
                preemptible=False,
                lending_windows=(MORNING, LATER),
            ),
            pool("p1", "P1", 500, draw(st.integers(1, 4)), lending=0, borrowing=n0),
            pool("p2", "P2", 100, draw(st.integers(1, 4)), lending=0, borrowing=n0),
        ],
        per_node=1,
    )


EVENTS = st.lists(
    st.one_of(
        st.tuples(
            st.just("submit"),
            st.sampled_from(["p1", "p2"]),
            st.integers(1, 3),
            st.booleans(),
            st.one_of(st.none(), st.integers(60, 3600)),
        ),
        st.tuples(
            st.just("submit"), st.just("p0"), st.integers(1, 3), st.just(False), st.just(600)
        ),
        st.tuples(st.just("advance"), st.integers(10, 90)),
        st.tuples(st.just("advance"), st.integers(10, 90)),
        st.tuples(st.just("advance"), st.integers(10, 90)),
        st.tuples(st.just("ack"), st.integers(0, 30)),
        st.tuples(st.just("checkpoint"), st.integers(0, 30)),
    ),
    min_size=30,
    max_size=120,
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), EVENTS)
def test_lending_window_borrowers_are_gone_before_the_window_closes(
    spec: ClusterSpec, evs: list[tuple[object, ...]]
) -> None:
    clock = Clock()
    policy = replace(FAST, min_runtime_seconds=30.0, default_grace_seconds=20.0)
    core = Scheduler(spec, policy, clock=clock)
    home = {g.uuid: g.pool for g in spec.gpus}
    n = 0
    for ev in evs:
        live = [
            j for j in core.iter_jobs() if j.state not in (JobState.COMPLETED, JobState.CANCELLED)
        ]
        if ev[0] == "submit":
            _, p, gpus, ckpt, dur = ev
            kind = JobKind.INFERENCE if p == "p0" else JobKind.TRAINING
            core.submit(
                JobRequest(
                    f"j{n}",
                    str(p),
                    int(str(gpus)),
                    kind,
                    checkpointable=bool(ckpt),
                    duration_seconds=None if dur is None else float(str(dur)),
                )
            )
            n += 1
        elif ev[0] == "advance":
            clock.advance(float(str(ev[1])))
            if any(d.cause == Cause.LOAN_END for d in core.tick()):
                event("borrowers drained")
        elif live and ev[0] == "ack":
            core.ack_preemption(live[int(str(ev[1])) % len(live)].id)
        elif live and ev[0] == "checkpoint":
            j = live[int(str(ev[1])) % len(live)]
            if j.checkpointable and j.state in (JobState.RUNNING, JobState.PREEMPTING):
                core.report_checkpoint(j.id)
        now = clock.now
        window = next(
            (w for w, o, c in zip((MORNING, LATER), OPENS, CLOSES, strict=True) if o <= now < c),
            None,
        )
        on_p0 = [
            j
            for j in core.iter_jobs()
            if j.pool != "p0" and any(home[u] == "p0" for u in j.gpu_ids)
        ]
        if on_p0:
            event("P0's GPUs lent")
        if window is None:
            # Closed: nobody else on P0's GPUs any more.
            assert not on_p0, (now - T0, [j.id for j in on_p0])
        else:
            assert core.pool_view("p0").lent <= window.gpus
        for j in on_p0:
            # Only jobs that lose little by the drain: checkpointing, or done before it.
            done_in_time = j.duration_seconds is not None and j.started_at is not None
            assert j.checkpointable or done_in_time, j.id
    if clock.now >= CLOSES[0]:
        event("ran past a window's close")
