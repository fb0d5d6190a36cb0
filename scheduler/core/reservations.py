"""Reservation windows: capacity held for a pool during recurring, timezone-aware windows.

From ``drain_lead_seconds`` before a window opens until it ends, a reservation is
a non-preemptible job of ``gpus`` GPUs queued in its pool: it takes idle GPUs,
reclaims the pool's lent GPUs from borrowers and, for the top class, preempts
like any of its jobs, so that at the bell the pool already holds the capacity.
When the window ends the hold is released. ``windows`` computes the occurrences.

Owns: which job holds each reservation's current window (persisted); ``Job.reservation``.
May call: ``jobs``, ``queues``, ``cluster``, ``windows``, ``decisions``.
"""

from __future__ import annotations

import math

from scheduler.core.cluster import Cluster
from scheduler.core.decisions import Cycle
from scheduler.core.jobs import Jobs
from scheduler.core.model import (
    FINISHED_STATES,
    Action,
    Cause,
    JobKind,
    JobRequest,
    JobState,
    ReservationSpec,
    ReservationView,
    Result,
)
from scheduler.core.queues import Queues
from scheduler.core.windows import Occurrence, current, next_occurrence, occurrences


class Reservations:
    def __init__(self, cluster: Cluster, queues: Queues, jobs: Jobs) -> None:
        self._cluster = cluster
        self._queues = queues
        self._jobs = jobs
        self.holders: dict[str, str] = {}  # reservation name -> id of the job holding its window
        # (pool, GPUs released) of the windows the last step ended: handed over (rebalance).
        self.ended: list[tuple[str, int]] = []
        # The next window edge (a drain starts, a window ends) after the last step; until a
        # first step (after a restore, after a policy change) there is one to take now.
        self.next_edge = -math.inf

    def step(self, cycle: Cycle) -> None:
        """Windows that end release their hold; windows draining or open get one (a tick step)."""
        cluster = self._cluster
        now = cycle.now
        self.ended = []
        if now < self.next_edge:
            return  # no window drains or ends before its next edge: nothing to do
        self.next_edge = math.inf
        for spec in cluster.spec.reservations:
            occ = current(spec, now)
            self.next_edge = min(self.next_edge, _next_edge(spec, occ, now))
            job_id = self.holders.get(spec.name)
            job = cluster.jobs.get(job_id) if job_id else None
            want = f"reservation/{spec.name}/{int(occ.start)}" if occ else None
            if job is not None and job.id != want:
                n = len(job.gpu_ids)
                if job.state not in FINISHED_STATES:
                    self._jobs.finish(job, JobState.COMPLETED)
                    self.ended.append((spec.pool, n))
                    cycle.decide(
                        Action.RESERVE,
                        spec.pool,
                        Result.OK,
                        f"reservation {spec.name} window over: {n} GPUs released",
                        gpus=n,
                        job=job.id,
                        cause=Cause.WINDOW_END,
                    )
                del self.holders[spec.name]
            if occ is None or want is None or want in cluster.jobs:
                continue
            if cluster.policy.dry_run:
                if self.holders.get(spec.name) != want:
                    self.holders[spec.name] = want
                    cycle.decide(
                        Action.RESERVE,
                        spec.pool,
                        Result.DRY_RUN,
                        f"would hold {spec.gpus} GPUs for {spec.pool} from "
                        f"{occ.start - now:.0f}s before the window",
                        cause=Cause.DRAIN,
                    )
                continue
            job = self._jobs.new(
                JobRequest(
                    id=want,
                    pool=spec.pool,
                    gpus=spec.gpus,
                    kind=JobKind.RESERVATION,
                    preemptible=False,
                    grace_seconds=0.0,
                ),
                now,
            )
            job.reservation = spec.name
            self.holders[spec.name] = want
            self._queues.enqueue(job, JobState.QUEUED, now)
            cycle.decide(
                Action.RESERVE,
                spec.pool,
                Result.PENDING,
                f"reservation {spec.name}: draining borrowers for {spec.gpus} GPUs, "
                f"window opens in {max(0.0, occ.start - now):.0f}s",
                gpus=spec.gpus,
                job=want,
                cause=Cause.DRAIN,
            )

    def views(self, now: float) -> list[ReservationView]:
        out = []
        for spec in self._cluster.spec.reservations:
            occ = current(spec, now)
            nxt = occ or next_occurrence(spec, now)
            job = self._cluster.jobs.get(self.holders.get(spec.name, ""))
            out.append(
                ReservationView(
                    name=spec.name,
                    pool=spec.pool,
                    gpus=spec.gpus,
                    timezone=spec.timezone,
                    active=occ is not None,
                    open=occ is not None and occ.open(now),
                    satisfied=job is not None and job.state is JobState.RUNNING,
                    next_start=None if nxt is None else nxt.start,
                    next_end=None if nxt is None else nxt.end,
                    drain_from=None if nxt is None else nxt.drain_from,
                )
            )
        return out


def _next_edge(spec: ReservationSpec, occ: Occurrence | None, now: float) -> float:
    """When ``spec``'s step has something to do next: the open window ends, or a drain starts."""
    if occ is not None:
        return occ.end
    return min(
        (o.drain_from for o in occurrences(spec, now) if o.drain_from > now), default=math.inf
    )
