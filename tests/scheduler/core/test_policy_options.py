"""What the core offers besides the stack's policy: a job's lifetime preemption count, the
options a plain priority scheduler is made of (the simulator's ``naive`` policy), and
resuming from a checkpoint saved by an earlier run."""

from __future__ import annotations

from dataclasses import replace

from core_testkit import FAST, T0, Clock, cluster, pool

from scheduler.core import Action, JobKind, JobRequest, JobState, Scheduler
from scheduler.core.errors import InvalidRequest

P1_P2 = cluster(  # with a P0 above them, so that P1 is not the top class
    [
        pool("p0", "P0", 1000, 1, guaranteed=1, lending=0, borrowing=0, preemptible=False),
        pool("p1", "P1", 500, 2, lending=2, borrowing=2),
        pool("p2", "P2", 100, 2, lending=2, borrowing=2),
    ]
)


def test_lifetime_preemptions_outlive_the_budget_window_and_a_restart() -> None:
    clock = Clock(T0)
    spec = cluster(
        [
            pool("p0", "P0", 1000, 1, guaranteed=1, lending=0, borrowing=2, preemptible=False),
            pool("p2", "P2", 100, 2),
        ]
    )
    # No lifetime cap here (a job that cannot checkpoint has 1): the count is the point.
    policy = replace(
        FAST,
        preemption_budget=1,
        preemption_budget_window_seconds=600.0,
        max_preemptions_non_checkpointing=0,
    )
    core = Scheduler(spec, policy, clock=clock)
    core.submit(JobRequest("batch", "p2", 2, JobKind.BATCH))
    for round_ in range(3):
        clock.now += 700.0  # past the window and the minimum runtime: preemptible again
        core.tick()
        core.manual_rebalance("p0", 2, f"op{round_}")
        core.ack_preemption("batch")
        clock.now += 1.0
        core.tick()  # the grant goes back after the stabilization window ...
        clock.now += policy.return_stabilization_seconds
        core.tick()  # ... and the batch job runs again
        assert core.job("batch").state is JobState.RUNNING
    view = core.job("batch")
    assert len(view.preemptions) == 1  # the budget window keeps the last one only
    assert view.preemptions_total == 3
    restored = Scheduler.restore(
        spec, policy, clock=clock, jobs=list(core.iter_jobs()), meta=core.export_meta()
    )
    assert restored.job("batch").preemptions_total == 3


def test_newest_first_preempts_the_newest_whatever_it_loses() -> None:
    clock = Clock(T0)
    spec = cluster(
        [
            pool("p0", "P0", 1000, 1, guaranteed=1, lending=0, borrowing=1, preemptible=False),
            pool("p2", "P2", 100, 2),
        ]
    )
    jobs = [
        JobRequest("replica", "p0", 1, JobKind.INFERENCE, started_at=T0 - 7200),
        # Old and uncheckpointed: loses an hour; new: loses ten minutes.
        JobRequest("old", "p2", 1, JobKind.TRAINING, started_at=T0 - 3600),
        JobRequest("new", "p2", 1, JobKind.TRAINING, started_at=T0 - 600),
    ]
    chosen = {}
    for order in ("least_work_lost", "newest_first"):
        core = Scheduler(spec, replace(FAST, victim_order=order), clock=clock)
        core.seed(jobs)
        ds = core.manual_rebalance("p0", 1, "op")
        chosen[order] = [d.job for d in ds if d.action == Action.PREEMPT]
    assert chosen == {"least_work_lost": ["new"], "newest_first": ["new"]}
    # Now the newest has more to lose (it never checkpointed; the old one just did).
    jobs[1] = replace(jobs[1], checkpointable=True, last_checkpoint=T0 - 5)
    for order in ("least_work_lost", "newest_first"):
        core = Scheduler(spec, replace(FAST, victim_order=order), clock=clock)
        core.seed(jobs)
        ds = core.manual_rebalance("p0", 1, "op")
        chosen[order] = [d.job for d in ds if d.action == Action.PREEMPT]
    assert chosen == {"least_work_lost": ["old"], "newest_first": ["new"]}


