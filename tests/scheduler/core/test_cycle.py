"""One "now" per public call: the core reads its clock once per call and stamps every decision
of that call with it."""

from __future__ import annotations

from collections.abc import Callable

from core_testkit import FAST, T0, bank

from scheduler.core import Action, Decision, JobKind, JobRequest, Scheduler


class CountingClock:
    """A clock that moves on by a millisecond every time it is read."""

    def __init__(self) -> None:
        self.now = T0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        self.now += 0.001
        return self.now


def once(clock: CountingClock, call: Callable[[], object]) -> object:
    before = clock.reads
    result = call()
    assert clock.reads - before <= 1, f"{clock.reads - before} clock reads in one call"
    if isinstance(result, list) and result and isinstance(result[0], Decision):
        assert len({d.at for d in result}) == 1, [d.at for d in result]
    return result


def test_every_public_call_reads_the_clock_once_and_stamps_its_decisions_alike() -> None:
    clock = CountingClock()
    core = Scheduler(bank(), FAST, clock=clock)
    started = T0 - 3600
    seeded = once(
        clock,
        lambda: core.seed(
            [
                JobRequest(
                    f"t{i}", "p1", 2, JobKind.TRAINING, checkpointable=True, started_at=started
                )
                for i in range(4)
            ]
            + [
                JobRequest(f"b{i}", "p2", 2, JobKind.BATCH, checkpointable=True, started_at=started)
                for i in range(2)
            ]
            + [
                JobRequest(f"r{i}", "p0", 1, JobKind.INFERENCE, started_at=started)
                for i in range(4)
            ]
        ),
    )
    assert isinstance(seeded, list) and len(seeded) == 10
    # A P0 breach on a full cluster: plan, hold, preempt (several victims), record: one instant.
    ds = once(
        clock, lambda: core.alert(pool="p0", action="rebalance", firing=True, correlation_id="a")
    )
    assert isinstance(ds, list)
    victims = [d.job for d in ds if d.action == Action.PREEMPT]
    assert len(victims) >= 2
    once(clock, lambda: core.report_checkpoint(victims[0]))
    once(clock, lambda: core.ack_preemption(victims[0]))
    clock.now += 60
    once(clock, core.tick)
    once(clock, lambda: core.submit(JobRequest("q", "p2", 2, JobKind.BATCH)))
    once(clock, lambda: core.cancel("q"))
    once(clock, lambda: core.manual_rebalance("p0", 2, "m"))
    once(clock, lambda: core.manual_scale("p2", 1, "s"))
    once(clock, lambda: core.add_node("p2", "node-new", ["GPU-n0", "GPU-n1"]))
    once(clock, lambda: core.set_policy(min_runtime_seconds=1.0))
    once(clock, lambda: core.alert(pool="p0", action="rebalance", firing=False, correlation_id="b"))
    clock.now += 3600
    once(clock, core.tick)
    once(clock, lambda: core.queue("p2"))
    once(clock, core.reservation_views)
