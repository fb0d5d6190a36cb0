"""No job starves behind smaller ones: a pool drains for the head of its queue once it has
waited ``drain_after_seconds``, and GPUs held for that head go to it and to no one else
(but the top class, which is never short while GPUs sit idle)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from core_testkit import FAST, T0, Clock, World, cluster, pool
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from scheduler.core import (
    Action,
    ClusterSpec,
    InvalidRequest,
    JobKind,
    JobRequest,
    JobState,
    PolicySpec,
    Scheduler,
)

DRAIN = replace(FAST, drain_after_seconds=600.0)


def training_pool(p1: int = 8, *, p1_lends: int = 0, p2_borrows: int = 0) -> ClusterSpec:
    return cluster(
        [
            pool("p0", "P0", 1000, 2, guaranteed=2, lending=0, borrowing=4, preemptible=False),
            pool("p1", "P1", 500, p1, lending=p1_lends, borrowing=0),
            pool("p2", "P2", 100, 2, lending=0, borrowing=p2_borrows),
        ],
        per_node=2,
    )


def small_jobs_keep_coming(world: World, policy: PolicySpec, hours: float) -> Scheduler:
    """P1 full of 1-GPU jobs ending one after another; an 8-GPU job queues behind them,
    and a new 1-GPU job arrives every minute."""
    core = world.make(training_pool(), policy)
    core.seed(
        [
            JobRequest(f"s{i}", "p1", 1, duration_seconds=600 + 100 * i, started_at=T0)
            for i in range(8)
        ]
    )
    core.submit(JobRequest("big", "p1", 8, JobKind.TRAINING, checkpointable=True))
    n = 0
    while world.clock.now < T0 + hours * 3600 and core.job("big").state is JobState.QUEUED:
        world.clock.advance(60)
        core.submit(JobRequest(f"n{n}", "p1", 1, duration_seconds=900))
        n += 1
        core.tick()
    return core


def test_without_draining_a_big_job_starves_behind_small_ones(world: World) -> None:
    core = small_jobs_keep_coming(world, replace(FAST, drain_after_seconds=0), hours=6)
    assert core.job("big").state is JobState.QUEUED  # six hours on, still waiting


def test_a_starving_head_gets_the_gpus_that_free_up(world: World) -> None:
    core = small_jobs_keep_coming(world, DRAIN, hours=6)
    big = core.job("big")
    assert big.state is JobState.RUNNING
    # It drained from 600 s on; the jobs in its way then ran at most 900 s more.
    assert big.started_at is not None and big.started_at - T0 <= 600 + 900 + 60


def test_the_drain_is_visible_and_backfill_goes_on_beside_it(world: World) -> None:
    spec = training_pool(p1=10)
    core = world.make(spec, DRAIN)
    core.seed(
        [
            JobRequest(f"s{i}", "p1", 1, duration_seconds=1000 + 60 * i, started_at=T0)
            for i in range(10)
        ]
    )
    core.submit(JobRequest("big", "p1", 8))
    world.clock.advance(600)
    core.tick()
    view = core.pool_view("p1")
    assert (view.draining_for, view.held_for_head) == ("big", 0)
    world.clock.advance(401)  # s0 (1000 s) is done: its GPU is held for big, not backfilled
    core.submit(JobRequest("small", "p1", 1))
    core.tick()
    view = core.pool_view("p1")
    assert (view.draining_for, view.held_for_head) == ("big", 1)
    assert core.job("small").state is JobState.QUEUED
    assert len(core.job("big").held_gpu_ids) == 1
    for _ in range(8):
        world.clock.advance(60)
        core.tick()
    # Eight GPUs held, big runs; the ninth and tenth freed go to the small job.
    assert core.job("big").state is JobState.RUNNING
    world.clock.advance(120)
    core.tick()
    assert core.job("small").state is JobState.RUNNING
    assert core.pool_view("p1").draining_for is None


def test_jobs_behind_a_drained_for_head_take_nothing_by_force(world: World) -> None:
    # P2 borrows two of P1's GPUs; P1's head wants all eight, so its reclaim alone
    # cannot place it; a small P1 job behind it would reclaim one, but may not.
    spec = training_pool(p1=8, p1_lends=2, p2_borrows=2)
    core = world.make(spec, DRAIN)
    core.seed(
        [JobRequest(f"s{i}", "p1", 1, started_at=T0, duration_seconds=7200) for i in range(6)]
    )
    core.seed([JobRequest("borrower", "p2", 4, started_at=T0)])
    assert core.pool_view("p1").lent == 2
    core.submit(JobRequest("big", "p1", 8))
    world.clock.advance(600)
    core.submit(JobRequest("small", "p1", 1))
    ds = core.tick()
    assert not [d for d in ds if d.action == Action.PREEMPT]
    assert core.job("borrower").state is JobState.RUNNING
    # Without the drain, the small job reclaims what it needs.
    other = World(Clock(T0))
    core = other.make(spec, replace(DRAIN, drain_after_seconds=0))
    core.seed(
        [JobRequest(f"s{i}", "p1", 1, started_at=T0, duration_seconds=7200) for i in range(6)]
    )
    core.seed([JobRequest("borrower", "p2", 4, started_at=T0)])
    core.submit(JobRequest("big", "p1", 8))
    other.clock.advance(600)
    ds = core.submit(JobRequest("small", "p1", 1))
    assert [d.job for d in ds if d.action == Action.PREEMPT] == ["borrower"]


def test_p0_takes_gpus_held_for_a_lower_head(world: World) -> None:
    spec = training_pool(p1=8, p1_lends=8)
    core = world.make(spec, DRAIN)
    core.seed([JobRequest("p0-serving", "p0", 2, JobKind.INFERENCE, started_at=T0)])
    core.seed(
        [
            JobRequest(
                f"s{i}",
                "p1",
                1,
                preemptible=False,
                started_at=T0,
                duration_seconds=700 if i < 4 else 7200,
            )
            for i in range(8)
        ]
    )
    core.seed([JobRequest("b", "p2", 2, preemptible=False, started_at=T0)])
    core.submit(JobRequest("big", "p1", 8))
    world.clock.advance(701)
    core.tick()
    assert len(core.job("big").held_gpu_ids) == 4  # idle, held; nothing is preemptible
    ds = core.manual_rebalance("p0", 3, "bell")
    assert ds[-1].action == Action.REBALANCE and ds[-1].gpus == 3 and ds[-1].result == "ok"
    assert len(core.job("big").held_gpu_ids) == 1
    # Without the drain, they were idle: the same grant. With no top class asking, they stay.
    assert core.pool_view("p1").draining_for == "big"


def test_a_job_larger_than_its_pool_can_ever_hold_is_refused(world: World) -> None:
    core = world.make(training_pool(p1=8), DRAIN)
    with pytest.raises(InvalidRequest, match="9 GPUs exceed what p1 may ever hold: 8 nominal"):
        core.submit(JobRequest("huge", "p1", 9))
    assert [j.id for j in core.iter_jobs()] == []


# --------------------------------------------------------------------------- property


@st.composite
def clusters(draw: st.DrawFn) -> ClusterSpec:
    n1, n2 = draw(st.integers(2, 8)), draw(st.integers(2, 6))
    return cluster(
        [
            pool(
                "p0", "P0", 1000, 2, guaranteed=2, lending=0, borrowing=n1 + n2, preemptible=False
            ),
            pool(
                "p1",
                "P1",
                500,
                n1,
                lending=draw(st.integers(0, n1)),
                borrowing=draw(st.integers(0, n2)),
            ),
            pool(
                "p2",
                "P2",
                100,
                n2,
                lending=draw(st.integers(0, n2)),
                borrowing=draw(st.integers(0, n1)),
            ),
        ],
        per_node=2,
    )


EVENTS = st.lists(
    st.one_of(
        st.tuples(
            st.just("submit"),
            st.sampled_from(["p1", "p2"]),
            st.integers(1, 8),
            st.integers(60, 900),
        ),
        st.tuples(
            st.just("submit"),
            st.sampled_from(["p1", "p2"]),
            st.integers(1, 2),
            st.integers(60, 300),
        ),
        st.tuples(
            st.just("submit"),
            st.sampled_from(["p1", "p2"]),
            st.integers(1, 2),
            st.integers(60, 300),
        ),
        st.tuples(st.just("submit"), st.just("p0"), st.integers(1, 4), st.integers(60, 300)),
        st.tuples(st.just("advance"), st.integers(10, 120)),
        st.tuples(st.just("advance"), st.integers(10, 120)),
        st.tuples(st.just("alert"), st.booleans()),
        st.tuples(st.just("ack"), st.integers(0, 40)),
        st.tuples(st.just("cancel"), st.integers(0, 40)),
    ),
    min_size=10,
    max_size=50,
)


def drain_holds(core: Scheduler, policy: PolicySpec) -> dict[str, str]:
    """GPU -> the head it is held for, of every pool draining for its head."""
    out = {}
    now = core._clock()
    for name in core.pool_names():
        queue = core.queue(name)
        if queue:
            head = queue[0][0]
            if now - head.queued_at >= policy.drain_after_seconds and not head.pending_victims:
                out.update({u: head.id for u in head.held_gpu_ids})
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    clusters(),
    st.sampled_from([60.0, 300.0]),
    st.lists(st.integers(100, 1500), min_size=16, max_size=16),
    EVENTS,
)
def test_gpus_held_for_the_head_go_only_to_the_head(
    spec: ClusterSpec, drain_after: float, runs: list[int], evs: list[tuple[object, ...]]
) -> None:
    policy = replace(FAST, drain_after_seconds=drain_after, min_runtime_seconds=30.0)
    clock = Clock()
    core = Scheduler(spec, policy, clock=clock)
    # Full of small jobs ending one after another: big ones that come wait.
    seeds = [
        JobRequest(f"s{p.name}{i}", p.name, 1, duration_seconds=runs[i], started_at=T0)
        for p in spec.pools[1:]
        for i in range(p.nominal_gpus)
    ]
    core.seed(seeds)
    prio = {p.name: p.priority for p in spec.pools}
    top = max(prio.values())
    n = 0
    for ev in evs:
        before = drain_holds(core, policy)
        if before:
            event("GPUs held for a head")
        live = [
            j for j in core.iter_jobs() if j.state not in (JobState.COMPLETED, JobState.CANCELLED)
        ]
        try:
            if ev[0] == "submit":
                _, p, gpus, dur = ev
                kind = JobKind.INFERENCE if p == "p0" else JobKind.BATCH
                core.submit(
                    JobRequest(
                        f"j{n}", str(p), int(str(gpus)), kind, duration_seconds=float(str(dur))
                    )
                )
                n += 1
            elif ev[0] == "advance":
                clock.advance(float(str(ev[1])))
                core.tick()
            elif ev[0] == "alert":
                core.alert(pool="p0", action="rebalance", firing=bool(ev[1]), correlation_id="")
            elif live and ev[0] == "ack":
                core.ack_preemption(live[int(str(ev[1])) % len(live)].id)
            elif live and ev[0] == "cancel":
                core.cancel(live[int(str(ev[1])) % len(live)].id)
        except InvalidRequest:
            n += 1  # larger than its pool can ever hold: refused
        jobs = {j.id: j for j in core.iter_jobs()}
        for u, head in before.items():
            if jobs[head].state is JobState.CANCELLED:
                continue  # the head left: what was held for it is free again
            if jobs[head].state is JobState.RUNNING and u not in jobs[head].gpu_ids:
                continue  # the head started on a node it fits: holds elsewhere went back
            now_on = [j for j in jobs.values() if u in j.gpu_ids or u in j.held_gpu_ids]
            for j in now_on:
                # Still the head's, or the head runs on it, or the top class took it.
                assert j.id == head or prio[j.pool] == top, (u, head, j.id)
                if u in j.gpu_ids:
                    event("a held GPU: the head runs on it" if j.id == head else "P0 took one")
