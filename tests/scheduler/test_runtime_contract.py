"""The runtime contract the service and the demo code against, and its /metrics."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from deploy.stack import Stack, load_stack
from exporters.catalog import scheduler as cat
from scheduler.core.model import Action, JobKind, JobRequest, Result
from scheduler.runtime import Conflict, InvalidRequest, SchedulerRuntime, UnknownJob, UnknownPool
from scheduler.sim.workload import demo_workload

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def stack() -> Stack:
    s = load_stack(ROOT / "deploy/stack.yaml")
    fast = s.with_timing(
        scrape_interval_seconds=1,
        latency_alert_for_seconds=5,
        group_wait_seconds=1,
        group_interval_seconds=2,
        return_stabilization_seconds=15,
    )
    return dataclasses.replace(
        fast,
        policy=dataclasses.replace(fast.policy, min_runtime_seconds=5, default_grace_seconds=5),
    )


def samples(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def test_the_demo_loop_moves_gpus_within_seconds_and_back(stack: Stack, tmp_path: Path) -> None:
    clock, reg = Clock(), CollectorRegistry()
    rt = SchedulerRuntime.from_stack(stack, db_path=tmp_path / "s.db", registry=reg, clock=clock)
    rt.seed(demo_workload(stack, now=clock.now))
    pool = "p0-risk"
    own = rt.serving_gpus(pool)
    assert own == 8
    assert {p.name: p.idle for p in rt.pools()} == {
        "p0-risk": 0,
        "p1-train": 0,
        "p2-batch": 0,
    }

    ds = rt.on_alert(pool=pool, action="rebalance", firing=True, correlation_id="grp-1")
    assert ds[-1].action == Action.REBALANCE and ds[-1].gpus == stack.policy.rebalance_step_gpus
    seconds = 0.0
    while rt.serving_gpus(pool) == own and seconds < 10:
        clock.now += 0.5
        seconds += 0.5
        rt.tick()
    assert rt.serving_gpus(pool) == own + stack.policy.rebalance_step_gpus
    assert seconds <= 1.5  # the simulated victims checkpoint and ack after ~1 s
    assert sum(1 for _, p in rt.gpu_assignments().values() if p == pool) == 16

    m = samples(reg)
    assert len(m[cat.GPU_POOL_INFO.series]) == stack.total_gpus
    assert sum(v for _, v in m[cat.PREEMPTIONS.series]) >= 1
    borrowed = {lab["pool"]: v for lab, v in m[cat.POOL_GPUS.name] if lab["state"] == "borrowed"}
    assert borrowed[pool] == 8
    assert any(lab["action"] == "rebalance" for lab, _ in m[cat.DECISIONS.series])
    assert cat.DECISION_DURATION.bucket in m and cat.QUEUE_WAIT.bucket in m
    requeued = {lab["pool"]: v for lab, v in m[cat.QUEUE_LENGTH.name]}
    assert requeued["p2-batch"] >= 1

    rt.on_alert(pool=pool, action="rebalance", firing=False, correlation_id="grp-1")
    clock.now += stack.policy.return_stabilization_seconds
    rt.tick()
    assert rt.serving_gpus(pool) == own
    assert all(j["state"] == "running" for j in rt.jobs() if not j["elastic"])
    # The victims were those losing least, all checkpointed: no work lost (cost before class).
    lost = {lab["pool"]: v for lab, v in samples(reg)[cat.GPU_SECONDS_LOST.series]}
    assert lost == {"p0-risk": 0.0, "p1-train": 0.0, "p2-batch": 0.0}
    rt.close()


def test_api_views_and_errors(stack: Stack, tmp_path: Path) -> None:
    clock = Clock()
    rt = SchedulerRuntime.from_stack(
        stack, db_path=tmp_path / "s.db", registry=CollectorRegistry(), clock=clock
    )
    rt.seed(demo_workload(stack, now=clock.now))
    job = rt.submit_job(JobRequest("extra", "p2-batch", 2, JobKind.BATCH, checkpointable=True))
    assert job["state"] == "queued"
    assert [q["length"] for q in rt.queues() if q["pool"] == "p2-batch"] == [1]
    assert rt.jobs(pool="p2-batch", state="queued")[0]["id"] == "extra"
    with pytest.raises(UnknownPool):
        rt.on_alert(pool="nope", action="rebalance", firing=True, correlation_id="")
    with pytest.raises(InvalidRequest):
        rt.on_alert(pool="p0-risk", action="explode", firing=True, correlation_id="")
    with pytest.raises(UnknownJob):
        rt.cancel_job("ghost")
    with pytest.raises(Conflict):
        rt.submit_job(JobRequest("extra", "p2-batch", 1))
    with pytest.raises(InvalidRequest):
        rt.submit_job(JobRequest("huge", "p2-batch", 1000))
    with pytest.raises(InvalidRequest):
        rt.report_checkpoint("p0-risk-replica-0")  # inference replicas are stateless
    rt.cancel_job("extra")
    with pytest.raises(Conflict):
        rt.cancel_job("extra")
    rt.set_policy(dry_run=True, rebalance_step_gpus=4)
    assert rt.policy()["dry_run"] is True and rt.policy()["rebalance_step_gpus"] == 4
    with pytest.raises(InvalidRequest):
        rt.set_policy(no_such_field=1)
    ds = rt.on_alert(pool="p0-risk", action="rebalance", firing=True, correlation_id="s")
    assert [(d.result, d.dry_run, d.gpus) for d in ds] == [(Result.DRY_RUN, True, 4)]
    assert rt.serving_gpus("p0-risk") == 8
    (res,) = rt.reservations()
    assert res.name == "market-bell" and (res.next_start or 0) > clock.now - 86400
    scale = rt.manual_scale("p2-batch", 1, "op")
    assert scale[0].action == Action.SCALE_UP
    rt.close()


def test_reservation_and_scaling_show_in_metrics(stack: Stack, tmp_path: Path) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    bell = datetime(2027, 1, 15, 9, 15, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    clock, reg = Clock(), CollectorRegistry()
    clock.now = bell - 400
    rt = SchedulerRuntime.from_stack(stack, db_path=tmp_path / "s.db", registry=reg, clock=clock)
    rt.seed(demo_workload(stack, now=clock.now))

    def gauge(name: str, **labels: str) -> float:
        return next(v for lab, v in samples(reg)[name] if labels.items() <= lab.items())

    key = {"reservation": "market-bell", "pool": "p0-risk"}
    assert gauge(cat.RESERVATION_ACTIVE.name, **key) == 0
    clock.now = bell - 300  # the drain lead starts
    rt.tick()
    assert gauge(cat.RESERVATION_ACTIVE.name, **key) == 1
    assert gauge(cat.RESERVATION_SATISFIED.name, **key) == 0
    clock.now += 1.5  # the simulated victims checkpoint and let go
    rt.tick()
    assert gauge(cat.RESERVATION_SATISFIED.name, **key) == 1
    # Before the bell: its own GPUs and the reservation's.
    own = stack.pool("p0-risk").nominal_gpus
    assert rt.serving_gpus("p0-risk") == own + stack.reservations[0].gpus

    nodes = gauge(cat.POOL_NODES.name, pool="p1-train")
    rt.manual_scale("p1-train", 1, "op-1")
    rt.tick()  # the simulated autoscaler's node joins
    assert gauge(cat.POOL_NODES.name, pool="p1-train") == nodes + 1
    assert gauge(cat.SCALE_EVENTS.series, pool="p1-train", direction="up", result="ok") == 1
    rt.close()
