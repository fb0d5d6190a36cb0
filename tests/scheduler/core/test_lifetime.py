"""A job's lost work is bounded for its whole life: lifetime caps, the preemption boost,
the budget on every path, and a history no restart erases."""

from __future__ import annotations

import re
import tempfile
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import pytest
from core_testkit import FAST, T0, Clock, Durable, World, bank, cluster, pool
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from scheduler.core import (
    Action,
    Cause,
    ClusterSpec,
    Decision,
    InvalidRequest,
    JobKind,
    JobRequest,
    JobState,
    PolicySpec,
    ReservationSpec,
    Scheduler,
)

PREEMPTED_FOR = re.compile(r"^(\S+) preempted for (\S+) \(")


def busy_p0() -> JobRequest:
    """P0 serving on all of its own GPUs: a grant must come from the others."""
    return JobRequest("p0-serving", "p0", 4, JobKind.INFERENCE, started_at=T0 - 60)


def preempts(ds: list[Decision], job: str | None = None) -> list[Decision]:
    return [
        d
        for d in ds
        if d.action == Action.PREEMPT and d.result == "ok" and (job is None or d.job == job)
    ]


# --------------------------------------------------------------------------- scenarios


def test_a_job_that_cannot_checkpoint_loses_its_work_once_in_its_life(world: World) -> None:
    """The issue's job: 118 h without checkpoints, preempted 47 times. Now once."""
    policy = replace(FAST, preemption_budget=3, preemption_budget_window_seconds=3600)
    core = world.make(policy=policy)
    core.seed([busy_p0(), JobRequest("fixed", "p1", 8, preemptible=False, started_at=T0 - 60)])
    core.seed([JobRequest("long", "p2", 4, JobKind.BATCH, started_at=T0 - 3600)])
    lost = []
    for day in range(5):  # a P0 breach a day, for days
        ds = core.manual_rebalance("p0", 4, f"breach-{day}")
        lost += [d.gpu_seconds_lost for d in core.ack_preemption("long")]
        assert len(preempts(ds, "long")) == (1 if day == 0 else 0)
        world.clock.advance(FAST.return_stabilization_seconds)
        core.tick()  # the grant goes back: the job resumes
        assert core.job("long").state is JobState.RUNNING
        world.clock.advance(86400)
    view = core.job("long")
    assert view.preemptions_total == 1 and view.resume_count == 1
    assert view.gpu_seconds_lost == sum(lost) == 4 * 3600  # the one run it lost


def test_a_checkpointing_job_has_a_cap_of_its_own(world: World) -> None:
    policy = replace(FAST, max_preemptions_checkpointing=2, preemption_budget=10)
    core = world.make(policy=policy)
    core.seed([busy_p0(), JobRequest("fixed", "p1", 8, preemptible=False, started_at=T0 - 60)])
    core.seed(
        [JobRequest("train", "p2", 4, JobKind.TRAINING, checkpointable=True, started_at=T0 - 600)]
    )
    for i in range(3):
        world.clock.advance(FAST.min_runtime_seconds)
        ds = core.manual_rebalance("p0", 4, f"op-{i}")
        assert len(preempts(ds, "train")) == (1 if i < 2 else 0)
        core.ack_preemption("train")
        world.clock.advance(FAST.return_stabilization_seconds)
        core.tick()
    assert core.job("train").preemptions_total == 2


def test_each_preemption_raises_a_jobs_priority_among_equally_cheap_victims(world: World) -> None:
    # Two stateless P2 replicas lose nothing: the one preempted before is spared.
    policy = replace(FAST, preemption_priority_boost=50.0)
    core = world.make(policy=policy)
    core.seed([busy_p0(), JobRequest("fixed", "p1", 8, preemptible=False, started_at=T0 - 60)])
    core.seed(
        [JobRequest(f"r{i}", "p2", 2, JobKind.INFERENCE, started_at=T0 - 600 - i) for i in (1, 2)]
    )
    first = preempts(core.manual_rebalance("p0", 2, "a"))
    assert [d.job for d in first] == ["r1"]  # most recently started, all else equal
    core.ack_preemption("r1")
    world.clock.advance(FAST.return_stabilization_seconds)
    core.tick()  # the grant goes back, r1 resumes
    world.clock.advance(FAST.min_runtime_seconds)
    (again,) = preempts(core.manual_rebalance("p0", 2, "b"))
    assert again.job == "r2"  # r1 started later again, but it was preempted: boosted
    core.ack_preemption("r2")
    boosted = core.queue("p2")
    assert [(v.id, eff) for v, eff in boosted] == [("r2", 100.0 + 50.0)]  # waits boosted too


