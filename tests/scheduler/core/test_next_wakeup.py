"""``Scheduler.next_wakeup``: ticking only when it says so decides exactly what ticking often does.

For random clusters, policies and event sequences whose times are multiples of a
step N (so are every duration, grace period, guard window, stabilization and
reservation edge), two replays of the same events must take the same decisions,
byte for byte: one ticks at every multiple of N; the other ticks only at
``next_wakeup()`` and after calls that bring news (and, for what a tick itself made
due, one step after it, as the service's next heartbeat would). That is what lets the trace
replay jump from event to event instead of stepping a clock through idle time.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from zoneinfo import ZoneInfo

from core_testkit import FAST, T0, Clock, cluster, pool
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from scheduler.core import (
    Action,
    ClusterSpec,
    Decision,
    JobKind,
    JobRequest,
    JobState,
    PolicySpec,
    ReservationSpec,
    Scheduler,
)
from scheduler.core.errors import SchedulerError

STEP = 10.0  # N: every time in a scenario is a multiple of it
# T0 is a Friday 08:00 UTC; a window at 16:20-16:40 Shanghai (08:20-08:40 UTC) lies inside.
BELL = ReservationSpec(
    name="bell",
    pool="p0",
    gpus=1,
    timezone="Asia/Shanghai",
    days=(0, 1, 2, 3, 4),
    windows=((16 * 60 + 20, 16 * 60 + 40),),
    drain_lead_seconds=120,
)


def steps(lo: int, hi: int) -> st.SearchStrategy[float]:
    return st.integers(lo, hi).map(lambda n: n * STEP)


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[ClusterSpec, PolicySpec, list[tuple[float, tuple]]]:
    n0, n1, n2 = draw(st.integers(1, 4)), draw(st.integers(2, 6)), draw(st.integers(2, 6))
    spec = cluster(
        [
            pool("p0", "P0", 1000, n0, guaranteed=n0, lending=0, borrowing=n1 + n2),
            pool("p1", "P1", 500, n1, lending=draw(st.integers(1, n1)), borrowing=n2),
            pool("p2", "P2", 100, n2, lending=draw(st.integers(1, n2)), borrowing=n1),
        ],
        per_node=2,
        reservations=(BELL,) if draw(st.booleans()) else (),
    )
    policy = replace(
        FAST,
        min_runtime_seconds=draw(steps(0, 12)),
        default_grace_seconds=draw(steps(0, 6)),
        preemption_budget=draw(st.integers(1, 3)),
        preemption_budget_window_seconds=draw(steps(6, 60)),
        cycle_window_seconds=draw(steps(0, 60)),
        return_stabilization_seconds=draw(steps(0, 30)),
        scale_up_wait_seconds=draw(steps(0, 30)),
        rebalance_step_gpus=draw(st.integers(1, 4)),
        fairness_factor_per_hour=draw(st.sampled_from([0.0, 100.0, 5000.0])),
        victim_order=draw(st.sampled_from(["least_work_lost", "newest_first"])),
        cycle_guard=draw(st.booleans()),
    )
    events = draw(
        st.lists(
            st.tuples(
                steps(0, 240),
                st.one_of(
                    st.tuples(
                        st.just("submit"),
                        st.sampled_from(["p0", "p1", "p2", "p1", "p2"]),
                        st.integers(1, 4),
                        st.booleans(),
                        steps(1, 120),
                    ),
                    st.tuples(st.just("alert"), st.booleans()),
                    st.tuples(st.just("ack"), st.integers(0, 40)),
                    st.tuples(st.just("checkpoint"), st.integers(0, 40)),
                    st.tuples(st.just("cancel"), st.integers(0, 40)),
                ),
            ),
            min_size=1,
            max_size=30,
        )
    )
    events.sort(key=lambda e: e[0])
    return spec, policy, events


def apply(core: Scheduler, event: tuple, n: int) -> list[Decision]:
    """One call that brings news; a call the core refuses decides nothing."""
    kind = event[0]
    live = sorted(
        (j for j in core.iter_jobs() if j.state not in (JobState.COMPLETED, JobState.CANCELLED)),
        key=lambda j: j.id,
    )
    try:
        if kind == "submit":
            _, p, gpus, ckpt, duration = event
            job_kind = JobKind.INFERENCE if p == "p0" else JobKind.TRAINING
            return core.submit(
                JobRequest(
                    f"j{n}", p, gpus, job_kind, checkpointable=ckpt, duration_seconds=duration
                )
            )
        if kind == "alert":
            return core.alert(
                pool="p0", action="rebalance", firing=event[1], correlation_id=f"a{n}"
            )
        if not live:
            return []
        job = live[event[1] % len(live)]
        if kind == "ack":
            return core.ack_preemption(job.id)
        if kind == "checkpoint":
            core.report_checkpoint(job.id)
            return []
        return core.cancel(job.id)
    except SchedulerError:
        return []


def replay(
    spec: ClusterSpec, policy: PolicySpec, events: list[tuple[float, tuple]], *, every: bool
) -> list[str]:
    """Every decision as the store writes it; ``every``: tick at each multiple of STEP."""
    clock = Clock(T0)
    core = Scheduler(spec, policy, clock=clock)
    out: list[Decision] = []
    horizon = T0 + 240 * STEP + 1800  # the load stops; half an hour more lets timers run out
    pending = [(T0 + at, event) for at, event in events]
    i = n = 0
    last_tick = -math.inf
    while True:
        if every:
            at = clock.now if last_tick < clock.now else clock.now + STEP
        else:
            wake = core.next_wakeup()
            if wake <= clock.now and last_tick == clock.now:
                # Made due by this instant's tick itself (a job requeued after the scaling
                # step looked, one with no work left placed): the next tick takes it, as the
                # service's next heartbeat would; here one step later.
                wake = clock.now + STEP
            nxt = pending[i][0] if i < len(pending) else math.inf
            at = max(clock.now, min(nxt, wake))
        if at > horizon:
            break
        clock.now = max(clock.now, at)
        while i < len(pending) and pending[i][0] <= clock.now:
            out += apply(core, pending[i][1], n)
            i += 1
            n += 1
        if every or core.next_wakeup() <= clock.now:
            out += core.tick()
            last_tick = clock.now
    return [json.dumps(d.to_dict()) for d in out]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_ticking_at_next_wakeup_decides_as_ticking_every_step(scenario: tuple) -> None:
    spec, policy, events = scenario
    note(repr(scenario))
    assert replay(spec, policy, events, every=False) == replay(spec, policy, events, every=True)


def test_nothing_pending_is_never_and_a_completion_is_its_time() -> None:
    clock = Clock(T0)
    core = Scheduler(cluster([pool("p1", "P1", 500, 2)]), FAST, clock=clock)
    core.tick()
    assert core.next_wakeup() == math.inf
    core.submit(JobRequest("a", "p1", 1, duration_seconds=90.0))
    assert core.next_wakeup() == T0 + 90.0
    core.submit(JobRequest("b", "p1", 2))  # waits for "a"'s GPU: "a" maturing matters now
    assert core.next_wakeup() == T0 + FAST.min_runtime_seconds
    clock.now = T0 + FAST.min_runtime_seconds
    core.tick()
    assert core.next_wakeup() == T0 + 90.0
    clock.now = T0 + 90.0
    assert [d.action for d in core.tick()][:2] == [Action.COMPLETE, Action.PLACE]
    assert core.next_wakeup() == math.inf  # nothing waits, nothing ends


def test_a_grace_period_a_maturing_victim_and_a_return_are_wakeups() -> None:
    clock = Clock(T0)
    spec = cluster(
        [
            pool("p0", "P0", 1000, 1, guaranteed=1, lending=0, borrowing=2),
            pool("p1", "P1", 500, 2),
        ]
    )
    policy = replace(FAST, min_runtime_seconds=60.0, default_grace_seconds=10.0)
    core = Scheduler(spec, policy, clock=clock)
    core.tick()
    core.submit(JobRequest("t", "p1", 2, JobKind.TRAINING))
    assert core.next_wakeup() == math.inf  # "t" matures at 60 s, but nobody waits for it
    clock.now = T0 + 60.0
    core.manual_rebalance("p0", 2, "op")
    assert core.job("t").state is JobState.PREEMPTING
    assert core.next_wakeup() == T0 + 70.0  # its grace period ends
    clock.now = T0 + 70.0
    core.tick()
    # The operator's grant goes back after the stabilization window.
    assert core.next_wakeup() == T0 + 60.0 + policy.return_stabilization_seconds


def test_a_reservation_wakes_at_its_drain_and_at_its_end() -> None:
    clock = Clock(T0)
    core = Scheduler(
        cluster(
            [pool("p0", "P0", 1000, 2, borrowing=2), pool("p1", "P1", 500, 2)], reservations=(BELL,)
        ),
        FAST,
        clock=clock,
    )
    assert core.next_wakeup() == -math.inf  # no step yet: look at the windows now
    core.tick()
    shanghai = ZoneInfo("Asia/Shanghai")
    from datetime import datetime

    opens = datetime.fromtimestamp(T0, shanghai).replace(hour=16, minute=20).timestamp()
    assert core.next_wakeup() == opens - BELL.drain_lead_seconds
    clock.now = opens - BELL.drain_lead_seconds
    core.tick()
    assert core.next_wakeup() == opens + 20 * 60
