"""The engine preempts exactly in ``ordering.py``'s order, whatever that order is.

For random sets of running jobs (sizes, ages, checkpoints, stateless replicas,
borrowers, preemptions suffered long ago: boosted priorities and capped jobs) on a
full cluster, P0 asks for a random number of GPUs; the victims the engine signals,
in the order it signals them, must be those that walking ``ordering.order_victims``
over every running job the lifetime cap leaves gives (greedily, then dropping any
victim the others already cover, latest first), with cost before class or class
before cost. The same holds when ``ordering.victim_key`` is replaced by a different
order: the victim index keeps no order of its own, so changing ``ordering.py``
changes what the engine preempts. The cluster with its history is rebuilt through
``Scheduler.restore``, as after a restart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest
from core_testkit import FAST, T0, Clock, cluster, pool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import scheduler.core.ordering as ordering
from scheduler.core import Action, JobKind, JobRequest, JobState, PolicySpec, Scheduler
from scheduler.core.errors import InvalidRequest
from scheduler.core.ordering import Candidate, VictimKey

KeyFn = Callable[[Candidate, int], VictimKey]


def newest_first(c: Candidate, need: int) -> tuple[bool, float, float, float, int, str]:
    """Most recently started first, then least work lost."""
    return (not c.borrower, c.priority, -c.started_at, c.work_lost, -min(c.gpus, need), c.job_id)


def oldest_first(c: Candidate, need: int) -> tuple[float, float, str]:
    """Oldest first whatever the pool, most work lost first."""
    return (c.started_at, -c.work_lost, c.job_id)


ORDERS: dict[str, KeyFn | None] = {
    "ordering.py": None,
    "newest first": newest_first,
    "oldest first": oldest_first,  # type: ignore[dict-item]
}

job_specs = st.lists(
    st.tuples(
        st.sampled_from(["p1", "p2"]),
        st.integers(1, 3),  # GPUs
        st.sampled_from([JobKind.TRAINING, JobKind.TRAINING, JobKind.INFERENCE]),
        st.integers(400, 20_000),  # started this long ago (past the 60 s minimum runtime)
        st.one_of(st.none(), st.floats(0.0, 1.0)),  # last checkpoint: where in the run
        st.sampled_from([0, 0, 1, 2]),  # preemptions suffered, days ago
    ),
    min_size=1,
    max_size=14,
)


def capped(kind: JobKind, checkpointable: bool, preemptions: int, policy: PolicySpec) -> bool:
    if kind is JobKind.INFERENCE:
        return False
    cap = (
        policy.max_preemptions_checkpointing
        if checkpointable
        else policy.max_preemptions_non_checkpointing
    )
    return cap > 0 and preemptions >= cap


def expected_victims(core: Scheduler, need: int, now: float = T0) -> list[str]:
    policy = core.policy
    homes = {g.uuid: g.pool for g in core.cluster.gpus}
    priority = {p.name: p.priority for p in core.cluster.pools}
    running = [
        j
        for j in core.iter_jobs()
        if j.pool != "p0"
        and j.state is JobState.RUNNING
        and not capped(j.kind, j.checkpointable, j.preemptions_total, policy)
    ]
    candidates = []
    for j in running:
        boosted = priority[j.pool] + policy.preemption_priority_boost * j.preemptions_total
        candidates.append(
            Candidate(
                j.id,
                any(homes[u] != j.pool for u in j.gpu_ids),
                boosted,
                ordering.work_lost(
                    gpus=j.gpus,
                    stateless=j.kind is JobKind.INFERENCE,
                    started_at=j.started_at or 0.0,
                    last_checkpoint=j.last_checkpoint,
                    now=now,
                ),
                j.gpus,
                j.started_at or 0.0,
                0.0 if policy.cost_before_class else boosted,
            )
        )
    chosen: list[tuple[str, int]] = []
    got = 0
    for c in ordering.order_victims(candidates, need):
        chosen.append((c.job_id, c.gpus))
        got += c.gpus
        if got >= need:
            break
    for i in range(len(chosen) - 1, -1, -1):  # fewest victims: drop what the others cover
        if got - chosen[i][1] >= need:
            got -= chosen[i][1]
            del chosen[i]
    return [job_id for job_id, _ in chosen]


def fits(core: Scheduler, name: str, gpus: int) -> bool:
    """Room for ``gpus`` more in ``name``: its idle GPUs, then the other's within the limits."""
    me = core.pool_view(name)
    other = core.pool_view("p2" if name == "p1" else "p1")
    lendable = min(other.idle, other.lending_limit - other.lent)
    return me.idle + max(0, min(me.borrowing_limit - me.borrowed, lendable)) >= gpus