def test_the_budget_on_the_reclaim_path(world: World) -> None:
    """A P1 job borrowing P2's GPUs, reclaimed twice inside the window, is not reclaimed a
    third time; nor after a restart."""
    policy = replace(FAST, preemption_budget=2, max_preemptions_checkpointing=0)
    spec = cluster(
        [
            pool("p0", "P0", 1000, 2, guaranteed=2, lending=0, borrowing=2, preemptible=False),
            pool("p1", "P1", 500, 2, lending=2, borrowing=2),
            pool("p2", "P2", 100, 2, lending=2, borrowing=0),
        ],
        per_node=2,
    )
    with tempfile.TemporaryDirectory() as tmp:
        d = Durable(spec, policy, world.clock, Path(tmp) / "s.db")
        d.call(
            lambda c: c.submit(JobRequest("big", "p1", 4, JobKind.TRAINING, checkpointable=True))
        )
        assert d.core.pool_view("p1").borrowed == 2
        for i in range(3):
            world.clock.advance(FAST.min_runtime_seconds)
            ds = d.call(lambda c, i=i: c.submit(JobRequest(f"b{i}", "p2", 2, duration_seconds=5)))
            reclaimed = preempts(ds, "big")
            assert [x.cause for x in reclaimed] == ([Cause.RECLAIM] if i < 2 else [])
            d.call(lambda c: c.ack_preemption("big"))
            world.clock.advance(5)
            d.call(lambda c: c.tick())  # b completes; big resumes on P2's GPUs again
            assert d.core.job("big").state is JobState.RUNNING
            if i == 1:
                d.restart()  # the history survives it
                assert d.core.job("big").preemptions_total == 2
        d.close()


def test_a_restart_keeps_the_cycle_detectors_memory(world: World) -> None:
    spec = cluster(
        [
            pool("top", "P0", 1000, 4, borrowing=4, lending=0, guaranteed=4),
            pool("low", "P2", 100, 4, borrowing=0),
        ]
    )
    with tempfile.TemporaryDirectory() as tmp:
        d = Durable(spec, FAST, world.clock, Path(tmp) / "s.db")
        d.call(lambda c: c.seed([JobRequest("top-own", "top", 4, started_at=T0 - 3600)]))
        d.call(lambda c: c.seed([JobRequest("B", "low", 4, started_at=T0 - 3600)]))
        d.call(lambda c: c.submit(JobRequest("A", "top", 4)))  # A preempts B
        d.call(lambda c: c.ack_preemption("B"))
        world.clock.advance(FAST.min_runtime_seconds)
        d.restart()
        # B reclaiming from A would reverse A-for-B inside the window: still refused.
        d.call(lambda c: c.tick())
        assert d.core.job("A").state is JobState.RUNNING
        assert d.core.cycles_refused == 1
        d.restart()
        world.clock.advance(1)
        d.call(lambda c: c.tick())  # refused again, not counted again
        assert d.core.cycles_refused == 1
        d.restart()
        world.clock.advance(FAST.cycle_window_seconds)
        ds = d.call(lambda c: c.tick())
        assert [(x.job, x.cause) for x in preempts(ds)] == [("A", Cause.RECLAIM)]
        assert d.core.cycles_refused == 1  # counted once, across the restarts
        d.close()


