"""Trace-driven simulation of the scheduler on real job traces.

Reads ElasticFlow-style traces (``job_id,submission_time,duration,num_gpu``;
``SAMPLE_TRACE`` is 300 jobs of one, shipped with the package) and replays them
through the pure core on a simulated clock: jobs of ``training_min_gpus`` GPUs
or more go to the training pool, the rest to the batch pool; training jobs
checkpoint every ``checkpoint_interval_seconds`` (``training_share_percent`` of the
smaller jobs count as training too, so both pools see load); preempted jobs checkpoint and
acknowledge after ``ack_seconds`` (as the simulated actuator does); P0 alerts
can be injected at given times. The report answers the CTO's questions: how
long each pool waited, how often jobs were preempted, and how much work
preemption cost.
"""

from __future__ import annotations

import csv
import heapq
import statistics
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path

from scheduler.core.engine import Scheduler
from scheduler.core.model import (
    FINISHED_STATES,
    Action,
    ClusterSpec,
    Decision,
    JobKind,
    JobRequest,
    JobState,
    PolicySpec,
    Result,
)

# 300 jobs of Microsoft's ElasticFlow traces (MIT), package data: see traces/README.md.
SAMPLE_TRACE = Path(str(files("scheduler.sim") / "traces" / "elasticflow-sample.csv"))


@dataclass(frozen=True)
class TraceJob:
    job_id: str
    submission_time: float
    duration: float
    num_gpu: int


def read_trace(path: str | Path, limit: int | None = None) -> list[TraceJob]:
    """Jobs of one trace file, in submission order (at most ``limit``)."""
    out = []
    with Path(path).open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            out.append(
                TraceJob(
                    row["job_id"],
                    float(row["submission_time"]),
                    float(row["duration"]),
                    int(row["num_gpu"]),
                )
            )
    out.sort(key=lambda j: (j.submission_time, j.job_id))
    return out if limit is None else out[:limit]


@dataclass(frozen=True)
class SimConfig:
    training_pool: str
    batch_pool: str
    p0_pool: str
    training_min_gpus: int = 4
    # Traces are mostly 1-GPU jobs: this share of them (by a hash of the id,
    # so deterministic) also counts as training, to load both pools.
    training_share_percent: int = 50
    checkpoint_interval_seconds: float = 1800.0
    ack_seconds: float = 5.0
    tick_seconds: float = 60.0
    max_ticks: int = 1_000_000  # a bound on the loop, far above any trace here


@dataclass
class SimReport:
    submitted: int = 0
    skipped_too_big: int = 0
    completed: int = 0
    unfinished: int = 0
    preemptions: Counter[str] = field(default_factory=Counter)  # by victim pool
    max_preemptions_per_job: int = 0
    gpu_seconds_lost: dict[str, float] = field(default_factory=dict)
    gpu_seconds_run: float = 0.0
    waits: dict[str, list[float]] = field(default_factory=dict)
    cycles_refused: int = 0
    makespan_seconds: float = 0.0

    def summary(self) -> dict[str, object]:
        return {
            "submitted": self.submitted,
            "skipped_too_big": self.skipped_too_big,
            "completed": self.completed,
            "unfinished": self.unfinished,
            "preemptions": dict(self.preemptions),
            "max_preemptions_per_job": self.max_preemptions_per_job,
            "gpu_seconds_lost": {k: round(v) for k, v in self.gpu_seconds_lost.items()},
            "lost_fraction": (
                sum(self.gpu_seconds_lost.values()) / self.gpu_seconds_run
                if self.gpu_seconds_run
                else 0.0
            ),
            "wait_p50_seconds": {p: statistics.median(w) for p, w in self.waits.items() if w},
            "wait_max_seconds": {p: max(w) for p, w in self.waits.items() if w},
            "cycles_refused": self.cycles_refused,
            "makespan_seconds": self.makespan_seconds,
        }


