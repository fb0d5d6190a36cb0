"""Jobs as pods on nodes: one node per pod, jobs packed, preemption that makes usable holes."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import pytest
from core_testkit import FAST, T0, Clock, Durable, pool
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from scheduler.core import (
    Action,
    ClusterSpec,
    GpuSpec,
    JobKind,
    JobRequest,
    JobState,
    ModelSpec,
    PolicySpec,
    PoolSpec,
    Scheduler,
)
from scheduler.core.cluster import Cluster
from scheduler.core.errors import InvalidRequest
from scheduler.core.fit import fit
from scheduler.core.pods import covers, shape
from scheduler.store.sqlite import _job_from_dict


def nodes_cluster(
    sizes: dict[str, int],
    pools: list[PoolSpec],
    homes: list[str] | None = None,
    models: tuple[ModelSpec, ...] = (),
) -> ClusterSpec:
    """GPUs on named nodes of the given sizes; homes in node order unless given."""
    gpus = []
    order = homes or [p.name for p in pools for _ in range(p.nominal_gpus)]
    i = 0
    for node, n in sizes.items():
        for _ in range(n):
            gpus.append(GpuSpec(f"GPU-{i:03d}", node, order[i]))
            i += 1
    return ClusterSpec(tuple(pools), tuple(gpus), models=models)


def node_of(core: Scheduler, job: str) -> list[str]:
    nodes = {u: n for u, (n, _) in core.gpu_assignments().items()}
    return [nodes[u] for u in core.job(job).gpu_ids]


def test_shape_one_pod_up_to_the_node_node_sized_pods_above() -> None:
    assert shape(6, None, 8) == (6,)
    assert shape(20, None, 8) == (8, 8, 4)
    assert shape(8, 2, 8) == (2, 2, 2, 2)
    assert covers((4,), (3,)) and not covers((2, 2), (3,)) and covers((4, 4, 1), (4, 4))


def test_a_pod_goes_on_the_fullest_node_it_fits() -> None:
    spec = nodes_cluster({"a": 8, "b": 8}, [pool("p1", "P1", 500, 16)])
    core = Scheduler(spec, FAST, clock=Clock())
    core.submit(JobRequest("big", "p1", 6, duration_seconds=100))
    core.submit(JobRequest("small", "p1", 2, duration_seconds=100))
    # Packed: the 2-GPU pod fills the node the 6-GPU one partly uses; b stays whole.
    assert set(node_of(core, "big")) == set(node_of(core, "small"))
    core.submit(JobRequest("whole", "p1", 8, duration_seconds=100))
    assert core.job("whole").state is JobState.RUNNING


def test_a_job_s_pods_go_on_as_few_nodes_as_possible() -> None:
    spec = nodes_cluster({"a": 4, "b": 8, "c": 4}, [pool("p1", "P1", 500, 16)])
    core = Scheduler(spec, FAST, clock=Clock())
    core.submit(JobRequest("j", "p1", 8, gpus_per_pod=2, duration_seconds=100))
    assert core.job("j").pods == (2, 2, 2, 2)
    assert set(node_of(core, "j")) == {"b"}
    core.submit(JobRequest("k", "p1", 8, gpus_per_pod=2, duration_seconds=100))
    assert sorted(set(node_of(core, "k"))) == ["a", "c"]


def test_a_request_its_nodes_can_never_hold_is_refused() -> None:
    spec = nodes_cluster({"a": 4, "b": 4}, [pool("p1", "P1", 500, 8)])
    core = Scheduler(spec, FAST, clock=Clock())
    with pytest.raises(InvalidRequest, match="fits on no node"):
        core.submit(JobRequest("j", "p1", 8, gpus_per_pod=8))
    with pytest.raises(InvalidRequest, match="whole divisor"):
        core.submit(JobRequest("j", "p1", 8, gpus_per_pod=3))
    core.submit(JobRequest("ok", "p1", 8, duration_seconds=10))  # two node-sized pods
    assert core.job("ok").pods == (4, 4) and core.job("ok").state is JobState.RUNNING


def p0_over_p2(per_node: int, blockers: dict[str, int]) -> tuple[Scheduler, Clock]:
    """P0 (4-GPU replicas, one idle GPU nowhere) over P2's 1-GPU jobs on two nodes;
    ``blockers`` puts that many non-preemptible P2 jobs on a node."""
    spec = nodes_cluster(
        {"a": per_node, "b": per_node},
        [
            pool("p0", "P0", 1000, 0, borrowing=2 * per_node, preemptible=False),
            pool("p2", "P2", 100, 2 * per_node, lending=2 * per_node),
        ],
        models=(ModelSpec("risk", "p0", 0.01, 4, 1, 0.1, 0.99),),
    )
    clock = Clock()
    core = Scheduler(spec, FAST, clock=clock)
    seeds = []
    for node in ("a", "b"):
        for i in range(per_node):
            fixed = i < blockers.get(node, 0)
            # Work lost alternates between the nodes: the cheapest victims are spread.
            ago = 600 + 100 * i + (0 if node == "a" else 50)
            seeds.append(
                JobRequest(f"{node}{i}", "p2", 1, preemptible=not fixed, started_at=T0 - ago)
            )
    core.seed(seeds)
    for node in ("a", "b"):
        for i in range(per_node):
            assert node_of(core, f"{node}{i}") == [node]
    return core, clock


def test_preemption_frees_a_pod_shaped_hole_not_the_cheapest_scattered_gpus() -> None:
    core, _ = p0_over_p2(4, {})
    ds = core.submit(JobRequest("replica", "p0", 4, JobKind.INFERENCE))
    victims = [d.job for d in ds if d.action == Action.PREEMPT]
    assert len(victims) == 4
    # The four cheapest (a0, b0, a1, b1) hold no 4-GPU hole: one node's four do.
    assert len({node_of(core, str(v))[0] for v in victims}) == 1
    for v in victims:
        core.ack_preemption(str(v))
    assert core.job("replica").state is JobState.RUNNING
    assert len(set(node_of(core, "replica"))) == 1
    assert core.pool_view("p0").no_hole_preemptions == 0


def test_a_plan_that_frees_gpus_but_no_hole_is_not_taken() -> None:
    # A job P0 may not preempt on each node: no node can give a 4-GPU pod.
    core, _ = p0_over_p2(4, {"a": 1, "b": 1})
    ds = core.submit(JobRequest("replica", "p0", 4, JobKind.INFERENCE))
    assert [d for d in ds if d.action == Action.PREEMPT] == []
    assert core.job("replica").state is JobState.QUEUED
    # Blind to nodes, six preemptible GPUs would have been taken for it.
    blind, _ = p0_over_p2(4, {"a": 1, "b": 1})
    blind.set_policy(node_aware=False)
    ds = blind.submit(JobRequest("replica", "p0", 4, JobKind.INFERENCE))
    assert len([d for d in ds if d.action == Action.PREEMPT]) == 4


def test_fragmented_idle_gpus_are_counted_and_shown() -> None:
    spec = nodes_cluster({"a": 4, "b": 4}, [pool("p1", "P1", 500, 8)])
    clock = Clock()
    core = Scheduler(spec, FAST, clock=clock)
    for i in range(8):  # packed: 0-3 on one node, 4-7 on the other
        core.submit(JobRequest(f"n{i}", "p1", 1, duration_seconds=10 if i in (0, 4) else 900))
    assert node_of(core, "n0") != node_of(core, "n4")
    clock.advance(10)
    core.tick()  # one GPU idle on each node
    core.submit(JobRequest("pair", "p1", 2))
    view = core.pool_view("p1")
    assert core.job("pair").state is JobState.QUEUED
    assert (view.idle, view.largest_waiting_pod, view.free_usable_ratio) == (2, 2, 0.0)
    assert view.repacks_declined == 1
    clock.advance(60)
    core.tick()
    assert core.pool_view("p1").repacks_declined == 1  # once a wait
    assert core.pool_view("p1").pods_spanning_nodes == 0
    # Blind to nodes (the simulator's baseline), it would start across the two nodes.
    core.set_policy(node_aware=False)
    clock.advance(60)
    core.tick()
    assert core.job("pair").state is JobState.RUNNING
    assert len(set(node_of(core, "pair"))) == 2
    assert core.pool_view("p1").pods_spanning_nodes == 1


def test_placements_and_pods_survive_a_restart_through_the_store() -> None:
    spec = nodes_cluster({"a": 4, "b": 4}, [pool("p1", "P1", 500, 8)])
    clock = Clock()
    with tempfile.TemporaryDirectory() as tmp:
        d = Durable(spec, FAST, clock, Path(tmp) / "s.db")
        d.call(lambda c: c.submit(JobRequest("j", "p1", 4, gpus_per_pod=2)))
        d.call(lambda c: c.submit(JobRequest("w", "p1", 6, gpus_per_pod=3)))
        before = d.core.job("j")
        d.restart()
        after = d.core.job("j")
        assert (
            (after.pods, after.gpu_ids)
            == (before.pods, before.gpu_ids)
            == (
                (2, 2),
                before.gpu_ids,
            )
        )
        assert d.core.job("w").pods == (3, 3)
        d.close()


def test_a_job_stored_before_pods_gets_today_s_shape() -> None:
    row = Scheduler(
        nodes_cluster({"a": 4}, [pool("p1", "P1", 500, 4)]), FAST, clock=Clock()
    ).submit(JobRequest("j", "p1", 2))
    assert row
    spec = nodes_cluster({"a": 4}, [pool("p1", "P1", 500, 4)])
    core = Scheduler(spec, FAST, clock=Clock())
    core.submit(JobRequest("j", "p1", 2))
    stored = core.job("j").to_dict()
    del stored["pods"]  # a row written before jobs had pods
    view = _job_from_dict(stored)
    assert view.pods == ()
    restored = Scheduler.restore(spec, FAST, clock=Clock(), jobs=[view], meta=core.export_meta())
    assert restored.job("j").pods == (2,)
    assert restored.job("j").gpu_ids == core.job("j").gpu_ids


# ----------------------------------------------------------------------------- properties


@st.composite
def layouts(draw: st.DrawFn) -> tuple[Cluster, list[str]]:
    """One pool on 1-5 nodes of 1-8 GPUs, some of its GPUs busy."""
    sizes = draw(st.lists(st.integers(1, 8), min_size=1, max_size=5))
    total = sum(sizes)
    spec = nodes_cluster({f"n{i}": s for i, s in enumerate(sizes)}, [pool("p1", "P1", 500, total)])
    cluster = Cluster(spec, PolicySpec())
    busy = draw(st.lists(st.sampled_from(sorted(cluster.gpus)), unique=True))
    for u in busy:
        cluster.take_idle(cluster.gpus[u])
    return cluster, busy


def feasible(idle_per_node: list[int], pods: tuple[int, ...]) -> bool:
    """Brute force: some node for each pod, within each node's idle GPUs."""
    for choice in itertools.product(range(len(idle_per_node)), repeat=len(pods)):
        used = [0] * len(idle_per_node)
        for p, n in zip(pods, choice, strict=True):
            used[n] += p
        if all(u <= c for u, c in zip(used, idle_per_node, strict=True)):
            return True
    return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts(), st.integers(1, 8), st.integers(1, 3))