def test_a_capped_job_still_gives_back_a_pools_floor(world: World) -> None:
    """The one exception to the cap: a pool reclaiming its guaranteed floor (lent only
    inside a lending window). A cap lowered while the borrower runs makes it capped."""
    from scheduler.core import LendingWindowSpec

    always = LendingWindowSpec(
        gpus=4, timezone="UTC", days=tuple(range(7)), windows=((0, 1440),), drain_lead_seconds=60
    )
    spec = cluster(
        [
            pool(
                "p0",
                "P0",
                1000,
                4,
                guaranteed=4,
                lending=0,
                borrowing=0,
                preemptible=False,
                lending_windows=(always,),
            ),
            pool("p1", "P1", 500, 4, lending=0, borrowing=4),
        ]
    )
    policy = replace(FAST, max_preemptions_checkpointing=0)
    core = world.make(spec, policy)
    core.tick()  # the window is open: P0 lends
    core.submit(JobRequest("mine", "p1", 4, JobKind.TRAINING, checkpointable=True))
    core.submit(JobRequest("loaned", "p1", 4, JobKind.TRAINING, checkpointable=True))
    assert core.job("loaned").state is JobState.RUNNING
    assert core.pool_view("p0").lent == 4
    # It was preempted before (an old history), and now the cap says: no more.
    core.set_policy(max_preemptions_checkpointing=1)
    loaned = core.job("loaned")
    assert loaned.preemptions_total == 0
    world.clock.advance(FAST.min_runtime_seconds)
    # P1 cannot take it (same pool, no floor of its own lent); P0 reclaims its floor.
    ds = core.submit(JobRequest("risk", "p0", 4, JobKind.INFERENCE))
    assert [(d.job, d.cause) for d in preempts(ds)] == [("loaned", Cause.RECLAIM)]
    core.ack_preemption("loaned")
    assert core.job("risk").state is JobState.RUNNING
    # Now capped: P0 takes nothing of it again, but for its floor.
    assert core.job("loaned").preemptions_total == 1


# --------------------------------------------------------------------------- properties

WINDOW = 900.0
POLICIES = st.builds(
    lambda caps, boost, cost_first: replace(
        FAST,
        min_runtime_seconds=10.0,
        default_grace_seconds=20.0,
        preemption_budget=2,
        preemption_budget_window_seconds=WINDOW,
        cycle_window_seconds=300.0,
        max_preemptions_checkpointing=caps[0],
        max_preemptions_non_checkpointing=caps[1],
        preemption_priority_boost=boost,
        cost_before_class=cost_first,
        drain_after_seconds=0.0,
    ),
    st.sampled_from([(0, 0), (3, 1), (1, 2), (5, 1)]),
    st.sampled_from([0.0, 100.0, 1000.0]),
    st.booleans(),
)
# The reservation window opens minutes after T0 (08:00 UTC): its drain preempts for P0.
BELL = ReservationSpec(
    name="bell",
    pool="p0",
    gpus=2,
    timezone="UTC",
    days=tuple(range(7)),
    windows=((8 * 60 + 10, 8 * 60 + 25),),
    drain_lead_seconds=120,
)


@st.composite
def clusters(draw: st.DrawFn) -> ClusterSpec:
    n0, n1, n2 = draw(st.integers(1, 4)), draw(st.integers(2, 6)), draw(st.integers(2, 6))
    total = n0 + n1 + n2
    return cluster(
        [
            pool(
                "p0", "P0", 1000, n0, guaranteed=n0, lending=0, borrowing=total, preemptible=False
            ),
            # P1 and P2 lend each other everything: P1 borrows P2's GPUs, P2 reclaims them.
            pool("p1", "P1", 500, n1, lending=n1, borrowing=draw(st.integers(1, n2))),
            pool("p2", "P2", 100, n2, lending=n2, borrowing=draw(st.integers(0, n1))),
        ],
        per_node=2,
        reservations=(BELL,) if draw(st.booleans()) else (),
    )


