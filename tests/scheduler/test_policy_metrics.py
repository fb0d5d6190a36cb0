"""The policy's own metrics: each job's lifetime preemptions and lost work, observed when it
finishes (a restart in between forgets nothing), and a pool draining for its queue's head."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from deploy.stack import Stack, load_stack
from exporters.catalog import scheduler as cat
from scheduler.core.model import JobKind, JobRequest
from scheduler.runtime import SchedulerRuntime

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0  # a Friday, 16:00 in Shanghai: no lending window open


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def stack() -> Stack:
    s = load_stack(ROOT / "deploy/stack.yaml")
    policy = dataclasses.replace(
        s.policy, min_runtime_seconds=5, default_grace_seconds=5, drain_after_seconds=60
    )
    return dataclasses.replace(s, policy=policy)


def samples(reg: CollectorRegistry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(generate_latest(reg).decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def runtime(tmp_path: Path, clock: Clock) -> tuple[SchedulerRuntime, CollectorRegistry]:
    reg = CollectorRegistry()
    rt = SchedulerRuntime.from_stack(stack(), db_path=tmp_path / "s.db", registry=reg, clock=clock)
    return rt, reg


def test_lifetime_preemptions_and_lost_work_per_job_survive_a_restart(tmp_path: Path) -> None:
    clock = Clock()
    rt, _ = runtime(tmp_path, clock)
    rt.seed(
        [
            JobRequest("p0-serving", "p0-risk", 8, JobKind.INFERENCE, started_at=T0 - 600),
            JobRequest("fixed", "p1-train", 16, preemptible=False, started_at=T0 - 600),
            JobRequest("batch", "p2-batch", 8, JobKind.BATCH, started_at=T0 - 600),
        ]
    )
    rt.manual_rebalance("p0-risk", 8, "op")
    rt.ack_preemption("batch")  # 8 GPUs x 600 s lost: it cannot checkpoint
    rt.close()
    clock.now += 60
    rt, reg = runtime(tmp_path, clock)  # a restart between the preemption and the end
    rt.cancel_job("batch")
    rt.cancel_job("fixed")
    m = samples(reg)
    p2, p1 = (("pool", "p2-batch"),), (("pool", "p1-train"),)
    assert m[cat.JOB_PREEMPTIONS.count] == {p2: 1.0, p1: 1.0}
    assert m[cat.JOB_PREEMPTIONS.sum] == {p2: 1.0, p1: 0.0}
    assert m[cat.JOB_GPU_SECONDS_LOST.sum][p2] == 8 * 600
    assert m[cat.JOB_GPU_SECONDS_LOST.bucket][(("le", "0.0"), *p1)] == 1.0
    rt.close()


def test_a_pool_draining_for_its_head_shows(tmp_path: Path) -> None:
    clock = Clock()
    rt, reg = runtime(tmp_path, clock)
    rt.seed(
        [
            JobRequest(f"s{i}", "p1-train", 4, duration_seconds=90 + 60 * i, started_at=T0)
            for i in range(4)
        ]
    )
    rt.submit_job(JobRequest("big", "p1-train", 16))
    clock.now += 100
    rt.tick()  # waited 100 s (over 60): s0 ended, its 4 GPUs are held for big
    m = samples(reg)
    pool = (("pool", "p1-train"),)
    assert m[cat.POOL_DRAINING.name][pool] == 1.0
    assert m[cat.DRAIN_HELD_GPUS.name][pool] == 4.0
    assert m[cat.POOL_DRAINING.name][(("pool", "p2-batch"),)] == 0.0
    (p1,) = [p for p in rt.pools() if p.name == "p1-train"]
    assert (p1.draining_for, p1.held_for_head) == ("big", 4)
    rt.close()
