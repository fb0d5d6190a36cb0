"""SQLite (WAL) persistence: decisions before actuation, restart and idempotent resume."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from deploy.stack import Stack, load_stack
from exporters.catalog.scheduler import SCALE_EVENTS
from scheduler.actuators.base import Feedback, FeedbackKind
from scheduler.actuators.simulated import SimulatedActuator
from scheduler.core.model import Action, Decision, JobView, Result
from scheduler.metrics import SchedulerCollector
from scheduler.runtime import ActuatorError, SchedulerRuntime, StoreUnavailable
from scheduler.sim.workload import demo_workload
from scheduler.store.sqlite import Store

ROOT = Path(__file__).resolve().parents[3]
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Crashing(SimulatedActuator):
    """Refuses to preempt: the process 'dies' between recording and actuating."""

    def apply(self, decision: Decision, job: JobView | None) -> None:
        if decision.action == Action.PREEMPT:
            raise ActuatorError("connection reset")
        super().apply(decision, job)


@pytest.fixture
def stack() -> Stack:
    s = load_stack(ROOT / "deploy/stack.yaml")
    return dataclasses.replace(
        s, policy=dataclasses.replace(s.policy, min_runtime_seconds=5, default_grace_seconds=30)
    )


def runtime(
    stack: Stack, db: Path, clock: Clock, actuator: SimulatedActuator | None = None
) -> SchedulerRuntime:
    return SchedulerRuntime.from_stack(
        stack,
        db_path=db,
        registry=CollectorRegistry(),
        clock=clock,
        actuator=actuator or SimulatedActuator(clock),
    )


def test_store_runs_in_wal_mode(tmp_path: Path) -> None:
    store = Store(tmp_path / "s.db")
    assert store.journal_mode() == "wal"
    store.close()


def test_in_flight_preemptions_resume_once_after_a_restart(stack: Stack, tmp_path: Path) -> None:
    db, clock = tmp_path / "s.db", Clock()
    rt = runtime(stack, db, clock, Crashing(clock))
    rt.seed(demo_workload(stack, now=clock.now))
    ds = rt.on_alert(pool="p0-risk", action="rebalance", firing=True, correlation_id="am-1")
    victims = sorted(d.job for d in ds if d.action == Action.PREEMPT and d.job)
    assert victims
    # Recorded before actuation: the preemptions are in the store, unactuated.
    store = Store(db)
    pending = [d for d in store.unactuated() if d.action == Action.PREEMPT]
    assert sorted(d.job for d in pending if d.job) == victims
    deadline = {v: rt.job(v)["deadline"] for v in victims}
    rt.close()  # the crash

    clock.now += 2
    actuator = SimulatedActuator(clock)
    rt2 = runtime(stack, db, clock, actuator)
    # Same state after the restart: victims still preempting, same grace deadlines, GPUs held.
    assert {v: rt2.job(v)["deadline"] for v in victims} == deadline
    assert all(rt2.job(v)["state"] == "preempting" for v in victims)
    # The recorded preemptions were replayed through the actuator, exactly once.
    replayed = [d.job for d in actuator.log if d.action == Action.PREEMPT]
    assert sorted(j for j in replayed if j) == victims
    assert not [d for d in store.unactuated() if d.action == Action.PREEMPT]
    clock.now += 1
    rt2.tick()
    assert rt2.serving_gpus("p0-risk") == 16
    assert all(rt2.job(v)["state"] in ("requeued", "queued") for v in victims)
    rt2.close()

    # A second restart replays nothing and keeps the allocation.
    actuator3 = SimulatedActuator(clock)
    rt3 = runtime(stack, db, clock, actuator3)
    assert [d for d in actuator3.log if d.action == Action.PREEMPT] == []
    assert rt3.serving_gpus("p0-risk") == 16
    assert rt3.gpu_assignments() == rt2.gpu_assignments()
    allocations = store.allocations()
    burst = next(j for j in rt3.jobs(pool="p0-risk") if j["elastic"])
    assert {u for u, (job, kind) in allocations.items() if job == burst["id"]} == set(
        burst["gpu_ids"]
    )
    rt3.close()
    store.close()


def test_a_store_failure_raises_and_leaves_memory_as_stored(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    rt = runtime(stack, tmp_path / "s.db", clock)
    rt.seed(demo_workload(stack, now=clock.now))
    before = (rt.gpu_assignments(), rt.jobs())

    def broken(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable("disk full")

    monkeypatch.setattr(rt._store, "write", broken)
    with pytest.raises(StoreUnavailable):
        rt.on_alert(pool="p0-risk", action="rebalance", firing=True, correlation_id="x")
    monkeypatch.undo()
    # Nothing was actuated and memory was rebuilt from the store: as if it never happened.
    assert (rt.gpu_assignments(), rt.jobs()) == before
    ds = rt.on_alert(pool="p0-risk", action="rebalance", firing=True, correlation_id="x")
    assert any(d.action == Action.PREEMPT for d in ds)  # Alertmanager's retry goes through
    rt.close()


def test_decisions_are_listed_newest_first_and_survive_restarts(
    stack: Stack, tmp_path: Path
) -> None:
    db, clock = tmp_path / "s.db", Clock()
    rt = runtime(stack, db, clock)
    rt.seed(demo_workload(stack, now=clock.now))
    rt.on_alert(pool="p0-risk", action="rebalance", firing=True, correlation_id="am")
    latest = rt.decisions(limit=5)
    rt.close()
    rt2 = runtime(stack, db, clock)
    assert rt2.decisions(limit=5) == latest
    assert latest[0]["action"] == "rebalance"
    ids = [d["id"] for d in rt2.decisions(limit=1000)]
    assert ids == sorted(ids, reverse=True)
    # New decisions continue the sequence instead of reusing ids.
    rt2.manual_scale("p2-batch", 1, "op")
    assert rt2.decisions(limit=1)[0]["id"] > ids[0]
    rt2.close()


class Flaky(SimulatedActuator):
    """Fails the first preemption it is asked for, then works."""

    failed = False

    def apply(self, decision: Decision, job: JobView | None) -> None:
        if decision.action == Action.PREEMPT and not self.failed:
            self.failed = True
            raise ActuatorError("503 from the API server")
        super().apply(decision, job)


def test_a_failed_actuation_is_retried_on_the_next_tick(stack: Stack, tmp_path: Path) -> None:
    clock = Clock()
    actuator = Flaky(clock)
    rt = runtime(stack, tmp_path / "s.db", clock, actuator)
    rt.seed(demo_workload(stack, now=clock.now))
    ds = rt.on_alert(pool="p0-risk", action="rebalance", firing=True, correlation_id="am")
    victims = {d.job for d in ds if d.action == Action.PREEMPT}
    assert {d.job for d in actuator.log if d.action == Action.PREEMPT} == victims - {ds[0].job}
    rt.tick()
    assert {d.job for d in actuator.log if d.action == Action.PREEMPT} == victims
    store = Store(tmp_path / "s.db")
    assert not store.unactuated()
    store.close()
    rt.close()


def test_decisions_the_actuator_does_nothing_for_are_stored_done(
    stack: Stack, tmp_path: Path
) -> None:
    """Only decisions an actuator acts on wait for confirmation (and would be replayed)."""
    clock = Clock()
    rt = runtime(stack, tmp_path / "s.db", clock, Crashing(clock))
    rt.seed(demo_workload(stack, clock.now))
    clock.now += 60
    decisions = rt.on_alert(pool="p0-risk", action="rebalance", firing=True, correlation_id="c1")
    assert {d.action for d in decisions} >= {Action.REBALANCE, Action.PREEMPT}
    unconfirmed = {d.id for d in Store(tmp_path / "s.db").unactuated()}
    # The refused preemptions wait for a retry; the rebalance record itself never does.
    assert unconfirmed == {d.id for d in decisions if d.action == Action.PREEMPT}
    rt.close()


def _nodes(rt: SchedulerRuntime, pool: str) -> int:
    return next(p for p in rt.pools() if p.name == pool).nodes


def test_a_node_that_joined_survives_a_restart(stack: Stack, tmp_path: Path) -> None:
    """Even when its join causes no decision (nothing waits for it), it is written at once:
    before, it waited for some later decision, and a restart forgot it."""
    db, clock = tmp_path / "s.db", Clock()
    rt = runtime(stack, db, clock)
    before = _nodes(rt, "p2-batch")
    (up,) = rt.manual_scale("p2-batch", 1, "op-1")
    assert up.action == Action.SCALE_UP and up.result == Result.OK
    clock.now += 1
    assert rt.tick() == []  # the node joins; nothing waits for it
    assert _nodes(rt, "p2-batch") == before + 1
    rt.close()  # a crash right after
    rt2 = runtime(stack, db, clock)
    assert _nodes(rt2, "p2-batch") == before + 1
    rt2.close()


def test_node_names_are_unique_across_restarts(stack: Stack, tmp_path: Path) -> None:
    """A fresh simulated cluster after each restart, as ``serve`` makes: before, it named
    its first node as the last run did, and the join was dropped as already known."""
    db, clock = tmp_path / "s.db", Clock()
    rt = runtime(stack, db, clock)
    before = _nodes(rt, "p2-batch")
    rt.close()
    for round_ in range(1, 4):
        rt = runtime(stack, db, clock)
        rt.manual_scale("p2-batch", 1, f"op-{round_}")
        clock.now += 1
        rt.tick()
        assert _nodes(rt, "p2-batch") == before + round_
        assert rt.accumulator.scale[("p2-batch", "up", "failed")] == 0
        rt.close()


class Duplicating(SimulatedActuator):
    """Reports every node it adds twice, as a confused cloud API might."""

    def poll(self, now: float) -> list[Feedback]:
        out = super().poll(now)
        return out + [f for f in out if f.kind is FeedbackKind.NODE_ADDED]


def test_a_dropped_join_is_an_error_and_a_failed_scale_up(
    stack: Stack, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    rt = runtime(stack, tmp_path / "s.db", clock, Duplicating(clock))
    rt.manual_scale("p2-batch", 1, "op")
    clock.now += 1
    rt.tick()
    refused = [r for r in caplog.records if "did not join" in r.getMessage()]
    assert refused and refused[0].levelname == "ERROR"
    registry = CollectorRegistry()
    registry.register(SchedulerCollector(rt))
    labels = {"pool": "p2-batch", "direction": "up", "result": "failed"}
    assert registry.get_sample_value(SCALE_EVENTS.series, labels) == 1
    rt.close()


def test_actuator_news_survives_a_failed_tick(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tick whose write fails rolls memory back to the store; the node that joined in it
    is applied again on the next tick, not forgotten."""
    db, clock = tmp_path / "s.db", Clock()
    rt = runtime(stack, db, clock)
    before = _nodes(rt, "p2-batch")
    rt.manual_scale("p2-batch", 1, "op")
    clock.now += 1

    def broken(*args: object, **kwargs: object) -> None:
        raise StoreUnavailable("disk full")

    monkeypatch.setattr(rt._store, "write", broken)
    with pytest.raises(StoreUnavailable):
        rt.tick()
    monkeypatch.undo()
    assert _nodes(rt, "p2-batch") == before
    rt.tick()
    assert _nodes(rt, "p2-batch") == before + 1
    rt.close()
    rt2 = runtime(stack, db, clock)
    assert _nodes(rt2, "p2-batch") == before + 1
    rt2.close()