EVENTS = st.lists(
    st.one_of(
        st.tuples(
            st.just("submit"),
            st.sampled_from(["p1", "p1", "p2", "p0"]),
            st.integers(1, 4),
            st.booleans(),
            st.integers(60, 1800),
        ),
        st.tuples(st.just("advance"), st.integers(5, 90)),
        st.tuples(st.just("advance"), st.integers(5, 90)),
        st.tuples(st.just("alert"), st.booleans()),
        # A breach, victims acknowledging at once, the grant given back: jobs cycle fast.
        st.tuples(st.just("breach"), st.integers(10, 60)),
        st.tuples(st.just("ack"), st.integers(0, 50)),
        st.tuples(st.just("checkpoint"), st.integers(0, 50)),
        st.tuples(
            st.just("restart"),
        ),
        # P1 fills every idle GPU it may have, borrowing P2's; then P2 wants all of its
        # own back, reclaiming them.
        st.tuples(st.just("fill"), st.sampled_from(["p1", "p2"]), st.booleans()),
    ),
    min_size=10,
    max_size=45,
)


def fits_borrowed(core: Scheduler) -> bool:
    p1, p2 = core.pool_view("p1"), core.pool_view("p2")
    return p1.borrowed < p1.borrowing_limit and p2.idle > 0


def step(d: Durable, ev: tuple[object, ...], n: int) -> int:
    core = d.core
    live = [j for j in core.iter_jobs() if j.state not in (JobState.COMPLETED, JobState.CANCELLED)]
    kind = ev[0]
    if kind == "submit":
        _, p, gpus, ckpt, dur = ev
        assert isinstance(p, str) and isinstance(gpus, int) and isinstance(dur, int)
        me = next(q for q in d.spec.pools if q.name == p)
        if gpus <= me.nominal_gpus + me.borrowing_limit:
            req = JobRequest(
                f"j{n}",
                p,
                gpus,
                JobKind.INFERENCE if p == "p0" else JobKind.TRAINING,
                checkpointable=bool(ckpt),
                duration_seconds=float(dur),
            )
            try:
                d.call(lambda c: c.submit(req))
            except InvalidRequest as e:  # too big for its pool with these limits
                assert "may ever hold" in str(e)
            n += 1
    elif kind == "advance":
        assert isinstance(ev[1], int)
        d.clock.advance(ev[1])
        d.call(lambda c: c.tick())
    elif kind == "alert":
        d.call(
            lambda c: c.alert(pool="p0", action="rebalance", firing=bool(ev[1]), correlation_id="")
        )
    elif kind == "restart":
        d.restart()
    elif kind == "ack_job":
        d.call(lambda c: c.ack_preemption(str(ev[1])))
    elif kind == "breach":
        assert isinstance(ev[1], int)
        ds = d.call(lambda c: c.manual_rebalance("p0", 2, "breach"))
        for x in preempts(ds):
            n = step(d, ("ack_job", x.job), n)
        d.clock.advance(ev[1])
        d.call(lambda c: c.tick())
    elif kind == "fill":
        _, p, reclaim = ev
        assert isinstance(p, str)
        while d.core.pool_view(p).idle or (p == "p1" and fits_borrowed(d.core)):
            req = JobRequest(
                f"j{n}", p, 1, JobKind.TRAINING, checkpointable=n % 2 == 0, duration_seconds=1800.0
            )
            n += 1
            if not any(x.action == Action.PLACE for x in d.call(lambda c, r=req: c.submit(r))):
                break
        if reclaim:
            p2 = d.core.pool_view("p2")
            req = JobRequest(f"j{n}", "p2", p2.nominal_gpus, duration_seconds=600.0)
            n += 1
            try:
                d.call(lambda c: c.submit(req))
            except InvalidRequest as e:  # its GPUs straddle nodes: its pods fit on none
                assert "fit on no nodes" in str(e)
    elif live and kind == "ack":
        assert isinstance(ev[1], int)
        job = live[ev[1] % len(live)].id
        d.call(lambda c: c.ack_preemption(job))
    elif live and kind == "checkpoint":
        assert isinstance(ev[1], int)
        j = live[ev[1] % len(live)]
        if j.checkpointable and j.state in (JobState.RUNNING, JobState.PREEMPTING):
            d.call(lambda c: c.report_checkpoint(j.id))
    return n


