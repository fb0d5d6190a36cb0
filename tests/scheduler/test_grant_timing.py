"""Time to capacity: the stages of each P0 grant, from the core's own decisions."""

from __future__ import annotations

from dataclasses import replace

from prometheus_client import CollectorRegistry

from exporters.catalog.scheduler import GRANT_TIME_TO_CAPACITY
from scheduler.core import JobKind, JobRequest, Scheduler
from scheduler.grant_timing import GrantTimer
from scheduler.metrics import Accumulator
from tests.scheduler.core.core_testkit import FAST, Clock, cluster, pool


def core(clock: Clock) -> Scheduler:
    spec = cluster(
        [
            pool("p0", "P0", 1000, 4, guaranteed=4, lending=0, borrowing=8, preemptible=False),
            pool("p1", "P1", 500, 8, guaranteed=0, lending=8, borrowing=0),
        ]
    )
    c = Scheduler(spec, replace(FAST, rebalance_step_gpus=4), clock=clock)
    c.seed([JobRequest("p0/replica-0", "p0", 4, JobKind.INFERENCE, started_at=clock.now - 60)])
    return c


def busy() -> tuple[Clock, Scheduler, GrantTimer]:
    """P1's GPUs all taken by a job past its minimum runtime: a grant must preempt it."""
    clock = Clock()
    c = core(clock)
    timer = GrantTimer()
    timer.observe(c.submit(JobRequest("t1", "p1", 8, JobKind.TRAINING, checkpointable=True)))
    clock.advance(3600)
    timer.observe(c.tick())
    return clock, c, timer


def test_a_grant_through_victims_has_every_stage_in_order() -> None:
    clock, c, timer = busy()
    out = timer.observe(c.alert(pool="p0", action="rebalance", firing=True, correlation_id="a"))
    assert out == [("p0", "first_victim_signalled", 0.0)]
    clock.advance(4.0)  # the victim checkpoints and acknowledges: its GPUs free, P0 serves
    out = timer.observe(c.ack_preemption("t1"))
    assert out == [("p0", "last_gpu_free", 4.0), ("p0", "serving", 4.0)]
    assert c.serving_gpus("p0") == 8


def test_a_grant_on_idle_gpus_serves_at_once_and_is_exported() -> None:
    clock = Clock()
    c = core(clock)
    acc = Accumulator()
    acc.observe(c.alert(pool="p0", action="rebalance", firing=True, correlation_id="a"))
    stages = {k: h.cumulative()[-1] for k, h in acc.to_capacity.items()}
    assert stages == {("p0", "last_gpu_free"): 1, ("p0", "serving"): 1}

    from scheduler.metrics import SchedulerCollector

    class Source:
        accumulator = acc

        def metrics_snapshot(self):  # type: ignore[no-untyped-def]
            from scheduler.metrics import MetricsSnapshot

            return MetricsSnapshot((), (), {}, {}, {}, (), 0)

    reg = CollectorRegistry()
    reg.register(SchedulerCollector(Source()))  # type: ignore[arg-type]
    got = reg.get_sample_value(GRANT_TIME_TO_CAPACITY.count, {"pool": "p0", "stage": "serving"})
    assert got == 1.0


def test_a_grant_cancelled_before_it_served_is_forgotten() -> None:
    clock, c, timer = busy()
    timer.observe(c.alert(pool="p0", action="rebalance", firing=True, correlation_id="a"))
    burst = next(j.id for j in c.iter_jobs() if j.elastic)
    assert timer.observe(c.cancel(burst)) == []
    clock.advance(4.0)
    later = timer.observe(c.ack_preemption("t1")) + timer.observe(c.tick())
    assert [stage for _, stage, _ in later if stage == "serving"] == []
