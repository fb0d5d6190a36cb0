"""From the stack and the traces to what each replay needs: jobs on pools, P0's demand, the world.

Job to pool: by the trace's ``pool`` column (a pool name) or ``priority`` column (a
priority class, e.g. P1), else by the stack's rules: a job of ``training_min_gpus``
or more, or one of ``training_share_percent`` of the others (by a hash of its id, so
the same job maps the same way in every run), trains in ``training_pool`` and saves
checkpoints; the rest is batch in ``batch_pool`` and cannot checkpoint. Jobs of a
P0 pool are inference. Traces with relative times start at ``--start`` (default:
the stack's ``simulation.start``); traces with real dates at their own first job.
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from functools import partial
from typing import Any

from deploy.stack import DAYS, Simulation, Stack
from scheduler.core.capacity import ServingSpec
from scheduler.core.model import JobKind, JobRequest, PolicySpec
from scheduler.sim.demand import Demand, ModelLoad, changes
from scheduler.sim.errors import SettingsError
from scheduler.sim.policies import PolicyRun
from scheduler.sim.reader import Trace
from scheduler.sim.replay import SimJob, World


@dataclass
class Mapping:
    """How the trace's jobs were put on pools (printed in the report)."""

    rules: list[str] = field(default_factory=list)
    by_pool: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)  # reason -> jobs skipped


def world(stack: Stack, *, tick_seconds: float | None = None, settle: float = 1.0) -> World:
    sim = _simulation(stack)
    return World(
        checkpoint_interval_seconds=sim.checkpoint_interval_seconds,
        ack_seconds=sim.ack_seconds,
        scale_up_delay_seconds=sim.scale_up_delay_seconds,
        alert_delay_seconds=stack.alerting.latency_alert_for_seconds
        + stack.alerting.group_wait_seconds,
        resolve_delay_seconds=stack.alerting.group_interval_seconds,
        settle_seconds=settle,
        tick_seconds=tick_seconds,
    )


def _simulation(stack: Stack) -> Simulation:
    if stack.simulation is None:
        raise SettingsError("the stack has no simulation section")
    return stack.simulation


def start_of(traces: Sequence[Trace], stack: Stack, start: datetime | None) -> float:
    """The epoch second the replay starts at."""
    if start is not None:
        return start.timestamp()
    dated = [t.jobs[0].submit for t in traces if t.epoch and t.jobs]
    if dated:
        return min(dated)
    return float(_simulation(stack).start.timestamp())


def map_jobs(traces: Sequence[Trace], stack: Stack, start: float) -> tuple[list[SimJob], Mapping]:
    """Every trace's jobs on pools, in submission order; traces with relative times from ``start``."""
    sim = _simulation(stack)
    pools = {p.name for p in stack.pools}
    by_class: dict[str, str] = {}
    for p in stack.pools:
        by_class.setdefault(p.priority, p.name)
    top = stack.top_priority_class()
    p0_pools = {p.name for p in stack.pools if p.priority == top}
    mapping = Mapping()
    mapping.rules.append(
        f"a `pool` column names the pool; a `priority` column names its class "
        f"({', '.join(f'{c} -> {p}' for c, p in by_class.items())})"
    )
    mapping.rules.append(
        f"otherwise: {sim.training_min_gpus} GPUs or more, or {sim.training_share_percent}% of "
        f"the smaller jobs (by a hash of the id), train in {sim.training_pool} and checkpoint "
        f"every {sim.checkpoint_interval_seconds:.0f}s; the rest is batch in {sim.batch_pool} "
        "and cannot checkpoint"
    )
    out: list[SimJob] = []
    for k, trace in enumerate(traces):
        # A dated trace keeps its dates (``start`` is its first job unless --start moves
        # it); one with relative times (often a slice of a longer trace) starts at ``start``.
        origin = trace.jobs[0].submit if trace.jobs else 0.0
        prefix = f"t{k}-" if len(traces) > 1 else ""
        for j in trace.jobs:
            pool = j.pool
            if pool is None and j.priority is not None:
                pool = by_class.get(j.priority)
                if pool is None:
                    mapping.unmapped[f"unknown priority class {j.priority!r}"] += 1
                    continue
            if pool is not None and pool not in pools:
                mapping.unmapped[f"unknown pool {pool!r}"] += 1
                continue
            if pool is None:
                training = (
                    j.gpus >= sim.training_min_gpus
                    or zlib.crc32(j.id.encode()) % 100 < sim.training_share_percent
                )
                pool = sim.training_pool if training else sim.batch_pool
            if pool in p0_pools:
                kind, checkpointable = JobKind.INFERENCE, False
            elif pool == sim.training_pool:
                kind, checkpointable = JobKind.TRAINING, True
            else:
                kind, checkpointable = JobKind.BATCH, False
            mapping.by_pool[pool] += 1
            out.append(
                SimJob(
                    id=prefix + j.id,
                    pool=pool,
                    gpus=j.gpus,
                    kind=kind,
                    checkpointable=checkpointable,
                    duration=j.duration,
                    submit=start + (j.submit - origin),
                    gpus_per_pod=j.gpus_per_pod,
                )
            )
    out.sort(key=lambda j: (j.submit, j.id))
    return out, mapping