def check_history(d: Durable, policy: PolicySpec) -> None:
    times: dict[str, list[float]] = defaultdict(list)
    pairs: dict[tuple[str, str], float] = {}
    for x in preempts(d.decisions):
        assert x.job is not None
        event(f"preempt {x.cause}")
        t = x.at
        times[x.job].append(t)
        # The budget, on every path: never more than it inside any window.
        recent = [s for s in times[x.job] if s > t - policy.preemption_budget_window_seconds]
        assert len(recent) <= policy.preemption_budget, (x.job, times[x.job])
        # The cycle memory: B is never preempted for A soon after A was for B.
        m = PREEMPTED_FOR.match(x.reason)
        if m:
            victim, preemptor = m.groups()
            back = pairs.get((preemptor, victim))
            assert back is None or t - back >= policy.cycle_window_seconds, (victim, preemptor)
            pairs[(victim, preemptor)] = t
    for job in d.core.iter_jobs():
        # The whole history, after any number of restarts.
        mine = times.get(job.id, [])
        assert job.preemptions_total == len(mine)
        window = policy.preemption_budget_window_seconds
        assert list(job.preemptions) == [t for t in mine if t > mine[-1] - window]
        # No floor is ever lent here, so no floor reclaim: the cap holds strictly.
        if job.kind is not JobKind.INFERENCE:
            cap = policy.preemption_cap(checkpointable=job.checkpointable)
            assert not cap or job.preemptions_total <= cap, (job.id, job.preemptions_total)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), POLICIES, EVENTS)
def test_budget_cap_and_cycle_memory_hold_on_every_path_across_restarts(
    spec: ClusterSpec, policy: PolicySpec, evs: list[tuple[object, ...]]
) -> None:
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        d = Durable(spec, policy, clock, Path(tmp) / "s.db")
        n = 0
        for ev in evs:
            n = step(d, ev, n)
            check_history(d, policy)
        for _ in range(6):  # then time goes on, victims acknowledging
            n = step(d, ("advance", 45), n)
            for j in list(d.core.iter_jobs()):
                if j.state is JobState.PREEMPTING:
                    n = step(d, ("ack_job", j.id), n)
            check_history(d, policy)
        d.close()


@pytest.mark.parametrize("cost_first", [True, False])
def test_the_paths_the_property_takes(cost_first: bool) -> None:
    """Those events reach every path a preemption takes: reclaim, rebalance, priority and
    reservation (the property's statistics count them, ``--hypothesis-show-statistics``)."""
    policy = replace(FAST, min_runtime_seconds=10.0, cost_before_class=cost_first)
    spec = cluster(
        [
            pool("p0", "P0", 1000, 2, guaranteed=2, lending=0, borrowing=8, preemptible=False),
            pool("p1", "P1", 500, 4, lending=4, borrowing=4),
            pool("p2", "P2", 100, 4, lending=4, borrowing=0),
        ],
        per_node=2,
        reservations=(BELL,),
    )
    clock = Clock()
    core = Scheduler(spec, policy, clock=clock)
    seen = core.seed([JobRequest("serve", "p0", 2, JobKind.INFERENCE, started_at=T0 - 60)])
    seen += core.submit(JobRequest("t", "p1", 8, JobKind.TRAINING, checkpointable=True))
    clock.advance(30)
    seen += core.submit(JobRequest("b", "p2", 4, JobKind.TRAINING, checkpointable=True))
    seen += core.ack_preemption("t")
    seen += core.submit(JobRequest("u", "p1", 4, JobKind.TRAINING, checkpointable=True))
    clock.advance(30)
    seen += core.alert(pool="p0", action="rebalance", firing=True, correlation_id="")
    for v in [d.job for d in preempts(seen) if d.job != "t"]:
        seen += core.ack_preemption(str(v))
    clock.advance(30)
    seen += core.submit(JobRequest("r", "p0", 2, JobKind.INFERENCE))
    filler = 0
    while clock.now < T0 + 600:
        for name in ("p1", "p2"):  # full when the drain lead begins
            while clock.now > T0 + 300 and core.pool_view(name).idle:
                seen += core.submit(JobRequest(f"f{filler}", name, 1))
                filler += 1
        clock.advance(30)
        seen += core.tick()
        for j in list(core.iter_jobs()):
            if j.state is JobState.PREEMPTING:
                seen += core.ack_preemption(j.id)
    causes = [x.cause for x in preempts(seen)]
    assert {Cause.RECLAIM, Cause.REBALANCE, Cause.PRIORITY, Cause.RESERVATION} <= set(causes)