def test_set_policy_takes_a_known_victim_order_only() -> None:
    core = Scheduler(P1_P2, FAST, clock=Clock(T0))
    core.set_policy(victim_order="newest_first")
    assert core.policy.victim_order == "newest_first"
    try:
        core.set_policy(victim_order="oldest_first")
    except InvalidRequest:
        pass
    else:
        raise AssertionError("an unknown order was accepted")


def test_without_the_cycle_guard_a_preemption_is_reversed_at_once() -> None:
    clock = Clock(T0)
    spec = cluster(
        [
            pool("p0", "P0", 1000, 1, guaranteed=1, lending=0, borrowing=2),
            pool("p1", "P1", 500, 2, lending=2),
        ]
    )
    seen = {}
    for guard in (True, False):
        core = Scheduler(
            spec, replace(FAST, cycle_guard=guard, min_runtime_seconds=0.0), clock=clock
        )
        core.seed([JobRequest("replica", "p0", 1, JobKind.INFERENCE, started_at=T0 - 3600)])
        core.seed([JobRequest("x", "p1", 2, JobKind.TRAINING, started_at=T0 - 3600)])
        core.manual_rebalance("p0", 2, "op")  # the grant preempts x ...
        ds = core.ack_preemption("x")  # ... and x, requeued, would take its GPUs straight back
        seen[guard] = (core.cycles_refused, [d.job for d in ds if d.action == Action.PREEMPT])
    assert seen[True] == (1, [])
    assert seen[False] == (0, ["p0/burst-3"])


def test_under_strict_priority_every_class_preempts_lower_owners_and_no_one_reclaims_upwards() -> (
    None
):
    clock = Clock(T0)
    preempted = {}
    for lower in (False, True):
        core = Scheduler(P1_P2, replace(FAST, strict_priority=lower), clock=clock)
        core.seed([JobRequest(f"b{i}", "p2", 1, started_at=T0 - 3600) for i in range(2)])
        core.seed([JobRequest(f"a{i}", "p1", 1, started_at=T0 - 3600) for i in range(2)])
        ds = core.submit(JobRequest("more", "p1", 1))
        preempted[lower] = [d.job for d in ds if d.action == Action.PREEMPT]
    assert preempted[False] == []  # P1 only reclaims what it lent; P2 owns its GPUs
    assert len(preempted[True]) == 1 and preempted[True][0].startswith("b")


def test_a_resumed_job_preempted_before_its_next_checkpoint_keeps_the_earlier_one() -> None:
    clock = Clock(T0)
    spec = cluster(
        [
            pool("p0", "P0", 1000, 1, guaranteed=1, lending=0, borrowing=2, preemptible=False),
            pool("p2", "P2", 100, 2),
        ]
    )
    policy = replace(FAST, preemption_budget=5, min_runtime_seconds=0.0)
    core = Scheduler(spec, policy, clock=clock)
    core.submit(
        JobRequest("t", "p2", 2, JobKind.TRAINING, checkpointable=True, duration_seconds=7200)
    )
    clock.now += 1000
    core.report_checkpoint("t")  # 1000 s of work are safe
    clock.now += 100
    core.manual_rebalance("p0", 2, "op1")
    core.ack_preemption("t")  # acknowledged without a new checkpoint: 100 s lost
    assert core.job("t").progress_seconds == 1000
    clock.now += policy.return_stabilization_seconds
    core.tick()  # the grant goes back; "t" resumes from 1000 s
    assert core.job("t").state is JobState.RUNNING
    clock.now += 50
    core.manual_rebalance("p0", 2, "op2")
    ds = core.ack_preemption("t")  # preempted again before saving anything new
    assert core.job("t").progress_seconds == 1000  # was 0: the earlier checkpoint thrown away
    release = next(d for d in ds if d.action == Action.RELEASE)
    assert release.gpu_seconds_lost == 2 * 50
    assert "resume from its last checkpoint" in release.reason
