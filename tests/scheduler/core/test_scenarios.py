"""Scenarios on the pure core: the market open, a night training burst, a reservation window."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from zoneinfo import ZoneInfo

from core_testkit import FAST, World, bank

from scheduler.core import (
    Action,
    Decision,
    JobKind,
    JobRequest,
    JobState,
    ReservationSpec,
    Result,
)


def actions(ds: list[Decision]) -> list[tuple[Action, str | None]]:
    return [(d.action, d.job) for d in ds]


def seed_full(world: World, core_started_ago: float = 3600.0) -> list[JobRequest]:
    """P0 replicas on its 4 GPUs, P1 two 4-GPU training jobs, P2 two 2-GPU batch jobs."""
    t = world.clock.now - core_started_ago
    return [
        *(JobRequest(f"p0-r{i}", "p0", 1, JobKind.INFERENCE, started_at=t) for i in range(4)),
        JobRequest(
            "train-a",
            "p1",
            4,
            JobKind.TRAINING,
            checkpointable=True,
            started_at=t,
            last_checkpoint=world.clock.now - 60,
        ),
        JobRequest(
            "train-b",
            "p1",
            4,
            JobKind.TRAINING,
            checkpointable=True,
            started_at=t,
            last_checkpoint=world.clock.now - 600,
        ),
        JobRequest(
            "batch-ckpt",
            "p2",
            2,
            JobKind.BATCH,
            checkpointable=True,
            started_at=t,
            last_checkpoint=world.clock.now - 30,
            duration_seconds=7200,
        ),
        JobRequest("batch-plain", "p2", 2, JobKind.BATCH, started_at=t + core_started_ago / 6),
    ]


def test_market_open_p0_takes_what_loses_least_whatever_the_class(world: World) -> None:
    core = world.make()
    core.seed(seed_full(world))
    ds = core.alert(pool="p0", action="rebalance", firing=True, correlation_id="am-1")
    # At risk: batch-ckpt 2 x 30 s, train-a 4 x 60 s, train-b 4 x 600 s, batch-plain
    # 2 x 3000 s (no checkpoint). One job covers the 4 GPUs: the one losing least that does.
    preempted = [d for d in ds if d.action == "preempt"]
    assert [(d.job, d.reason.split("; ")[1]) for d in preempted] == [
        ("train-a", "10s grace to checkpoint, 240 GPU-s at risk")
    ]
    assert ds[-1].result == "pending" and ds[-1].gpus == 4


def test_market_open_p0_borrows_from_batch_first_and_gives_back(world: World) -> None:
    # Classes first (cost_before_class off): P2 before P1, least work lost within P2.
    core = world.make(policy=replace(FAST, cost_before_class=False))
    core.seed(seed_full(world))
    assert core.serving_gpus("p0") == 4

    ds = core.alert(pool="p0", action="rebalance", firing=True, correlation_id="am-1")
    preempted = [d.job for d in ds if d.action == Action.PREEMPT]
    # P2 before P1; the checkpointed batch job loses least, so it goes first.
    assert preempted == ["batch-ckpt", "batch-plain"]
    rebalance = ds[-1]
    assert (rebalance.action, rebalance.result, rebalance.gpus) == (
        Action.REBALANCE,
        Result.PENDING,
        4,
    )
    assert rebalance.correlation_id == "am-1"
    assert all(d.correlation_id == "am-1" for d in ds if d.action == Action.PREEMPT)
    # Freed GPUs are held for the preemptor: nobody else may take them meanwhile.
    assert core.serving_gpus("p0") == 4
    world.clock.advance(1)
    core.submit(JobRequest("p1-sneak", "p1", 1))
    assert core.job("p1-sneak").state is JobState.QUEUED

    # The checkpointed victim acks at once; the other runs out its grace.
    core.report_checkpoint("batch-ckpt")
    ds = core.ack_preemption("batch-ckpt")
    assert [d.action for d in ds] == [Action.RELEASE]
    assert ds[0].gpu_seconds_lost == 0
    world.clock.advance(FAST.default_grace_seconds)
    ds = core.tick()
    assert (Action.RELEASE, "batch-plain") in actions(ds)
    assert (Action.PLACE, rebalance.job) in actions(ds)
    assert core.serving_gpus("p0") == 8
    lost = next(d for d in ds if d.action == Action.RELEASE).gpu_seconds_lost
    assert lost == 2 * (3600 - 600 + 1 + FAST.default_grace_seconds)
    assert core.job("batch-ckpt").state is JobState.REQUEUED

    # Resolved: nothing moves until the stabilization window has passed.
    core.alert(pool="p0", action="rebalance", firing=False, correlation_id="am-2")
    world.clock.advance(FAST.return_stabilization_seconds - 1)
    assert not [d for d in core.tick() if d.action == Action.RETURN]
    world.clock.advance(1)
    ds = core.tick()
    assert [d.action for d in ds if d.action == Action.RETURN] == [Action.RETURN]
    assert core.serving_gpus("p0") == 4
    # The victims resume; the checkpointed one from its checkpoint.
    placed = {d.job for d in ds if d.action == Action.PLACE}
    assert {"batch-ckpt", "batch-plain"} <= placed
    job = core.job("batch-ckpt")
    assert job.resume_count == 1 and job.progress_seconds == 3600 + 1  # checkpointed at the ack


def test_a_retried_notification_does_not_borrow_twice(world: World) -> None:
    core = world.make()
    core.seed(seed_full(world))
    first = core.alert(pool="p0", action="rebalance", firing=True, correlation_id="same")
    again = core.alert(pool="p0", action="rebalance", firing=True, correlation_id="same")
    assert first and again == []


def test_min_runtime_protects_fresh_jobs(world: World) -> None:
    core = world.make()
    core.seed(seed_full(world, core_started_ago=FAST.min_runtime_seconds - 1))
    ds = core.alert(pool="p0", action="rebalance", firing=True, correlation_id="x")
    assert [(d.action, d.result) for d in ds] == [(Action.REBALANCE, Result.NOOP)]
    world.clock.advance(1)
    ds = core.alert(pool="p0", action="rebalance", firing=True, correlation_id="y")
    assert ds[-1].result == Result.PENDING


def test_preemption_budget_protects_a_job_after_n_preemptions(world: World) -> None:
    # The lifetime cap off: the budget alone protects it here.
    core = world.make(policy=replace(FAST, max_preemptions_non_checkpointing=0))
    core.seed([JobRequest("p0-r0", "p0", 4, JobKind.INFERENCE, started_at=world.clock.now - 10)])
    core.seed([JobRequest("victim", "p2", 4, started_at=world.clock.now - 3600)])
    core.seed([JobRequest("fixed", "p1", 8, preemptible=False, started_at=world.clock.now)])
    for i in range(FAST.preemption_budget):
        ds = core.manual_rebalance("p0", 4, f"op-{i}")
        assert (Action.PREEMPT, "victim") in actions(ds)
        core.ack_preemption("victim")
        world.clock.advance(FAST.return_stabilization_seconds)
        core.tick()  # burst returns, victim resumes
        assert core.job("victim").state is JobState.RUNNING
        world.clock.advance(FAST.min_runtime_seconds)
    ds = core.manual_rebalance("p0", 4, "op-last")
    assert [(d.action, d.result) for d in ds] == [(Action.REBALANCE, Result.NOOP)]
    assert core.job("victim").state is JobState.RUNNING


def test_night_training_burst_borrows_idle_batch_gpus_then_batch_reclaims(world: World) -> None:
    core = world.make()
    # Night: P2 is idle; P1 submits more training than its quota.
    for i in range(3):
        core.submit(JobRequest(f"train-{i}", "p1", 4, JobKind.TRAINING, checkpointable=True))
    assert all(core.job(f"train-{i}").state is JobState.RUNNING for i in range(3))
    p1, p2 = core.pool_view("p1"), core.pool_view("p2")
    assert (p1.owned, p1.borrowed) == (8, 4)
    assert (p2.lent, p2.idle) == (4, 0)
    # A fourth exceeds P1's borrowing limit (4): it waits, and P0 is untouched.
    core.submit(JobRequest("train-3", "p1", 4, JobKind.TRAINING))
    assert core.job("train-3").state is JobState.QUEUED
    assert core.pool_view("p0").lent == 0

    # Morning: batch arrives and reclaims its own GPUs from the borrower, which
    # is past its cooldown; it was checkpointing, so little is lost.
    world.clock.advance(FAST.min_runtime_seconds)
    core.report_checkpoint("train-2")
    ds = core.submit(JobRequest("batch-morning", "p2", 4))
    preempt = [d for d in ds if d.action == Action.PREEMPT]
    assert [d.job for d in preempt] == ["train-2"]
    assert preempt[0].cause == "reclaim"
    core.ack_preemption("train-2")
    assert core.job("batch-morning").state is JobState.RUNNING
    assert core.pool_view("p1").borrowed == 0


def test_only_the_top_class_borrows_by_preemption(world: World) -> None:
    core = world.make()
    core.seed([JobRequest("batch", "p2", 4, started_at=world.clock.now - 3600)])
    core.seed([JobRequest("train", "p1", 8, started_at=world.clock.now - 3600)])
    # P1 is full and P2's GPUs are busy with P2's own work: P1 waits rather than
    # preempting an owner (which would only be reclaimed back).
    core.submit(JobRequest("more-training", "p1", 2))
    world.clock.advance(1)
    assert not [d for d in core.tick() if d.action == Action.PREEMPT]
    assert core.job("batch").state is JobState.RUNNING


def test_cycle_detector_refuses_the_reversal_and_counts_it(world: World) -> None:
    from core_testkit import cluster, pool

    # A preemptible top class: it borrows by preemption, and the owner reclaims.
    spec = cluster(
        [
            pool("top", "P0", 1000, 4, borrowing=4, lending=0, guaranteed=4),
            pool("low", "P2", 100, 4, borrowing=0),
        ]
    )
    core = world.make(spec)
    core.seed([JobRequest("top-own", "top", 4, started_at=world.clock.now - 3600)])
    core.seed([JobRequest("B", "low", 4, started_at=world.clock.now - 3600)])
    # A (top) preempts B to borrow low's GPUs.
    core.submit(JobRequest("A", "top", 4))
    core.ack_preemption("B")
    assert core.job("A").state is JobState.RUNNING
    world.clock.advance(FAST.min_runtime_seconds)
    # B would now reclaim its pool's GPUs from A: that reverses the preemption
    # of B for A inside the window. Refused, counted once however often it is
    # reconsidered.
    core.tick()
    world.clock.advance(1)
    core.tick()
    assert core.job("A").state is JobState.RUNNING
    assert core.job("B").state is JobState.REQUEUED
    assert core.cycles_refused == 1
    # After the window the reclaim goes through.
    world.clock.advance(FAST.cycle_window_seconds)
    ds = core.tick()
    assert [(d.job, d.cause) for d in ds if d.action == Action.PREEMPT] == [("A", "reclaim")]


def test_dry_run_records_but_changes_nothing(world: World) -> None:
    core = world.make(policy=replace(FAST, dry_run=True))
    core.seed(seed_full(world))
    before = core.gpu_assignments()
    ds = core.alert(pool="p0", action="rebalance", firing=True, correlation_id="shadow")
    assert [(d.action, d.result, d.dry_run) for d in ds] == [
        (Action.REBALANCE, Result.DRY_RUN, True)
    ]
    assert ds[0].victims == ("train-a",)
    assert core.gpu_assignments() == before
    assert core.job("batch-ckpt").state is JobState.RUNNING


def test_grace_expiry_releases_without_an_ack_and_cancel_frees_holds(world: World) -> None:
    core = world.make()
    core.seed(seed_full(world))
    ds = core.alert(pool="p0", action="rebalance", firing=True, correlation_id="c")
    burst = ds[-1].job
    assert burst is not None
    core.cancel(burst)
    world.clock.advance(FAST.default_grace_seconds)
    core.tick()
    # The victims were released and, nothing holding their GPUs, resumed at home.
    assert core.job("batch-plain").state is JobState.RUNNING
    assert core.pool_view("p2").idle == 0
    assert core.pool_view("p0").borrowed == 0


def test_queue_scale_up_then_idle_scale_down(world: World) -> None:
    policy = replace(
        FAST,
        scale_up_wait_seconds=30,
        scale_down_unneeded_seconds=120,
        scale_down_stabilization_seconds=60,
    )
    core = world.make(policy=policy)
    core.seed(seed_full(world))
    core.submit(JobRequest("waiting", "p2", 4))
    world.clock.advance(30)
    ups = [d for d in core.tick() if d.action == Action.SCALE_UP]
    assert [(d.result, d.gpus) for d in ups] == [(Result.OK, 4)]
    # The node arrives (the actuator reports it): the queued job runs on it.
    core.add_node("p2", "p2-scaled-1", [f"GPU-new-{i}" for i in range(4)])
    assert core.job("waiting").state is JobState.RUNNING
    assert core.pool_view("p2").nodes == 2
    core.cancel("waiting")
    world.clock.advance(119)
    assert not [d for d in core.tick() if d.action == Action.SCALE_DOWN]
    world.clock.advance(1)
    downs = [d for d in core.tick() if d.action == Action.SCALE_DOWN]
    assert [(d.result, d.nodes) for d in downs] == [(Result.OK, ("p2-scaled-1",))]
    assert core.pool_view("p2").nominal_gpus == 4


def test_reservation_drains_borrowers_before_the_bell(world: World) -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    bell = datetime(2027, 1, 15, 9, 15, tzinfo=shanghai).timestamp()  # a Friday
    res = ReservationSpec(
        name="bell",
        pool="p0",
        gpus=4,
        timezone="Asia/Shanghai",
        days=(0, 1, 2, 3, 4),
        windows=((9 * 60 + 15, 9 * 60 + 45),),
        drain_lead_seconds=300,
    )
    world.clock.now = bell - 3600
    core = world.make(bank((res,)))
    core.seed(seed_full(world))
    world.clock.now = bell - 301
    assert not [d for d in core.tick() if d.action in (Action.RESERVE, Action.PREEMPT)]
    world.clock.now = bell - 300
    ds = core.tick()
    assert (Action.RESERVE, f"reservation/bell/{int(bell)}") in actions(ds)
    assert [d.job for d in ds if d.action == Action.PREEMPT] == ["batch-ckpt", "batch-plain"]
    assert all(d.cause == "reservation" for d in ds if d.action == Action.PREEMPT)
    world.clock.now = bell - 300 + FAST.default_grace_seconds
    core.tick()
    (state,) = core.reservation_views()
    assert state.active and state.satisfied and not state.open
    world.clock.now = bell
    assert core.reservation_views()[0].open
    assert core.serving_gpus("p0") == 8  # at the bell P0 already holds the reserved GPUs
    world.clock.now = bell + 30 * 60
    ds = core.tick()
    assert [d.cause for d in ds if d.action == Action.RESERVE] == ["window_end"]
    assert core.serving_gpus("p0") == 4
    assert core.job("batch-ckpt").state is JobState.RUNNING