def test_a_restored_job_keeps_its_lifetime_history(world: World) -> None:
    core = world.make(bank())
    core.seed([busy_p0(), JobRequest("fixed", "p1", 8, preemptible=False, started_at=T0 - 60)])
    core.seed([JobRequest("v", "p2", 4, JobKind.BATCH, started_at=T0 - 3600)])
    core.manual_rebalance("p0", 4, "a")
    core.ack_preemption("v")
    world.clock.advance(10 * 86400)  # long outside any budget window
    restored = Scheduler.restore(
        bank(), FAST, clock=world.clock, jobs=core.take_dirty(), meta=core.export_meta()
    )
    assert restored.job("v").preemptions_total == 1
    restored.tick()  # it resumes; the cap (1, no checkpoints) spares it for good
    world.clock.advance(FAST.min_runtime_seconds)
    assert preempts(restored.manual_rebalance("p0", 4, "b"), "v") == []


def test_a_capped_job_borrows_nothing(world: World) -> None:
    """No pool could take back GPUs that a job at its lifetime cap borrowed: it waits for
    its own pool's, while a job that can still be preempted borrows them."""
    core = world.make()
    core.seed([busy_p0(), JobRequest("fixed", "p1", 8, preemptible=False, started_at=T0)])
    core.seed([JobRequest("p2job", "p2", 4, preemptible=False, started_at=T0, duration_seconds=60)])
    core.submit(JobRequest("capped", "p1", 2))
    # It lost its work once before (a restart brings its history back): capped.
    views = [replace(v, preemptions_total=1) if v.id == "capped" else v for v in core.take_dirty()]
    core = Scheduler.restore(bank(), FAST, clock=world.clock, jobs=views, meta=core.export_meta())
    world.clock.advance(60)
    core.tick()  # P2's job is done: its 4 GPUs are idle and P1 may borrow them
    assert core.job("capped").state is JobState.QUEUED
    core.submit(JobRequest("uncapped", "p1", 2))
    assert core.job("uncapped").state is JobState.RUNNING
    assert core.job("capped").state is JobState.QUEUED
    assert core.pool_view("p1").borrowed == 2


def test_a_capped_job_larger_than_its_pool_still_borrows(world: World) -> None:
    """Held to its own pool, a capped job bigger than the pool would never run (the
    starvation property found it: a 3-GPU P1 job of a 1-GPU pool, capped by one preemption,
    waited for ever beside P2's idle GPUs). It borrows, like any job."""
    spec = cluster(
        [
            pool("p0", "P0", 1000, 1, guaranteed=1, lending=0, borrowing=2, preemptible=False),
            pool("p1", "P1", 500, 1, lending=0, borrowing=2),
            pool("p2", "P2", 100, 2, lending=2),
        ],
        per_node=2,
    )
    core = world.make(spec)
    core.seed([JobRequest("p2job", "p2", 2, preemptible=False, started_at=T0, duration_seconds=60)])
    core.submit(JobRequest("big", "p1", 3))
    assert core.job("big").state is JobState.QUEUED
    views = [replace(v, preemptions_total=1) if v.id == "big" else v for v in core.take_dirty()]
    core = Scheduler.restore(spec, FAST, clock=world.clock, jobs=views, meta=core.export_meta())
    world.clock.advance(60)
    core.tick()  # P2's job is done: its 2 GPUs are idle
    assert core.job("big").state is JobState.RUNNING
    assert core.pool_view("p1").borrowed == 2