class _Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def simulate(
    trace: Sequence[TraceJob],
    cluster: ClusterSpec,
    policy: PolicySpec,
    config: SimConfig,
    *,
    alerts: Iterable[tuple[float, bool]] = (),
    on_decisions: Callable[[Sequence[Decision]], None] | None = None,
) -> SimReport:
    """Replay ``trace`` (times relative to its first submission) and report.

    ``alerts`` are (seconds after the start, firing) rebalance alerts for the P0 pool.
    ``on_decisions`` sees every call's decisions, in order (the decision fingerprint).
    """
    report = SimReport()
    if not trace:
        return report
    start = trace[0].submission_time
    clock = _Clock(0.0)
    core = Scheduler(cluster, policy, clock=clock)
    pools = {p.name: p for p in cluster.pools}
    lendable = {n: sum(q.lending_limit for q in cluster.pools if q.name != n) for n in pools}

    def capacity(pool: str) -> int:
        p = pools[pool]
        return p.nominal_gpus + min(p.borrowing_limit, lendable[pool])

    events: list[tuple[float, int, str, object]] = []
    for i, tj in enumerate(trace):
        heapq.heappush(events, (tj.submission_time - start, i, "submit", tj))
    for i, (at, firing) in enumerate(alerts):
        heapq.heappush(events, (at, -1 - i, "alert", firing))

    preempted_at: dict[str, float] = {}
    last_ckpt: dict[str, float] = {}
    live: set[str] = set()

    def absorb(ds: list[Decision]) -> None:
        if on_decisions is not None:
            on_decisions(ds)
        for d in ds:
            if d.action == Action.PREEMPT and d.result == Result.OK and d.job:
                preempted_at[d.job] = clock.now
                report.preemptions[d.pool] += 1
            elif d.action == Action.PLACE and d.job:
                report.waits.setdefault(d.pool, []).append(d.waited_seconds)
                last_ckpt[d.job] = clock.now
            elif d.action == Action.RELEASE:
                report.gpu_seconds_lost[d.pool] = (
                    report.gpu_seconds_lost.get(d.pool, 0.0) + d.gpu_seconds_lost
                )
            elif d.action == Action.COMPLETE and d.job in live:
                report.completed += 1
                live.discard(d.job)

    next_tick = 0.0
    for _ in range(config.max_ticks):
        if not events and not live:
            break
        if events and events[0][0] <= next_tick:
            at, _, kind, payload = heapq.heappop(events)
            clock.now = max(clock.now, at)
            if kind == "submit":
                assert isinstance(payload, TraceJob)
                training = (
                    payload.num_gpu >= config.training_min_gpus
                    or zlib.crc32(payload.job_id.encode()) % 100 < config.training_share_percent
                )
                pool = config.training_pool if training else config.batch_pool
                if payload.num_gpu > capacity(pool):
                    report.skipped_too_big += 1
                    continue
                report.submitted += 1
                live.add(payload.job_id)
                report.gpu_seconds_run += payload.num_gpu * payload.duration
                absorb(
                    core.submit(
                        JobRequest(
                            payload.job_id,
                            pool,
                            payload.num_gpu,
                            JobKind.TRAINING if training else JobKind.BATCH,
                            checkpointable=training,
                            duration_seconds=payload.duration,
                        )
                    )
                )
            else:
                absorb(
                    core.alert(
                        pool=config.p0_pool,
                        action="rebalance",
                        firing=bool(payload),
                        correlation_id=f"sim-{at}",
                    )
                )
            continue
        clock.now = next_tick
        next_tick += config.tick_seconds
        # The world: victims checkpoint and let go; training checkpoints periodically.
        for job_id, at in sorted(preempted_at.items()):
            if clock.now - at >= config.ack_seconds:
                del preempted_at[job_id]
                view = core.job(job_id)
                if view.state is JobState.PREEMPTING:
                    if view.checkpointable:
                        core.report_checkpoint(job_id)
                    absorb(core.ack_preemption(job_id))
        for job_id, at in sorted(last_ckpt.items()):
            if clock.now - at >= config.checkpoint_interval_seconds:
                view = core.job(job_id)
                if view.state is JobState.RUNNING and view.checkpointable:
                    core.report_checkpoint(job_id)
                    last_ckpt[job_id] = clock.now
                elif view.state in FINISHED_STATES:
                    del last_ckpt[job_id]
        absorb(core.tick())
    report.unfinished = len(live)
    report.cycles_refused = core.cycles_refused
    report.makespan_seconds = clock.now
    report.max_preemptions_per_job = max((len(v.preemptions) for v in core.iter_jobs()), default=0)
    return report