def full_cluster(
    n1: int, n2: int, borrow1: int, borrow2: int, specs: list[tuple], policy: PolicySpec
) -> Scheduler:
    spec = cluster(
        [
            pool(
                "p0", "P0", 1000, 2, guaranteed=2, lending=0, borrowing=n1 + n2, preemptible=False
            ),
            pool("p1", "P1", 500, n1, lending=n1, borrowing=borrow1),
            pool("p2", "P2", 100, n2, lending=n2, borrowing=borrow2),
        ],
        per_node=2,
    )
    clock = Clock(T0)
    core = Scheduler(spec, policy, clock=clock)
    core.seed(
        [JobRequest(f"r{i}", "p0", 1, JobKind.INFERENCE, started_at=T0 - 7200) for i in (0, 1)]
    )
    history: dict[str, int] = {}
    for i, (p, gpus, kind, ago, ckpt, preempted) in enumerate(specs):
        started = T0 - ago
        req = JobRequest(
            f"j{i}",
            p,
            gpus,
            kind,
            checkpointable=kind is JobKind.TRAINING,
            started_at=started,
            last_checkpoint=None if ckpt is None else started + ckpt * ago,
        )
        if fits(core, p, gpus):
            try:
                core.seed([req])  # on its own pool first, else borrowed within the limits
            except InvalidRequest:
                continue  # room enough in all, but not for its pod on one node
            history[req.id] = preempted
    # Fill every idle GPU, so that P0 gets everything by preemption.
    filler = 0
    for name in ("p1", "p2"):
        while core.pool_view(name).idle:
            core.seed([JobRequest(f"f{filler}", name, 1, JobKind.BATCH, started_at=T0 - 900)])
            filler += 1
    # Their preemptions of days ago, through the store's path: a restart keeps them.
    views = [replace(v, preemptions_total=history.get(v.id, 0)) for v in core.take_dirty()]
    return Scheduler.restore(spec, policy, clock=clock, jobs=views, meta=core.export_meta())


@pytest.mark.parametrize("cost_first", [True, False], ids=["cost-first", "class-first"])
@pytest.mark.parametrize("order", list(ORDERS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n1=st.integers(2, 10),
    n2=st.integers(2, 10),
    borrow1=st.integers(0, 6),
    borrow2=st.integers(0, 6),
    specs=job_specs,
    need_share=st.floats(0.05, 1.0),
    switched=st.booleans(),
)
def test_the_engine_preempts_in_the_order_ordering_py_gives(
    order: str,
    cost_first: bool,
    n1: int,
    n2: int,
    borrow1: int,
    borrow2: int,
    specs: list[tuple],
    need_share: float,
    switched: bool,
) -> None:
    key = ORDERS[order]
    policy = replace(FAST, cost_before_class=cost_first, max_preemptions_checkpointing=2)
    with pytest.MonkeyPatch.context() as mp:
        if key is not None:
            mp.setattr(ordering, "victim_key", key)
        if switched:  # built with the other order and boost, then changed at run time
            other = replace(policy, cost_before_class=not cost_first, preemption_priority_boost=7.0)
            core = full_cluster(n1, n2, borrow1, borrow2, specs, other)
            core.set_policy(
                cost_before_class=cost_first,
                preemption_priority_boost=policy.preemption_priority_boost,
            )
        else:
            core = full_cluster(n1, n2, borrow1, borrow2, specs, policy)
        need = max(1, round(need_share * (n1 + n2)))
        expected = expected_victims(core, need)
        ds = core.manual_rebalance("p0", need, "t")
    preempted = [d.job for d in ds if d.action == Action.PREEMPT]
    assert preempted == expected
    assert ds[-1].action == Action.REBALANCE
    # Capped jobs keep their GPUs: P0 gets what the others give.
    got = sum(j.gpus for j in core.iter_jobs() if j.pool != "p0" and j.state is JobState.PREEMPTING)
    assert ds[-1].gpus == min(need, got)
