"""Property tests over random clusters and event sequences.

After every step: no GPU is allocated twice; claims add up and respect
lending/borrowing limits (so guaranteed floors hold); no job was preempted more
than its budget inside the window, nor more than its lifetime cap; queues hold
live entries only; and P0 does not wait while lower-priority work past its
cooldown, inside its budget and under its cap holds GPUs it could take. After the
load stops, every job finishes (no starvation).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

from core_testkit import FAST, Clock, cluster, pool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.core import (
    ClusterSpec,
    JobKind,
    JobRequest,
    JobState,
    JobView,
    PolicySpec,
    Scheduler,
)
from scheduler.core.errors import InvalidRequest

POLICY = replace(
    FAST,
    min_runtime_seconds=10.0,
    default_grace_seconds=20.0,
    preemption_budget=2,
    cycle_window_seconds=300.0,
)


@st.composite
def clusters(draw: st.DrawFn) -> ClusterSpec:
    n0, n1, n2 = draw(st.integers(1, 6)), draw(st.integers(1, 8)), draw(st.integers(1, 8))
    total = n0 + n1 + n2
    # Biased towards lending and borrowing, where the interesting behaviour is.
    g1 = draw(st.integers(0, n1 // 2))
    g2 = draw(st.integers(0, n2 // 2))
    return cluster(
        [
            pool(
                "p0",
                "P0",
                1000,
                n0,
                guaranteed=n0,
                lending=0,
                borrowing=draw(st.integers(total // 2, total)),
                preemptible=False,
            ),
            pool(
                "p1",
                "P1",
                500,
                n1,
                guaranteed=g1,
                lending=draw(st.integers((n1 - g1) // 2, n1 - g1)),
                borrowing=draw(st.integers(0, total)),
            ),
            pool(
                "p2",
                "P2",
                100,
                n2,
                guaranteed=g2,
                lending=draw(st.integers((n2 - g2) // 2, n2 - g2)),
                borrowing=draw(st.integers(0, total)),
            ),
        ],
        per_node=2,
    )


submit = st.tuples(
    st.just("submit"),
    st.sampled_from(["p0", "p1", "p2"]),
    st.integers(1, 4),
    st.booleans(),
    st.integers(30, 3600),
)
events = st.lists(
    st.one_of(
        submit,
        submit,
        st.tuples(
            st.just("submit"),
            st.just("p0"),
            st.integers(2, 6),
            st.just(False),
            st.integers(30, 600),
        ),
        st.tuples(st.just("alert"), st.just(True)),
        st.tuples(st.just("advance"), st.integers(1, 60)),
        st.tuples(st.just("advance"), st.integers(1, 60)),
        st.tuples(st.just("alert"), st.booleans()),
        st.tuples(st.just("ack"), st.integers(0, 50)),
        st.tuples(st.just("checkpoint"), st.integers(0, 50)),
        st.tuples(st.just("cancel"), st.integers(0, 50)),
    ),
    min_size=10,
    max_size=40,
)


def fits(spec: ClusterSpec, p: str, gpus: int) -> bool:
    """A job no larger than its pool's quota plus what it may borrow within every limit."""
    me = next(q for q in spec.pools if q.name == p)
    lendable = sum(q.lending_limit for q in spec.pools if q.name != p)
    return gpus <= me.nominal_gpus + min(me.borrowing_limit, lendable)