def test_packing_places_every_job_a_repack_of_idle_gpus_would_fit(
    layout: tuple[Cluster, list[str]], per: int, count: int
) -> None:
    """Uniform pods (the pods a request asks for): ``fit`` finds a placement whenever one
    exists on the idle GPUs, each pod on one node, no GPU twice."""
    cluster, busy = layout
    p1 = cluster.pools["p1"]
    pods = (per,) * count
    idle = [p1.idle.count(n) for n in sorted(p1.nodes)]
    got = fit(cluster, p1, pods, own_only=True)
    assert (got is not None) == feasible(idle, pods)
    if got is not None:
        assert len({g.uuid for g in got}) == len(got) == sum(pods)
        assert not {g.uuid for g in got} & set(busy)
        at = 0
        for p in pods:
            assert len({g.node for g in got[at : at + p]}) == 1
            at += p


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.integers(1, 8), min_size=1, max_size=4),
    st.integers(0, 20),
    st.integers(1, 24),
    st.integers(0, 6),
)
def test_a_job_fits_or_the_miss_is_counted_as_a_repack_declined(
    sizes: list[int], busy: int, gpus: int, done: int
) -> None:
    """Any job (node-sized pods and a remainder): where its pods fit the idle GPUs and the
    core does not place it, it counts the wait among the repacks it declined."""
    total = sum(sizes)
    spec = nodes_cluster({f"n{i}": s for i, s in enumerate(sizes)}, [pool("p1", "P1", 500, total)])
    clock = Clock()
    core = Scheduler(spec, PolicySpec(), clock=clock)
    busy = min(busy, total)
    core.seed(
        [
            JobRequest(f"b{i}", "p1", 1, started_at=T0 - 10, duration_seconds=20 + (i < done))
            for i in range(busy)
        ]
    )
    clock.advance(10.5)  # the first ``done`` of them finish: holes wherever they were
    core.tick()
    node = {g.uuid: g.node for g in spec.gpus}
    taken = {u for j in core.iter_jobs() if j.state is JobState.RUNNING for u in j.gpu_ids}
    idle = [
        sum(1 for g in spec.gpus if g.node == n and g.uuid not in taken)
        for n in sorted({*node.values()})
    ]
    try:
        core.submit(JobRequest("j", "p1", gpus))
    except InvalidRequest:
        return  # its pods fit on no node it may ever have
    job = core.job("j")
    placed = job.state is JobState.RUNNING
    if feasible(idle, job.pods):
        assert placed or core.pool_view("p1").repacks_declined == 1
    else:
        assert not placed
    if placed:
        at = 0
        for p in job.pods:
            assert len({node[u] for u in job.gpu_ids[at : at + p]}) == 1
            at += p
