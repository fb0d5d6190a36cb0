"""Queues hold live entries only, and seeding validates everything before it changes anything."""

from __future__ import annotations

import pytest
from core_testkit import FAST, T0, World, bank

from scheduler.core import InvalidRequest, JobKind, JobRequest, JobState, Scheduler


def entries(core: Scheduler) -> dict[str, int]:
    """Entries in each pool's queue, as the core holds them (internals, on purpose)."""
    return {name: len(p.queue) for name, p in core._cluster.pools.items()}


def waiting(core: Scheduler) -> dict[str, int]:
    return {name: core.pool_view(name).waiting for name in core.pool_names()}


def test_seeding_leaves_no_queue_entries(world: World) -> None:
    core = world.make()
    core.seed([JobRequest(f"s{i}", "p1", 1, started_at=T0 - 60) for i in range(8)])
    assert entries(core) == {"p0": 0, "p1": 0, "p2": 0}


def test_jobs_leaving_behind_a_blocked_head_take_their_entries_along(world: World) -> None:
    core = world.make()
    core.seed([JobRequest("fixed", "p1", 8, preemptible=False, started_at=T0 - 60)])
    core.seed([JobRequest("fixed2", "p2", 4, preemptible=False, started_at=T0 - 60)])
    core.submit(JobRequest("head", "p2", 4))  # blocked: nothing is free or preemptible
    for i in range(50):
        core.submit(JobRequest(f"q{i}", "p2", 1))
        core.cancel(f"q{i}")  # leaves from behind the head
    assert entries(core) == waiting(core) == {"p0": 0, "p1": 0, "p2": 1}
    assert [v.id for v, _ in core.queue("p2")] == ["head"]


def test_a_requeued_job_has_one_entry_at_the_back(world: World) -> None:
    core = world.make()
    core.seed([JobRequest(f"r{i}", "p0", 1, JobKind.INFERENCE, started_at=T0) for i in range(4)])
    core.seed([JobRequest("fixed", "p1", 8, preemptible=False, started_at=T0)])
    core.seed([JobRequest("v", "p2", 4, JobKind.INFERENCE, started_at=T0 - 3600)])
    core.submit(JobRequest("w", "p2", 1))
    core.manual_rebalance("p0", 4, "a")
    core.ack_preemption("v")
    assert [v.id for v, _ in core.queue("p2")] == ["w", "v"]
    assert entries(core)["p2"] == 2


def test_a_seed_that_cannot_be_done_changes_nothing(world: World) -> None:
    core = world.make()
    before = (list(core.iter_jobs()), core.gpu_assignments(), entries(core))
    with pytest.raises(InvalidRequest, match="started_at is in the future"):
        core.seed(
            [JobRequest("ok", "p1", 2, started_at=T0), JobRequest("f", "p1", 1, started_at=T0 + 1)]
        )
    with pytest.raises(InvalidRequest, match="no room to seed 4 GPUs in p0"):
        # Each fits alone; together they do not (P0 has 4 GPUs and borrows up to 8).
        core.seed(
            [JobRequest(f"r{i}", "p0", 4, JobKind.INFERENCE, started_at=T0) for i in range(4)]
        )
    with pytest.raises(InvalidRequest, match="listed twice"):
        core.seed([JobRequest("d", "p1", 1, started_at=T0), JobRequest("d", "p1", 1)])
    assert (list(core.iter_jobs()), core.gpu_assignments(), entries(core)) == before
    # Nothing half-done: the same ids can be seeded now.
    core.seed([JobRequest("ok", "p1", 2, started_at=T0), JobRequest("d", "p1", 1)])
    assert core.job("ok").state is JobState.RUNNING


def test_seed_room_is_counted_as_placement_takes_it(world: World) -> None:
    """The room check walks the GPUs exactly as the seeds then take them: all that fits does."""
    core = Scheduler(bank(), FAST, clock=world.clock)
    reqs = [
        JobRequest("a", "p0", 4, JobKind.INFERENCE, started_at=T0),
        JobRequest("b", "p0", 4, JobKind.INFERENCE, started_at=T0),  # borrows from P2 first
        JobRequest("c", "p1", 8, started_at=T0),
        JobRequest("d", "p0", 4, JobKind.INFERENCE, started_at=T0),  # the rest: P1's lendable? no
    ]
    with pytest.raises(InvalidRequest, match="d: no room"):
        core.seed(reqs)
    core.seed(reqs[:3])
    assert core.pool_view("p0").borrowed == 4 and core.pool_view("p2").lent == 4