def check_invariants(core: Scheduler, spec: ClusterSpec, policy: PolicySpec, now: float) -> None:
    jobs = list(core.iter_jobs())
    home = {g.uuid: g.pool for g in spec.gpus}
    # 1. No GPU twice: not run by two jobs, not held for two jobs.
    runs = Counter(u for j in jobs for u in j.gpu_ids)
    holds = Counter(u for j in jobs for u in j.held_gpu_ids)
    assert all(n == 1 for n in runs.values()), runs
    assert all(n == 1 for n in holds.values()), holds
    for j in jobs:
        if j.state in (JobState.RUNNING, JobState.PREEMPTING):
            assert len(j.gpu_ids) == j.gpus
        else:
            assert not j.gpu_ids
    # 2. Claims recomputed from the jobs match the core's counters and the limits.
    claim: dict[str, str] = {}
    for j in jobs:
        for u in j.gpu_ids:
            claim[u] = j.pool
    for j in jobs:
        for u in j.held_gpu_ids:
            claim[u] = j.pool
    for p in spec.pools:
        s = core.pool_view(p.name)
        own = sum(1 for u, c in claim.items() if c == p.name and home[u] == p.name)
        borrowed = sum(1 for u, c in claim.items() if c == p.name and home[u] != p.name)
        lent = sum(1 for u, c in claim.items() if c != p.name and home[u] == p.name)
        assert (s.owned, s.borrowed, s.lent) == (own, borrowed, lent)
        assert own + lent + s.idle == p.nominal_gpus
        assert borrowed <= p.borrowing_limit
        assert lent <= p.lending_limit <= p.nominal_gpus - p.guaranteed_gpus
        running = sum(j.gpus for j in jobs if j.pool == p.name and j.state is JobState.RUNNING)
        assert s.serving_gpus == running
    # 3. Budget: never more preemptions inside the window than allowed; the lifetime cap.
    for j in jobs:
        recent = [t for t in j.preemptions if t > now - policy.preemption_budget_window_seconds]
        assert len(recent) <= policy.preemption_budget
        cap = policy.preemption_cap(checkpointable=j.checkpointable)
        assert j.kind is JobKind.INFERENCE or not cap or j.preemptions_total <= cap
    # 5. Pods: every pod's GPUs on one node (``gpu_ids`` lists them pod by pod), and
    # no preemption committed without freeing a hole its preemptor's pods fit.
    node = {u: g.node for u, g in core._cluster.gpus.items()}
    for j in jobs:
        if j.state in (JobState.RUNNING, JobState.PREEMPTING):
            assert sum(j.pods) == j.gpus
            at = 0
            for size in j.pods:
                assert len({node[u] for u in j.gpu_ids[at : at + size]}) == 1, (j.id, j.pods)
                at += size
    for p in spec.pools:
        assert core.pool_view(p.name).no_hole_preemptions == 0
    # Queues hold the waiting jobs and nothing else.
    for p in spec.pools:
        assert len(core._cluster.pools[p.name].queue) == core.pool_view(p.name).waiting
    # 4. P0 never waits while lower-priority work past its cooldown holds GPUs it could take.
    p0 = next(p for p in spec.pools if p.name == "p0")
    queue = core.queue("p0")
    if queue and not queue[0][0].pending_victims:
        head = queue[0][0]
        need = head.gpus - len(head.held_gpu_ids)
        free_own = core.pool_view("p0").idle
        lendable: dict[str, int] = {}
        already_lent = 0

        def recent_of(j: JobView) -> list[float]:
            window = policy.preemption_budget_window_seconds
            return [t for t in j.preemptions if t > now - window]

        def capped(j: JobView) -> bool:
            cap = policy.preemption_cap(checkpointable=j.checkpointable)
            return bool(cap) and j.preemptions_total >= cap

        for j in jobs:
            eligible = (
                j.pool != "p0"
                and j.state is JobState.RUNNING
                and j.preemptible
                and j.started_at is not None
                and now - j.started_at >= policy.min_runtime_seconds
                and len(recent_of(j)) < policy.preemption_budget
                and (j.kind is JobKind.INFERENCE or not capped(j))
            )
            if not eligible:
                continue
            for u in j.gpu_ids:
                if u in holds:
                    continue
                if home[u] == j.pool:
                    lendable[home[u]] = lendable.get(home[u], 0) + 1
                else:
                    already_lent += 1
        for p in spec.pools:
            if p.name != "p0":
                lendable[p.name] = lendable.get(p.name, 0) + core.pool_view(p.name).idle
        room = p0.borrowing_limit - core.pool_view("p0").borrowed
        lend_total = sum(
            min(
                n,
                next(q for q in spec.pools if q.name == y).lending_limit - core.pool_view(y).lent,
            )
            for y, n in lendable.items()
        )
        obtainable = free_own + min(room, lend_total + already_lent)
        assert obtainable < need, (head.id, need, obtainable)


def run(core: Scheduler, clock: Clock, evs: list[tuple[object, ...]], n: int = 0) -> int:
    for ev in evs:
        kind = ev[0]
        live = [
            j for j in core.iter_jobs() if j.state not in (JobState.COMPLETED, JobState.CANCELLED)
        ]
        if kind == "submit":
            _, p, gpus, ckpt, dur = ev
            assert isinstance(p, str) and isinstance(gpus, int) and isinstance(dur, int)
            if fits(core.cluster, p, gpus):
                kind_ = JobKind.INFERENCE if p == "p0" else JobKind.TRAINING
                try:
                    core.submit(
                        JobRequest(
                            f"j{n}",
                            p,
                            gpus,
                            kind_,
                            checkpointable=bool(ckpt),
                            duration_seconds=float(dur),
                        )
                    )
                except InvalidRequest as e:
                    # Within the counts, but its pods fit on no nodes it may ever hold.
                    assert "fit on no nodes" in str(e), e
                n += 1
        elif kind == "advance":
            assert isinstance(ev[1], int)
            clock.advance(ev[1])
            core.tick()
        elif kind == "alert":
            core.alert(pool="p0", action="rebalance", firing=bool(ev[1]), correlation_id="")
        elif live and kind == "ack":
            assert isinstance(ev[1], int)
            core.ack_preemption(live[ev[1] % len(live)].id)
        elif live and kind == "checkpoint":
            assert isinstance(ev[1], int)
            j = live[ev[1] % len(live)]
            if j.checkpointable and j.state in (JobState.RUNNING, JobState.PREEMPTING):
                core.report_checkpoint(j.id)
        elif live and kind == "cancel":
            assert isinstance(ev[1], int)
            core.cancel(live[ev[1] % len(live)].id)
    return n


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), events)
def test_invariants_hold_after_every_step(spec: ClusterSpec, evs: list[tuple[object, ...]]) -> None:
    clock = Clock()
    core = Scheduler(spec, POLICY, clock=clock)
    n = 0
    for ev in evs:
        n = run(core, clock, [ev], n)
        # A tick at a fresh instant lets every time-driven rule catch up before P0 is judged.
        clock.advance(0.5)
        core.tick()
        check_invariants(core, spec, POLICY, clock.now)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(clusters(), events)
def test_no_starvation_under_bounded_load(spec: ClusterSpec, evs: list[tuple[object, ...]]) -> None:
    clock = Clock()
    core = Scheduler(spec, POLICY, clock=clock)
    run(core, clock, evs)
    # The load stops; P0's alert resolves. Every job must then finish in bounded time.
    core.alert(pool="p0", action="rebalance", firing=False, correlation_id="end")
    for _ in range(400):
        clock.advance(60)
        core.tick()
        if all(j.state in (JobState.COMPLETED, JobState.CANCELLED) for j in core.iter_jobs()):
            break
    stuck = [
        (j.id, j.state.value)
        for j in core.iter_jobs()
        if j.state not in (JobState.COMPLETED, JobState.CANCELLED)
    ]
    assert not stuck