def p0_demand(
    stack: Stack, start: float, scale: float = 1.0, nominal: dict[str, int] | None = None
) -> dict[str, tuple[Callable[[], Iterator[Demand]], list[JobRequest]]]:
    """Per P0 pool: its demand changes, and the replicas serving its base load at the start.

    ``scale`` and ``nominal`` (the pools' GPUs) for a cluster scaled by ``--gpus``.
    """
    sim = _simulation(stack)
    models = {m.name: m for m in stack.models}
    loads: dict[str, list[ModelLoad]] = {}
    for prof in sim.p0_load:
        m = models[prof.model]
        assert m.serving is not None  # the stack checks it
        loads.setdefault(m.pool, []).append(
            ModelLoad(
                model=m.name,
                pool=m.pool,
                serving=ServingSpec(
                    m.serving.service_time_seconds,
                    m.serving.gpus_per_replica,
                    m.serving.replica_concurrency,
                ),
                threshold_seconds=m.slo.latency_threshold_seconds,
                quantile=m.slo.latency_quantile,
                base_rps=prof.base_rps,
                spikes=tuple(
                    (s.start.hour * 60 + s.start.minute, s.minutes, s.rps) for s in prof.spikes
                ),
                days=tuple(DAYS.index(d) for d in prof.days),
            )
        )
    tz = stack.alerting.timezone
    out: dict[str, tuple[Callable[[], Iterator[Demand]], list[JobRequest]]] = {}
    for pool, ls in loads.items():
        first = next(changes(ls, tz, start, sim.slo_margin, scale))
        own = (nominal or {}).get(pool, stack.pool(pool).nominal_gpus)
        per = ls[0].serving.gpus_per_replica
        replicas = [
            JobRequest(
                f"{pool}/replica-{i}", pool, per, JobKind.INFERENCE, started_at=start - 86400
            )
            for i in range(min(first.needed, own) // per)
        ]

        out[pool] = (partial(changes, ls, tz, start, sim.slo_margin, scale), replicas)
    return out


def _up(seconds: float, tick: float) -> float:
    return math.ceil(seconds / tick) * tick


def aligned(
    jobs: Sequence[SimJob], start: float, w: World, runs: Sequence[PolicyRun], tick: float
) -> tuple[list[SimJob], World, list[PolicyRun]]:
    """Every time of the replay rounded up to a multiple of ``tick`` from ``start``.

    Submissions, durations, the world's delays and the policy's timers; the event loop
    then settles one tick after a tick (not one second), as the service's heartbeat
    would at that period. On such a grid ticking at ``next_wakeup`` decides exactly
    what ticking every step does, so the two loops must agree on every job.
    """
    jobs = [
        replace(j, submit=start + _up(j.submit - start, tick), duration=_up(j.duration, tick))
        for j in jobs
    ]
    w = replace(
        w,
        checkpoint_interval_seconds=_up(w.checkpoint_interval_seconds, tick),
        ack_seconds=_up(w.ack_seconds, tick),
        scale_up_delay_seconds=_up(w.scale_up_delay_seconds, tick),
        alert_delay_seconds=_up(w.alert_delay_seconds, tick),
        resolve_delay_seconds=_up(w.resolve_delay_seconds, tick),
        settle_seconds=tick,
    )
    timers = [f.name for f in fields(PolicySpec) if f.name.endswith("_seconds")]
    out = []
    for r in runs:
        rounded: dict[str, Any] = {k: _up(getattr(r.policy, k), tick) for k in timers}
        out.append(replace(r, policy=replace(r.policy, **rounded)))
    return jobs, w, out
