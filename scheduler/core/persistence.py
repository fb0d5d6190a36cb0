"""Persistence: what the store needs to write, and rebuilding the core from what it read.

The store keeps every job's view (with every preemption of its life, which the
budget and the lifetime cap count) and a small record of the rest (``export_meta``:
numbering, tickets, policy, the reversal guard's memory of preemption pairs and of
the refusals it counted, reservation holders, and per pool its alert and scale
timers, lost work and autoscaled nodes), so that a restart resets no guard. ``restore``
rebuilds from them the same GPUs held, the same queues in their order, the same
timers (grace deadlines, completions) and the victim index; decisions go on with
the next number, so that no id is ever reused.

Owns: nothing of its own: it reads every module's state, and empties the cluster's
set of changed jobs as the store takes them.
May call: ``reservations``, ``preemption``, ``jobs``, ``queues``, ``victims``, ``guards``,
``cluster``, ``decisions``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from scheduler.core.cluster import Cluster, Job
from scheduler.core.decisions import Numbering
from scheduler.core.errors import Conflict
from scheduler.core.guards import Guards
from scheduler.core.jobs import Jobs
from scheduler.core.model import (
    FINISHED_STATES,
    WAITING_STATES,
    GpuSpec,
    JobRequest,
    JobState,
    JobView,
    PolicySpec,
)
from scheduler.core.preemption import Preemption
from scheduler.core.queues import Queues
from scheduler.core.reservations import Reservations
from scheduler.core.victims import VictimIndex


class Persistence:
    def __init__(
        self,
        cluster: Cluster,
        numbering: Numbering,
        guards: Guards,
        queues: Queues,
        victims: VictimIndex,
        jobs: Jobs,
        preemption: Preemption,
        reservations: Reservations,
    ) -> None:
        self._cluster = cluster
        self._numbering = numbering
        self._guards = guards
        self._queues = queues
        self._victims = victims
        self._jobs = jobs
        self._preemption = preemption
        self._reservations = reservations

    def take_dirty(self) -> list[JobView]:
        """Jobs changed since the last call (for the store), in id order."""
        jobs = self._cluster.jobs
        dirty = self._cluster.dirty
        out = [jobs[j].view() for j in sorted(dirty) if j in jobs]
        dirty.clear()
        return out

    def export_meta(self) -> dict[str, Any]:
        """The small non-job state a restart needs (timers, reversal records, counters).

        Built of fresh containers: the caller may keep it and compare it with a later one.
        """
        cluster = self._cluster
        reversal = self._guards.reversal
        return {
            "decision_seq": self._numbering.next,
            "job_seq": cluster.tickets,
            "policy": {f.name: getattr(cluster.policy, f.name) for f in fields(PolicySpec)},
            "cycles": [[v, p, t] for (v, p), t in reversal.pairs.items()],
            "cycle_refusals": [[v, p, t] for (v, p), t in reversal.refusals.items()],
            "cycles_refused": reversal.refused_count,
            "reservation_jobs": dict(self._reservations.holders),
            "pools": {
                p.name: {
                    "firing": p.firing,
                    "resolved_at": p.resolved_at,
                    "last_scale_event": None
                    if p.last_scale_event == -math.inf
                    else p.last_scale_event,
                    "lost": p.lost,
                    "autoscaled": {
                        n: [p.autoscaled[n], list(p.nodes.get(n, []))] for n in p.autoscaled
                    },
                }
                for p in cluster.pools.values()
            },
        }

    def restore(self, jobs: Sequence[JobView], meta: Mapping[str, Any], now: float) -> None:
        """Rebuild a fresh core from the store: same GPUs held, same queues, same timers."""
        cluster = self._cluster
        cluster.tickets = int(meta.get("job_seq", 0))
        reversal = self._guards.reversal
        reversal.refused_count = int(meta.get("cycles_refused", 0))
        reversal.pairs = {(str(v), str(p)): float(t) for v, p, t in meta.get("cycles", [])}
        reversal.refusals = {
            (str(v), str(p)): float(t) for v, p, t in meta.get("cycle_refusals", [])
        }
        self._reservations.holders = {
            str(k): str(v) for k, v in meta.get("reservation_jobs", {}).items()
        }
        for name, pm in meta.get("pools", {}).items():
            p = cluster.pools.get(name)
            if p is None:
                continue
            p.firing = bool(pm.get("firing", False))
            p.resolved_at = pm.get("resolved_at")
            lse = pm.get("last_scale_event")
            p.last_scale_event = -math.inf if lse is None else float(lse)
            p.lost = float(pm.get("lost", 0.0))
            for node, (idle_since, gpus) in pm.get("autoscaled", {}).items():
                for u in gpus:
                    cluster.add_gpu(GpuSpec(u, node, name))
                p.nominal += len(gpus)
                p.autoscaled[node] = idle_since
        waiting: list[JobView] = []
        for v in jobs:
            job = self._job(v)
            if v.state in WAITING_STATES:
                waiting.append(v)
            elif v.state in (JobState.RUNNING, JobState.PREEMPTING):
                self._running(job, v, now)
        # Queues in their original order; holds after every holder is back.
        for v in sorted(waiting, key=lambda v: (v.queued_at, v.id)):
            job = cluster.jobs[v.id]
            self._queues.enqueue(job, v.state, v.queued_at)
            p = cluster.pools[job.pool]
            for u in v.held_gpu_ids:
                g = cluster.gpus.get(u)
                if g is not None and g.held_for is None:
                    cluster.hold(g, job)
            job.freed_for = bool(job.held)
            job.pending_victims = {
                x
                for x in v.pending_victims
                if x in cluster.jobs and cluster.jobs[x].state is JobState.PREEMPTING
            }
            if job.elastic:
                p.elastic[job.id] = None
        for v in jobs:
            job = cluster.jobs[v.id]
            if job.elastic and job.state is JobState.RUNNING:
                cluster.pools[job.pool].elastic[job.id] = None
        cluster.dirty.clear()

    def _job(self, v: JobView) -> Job:
        req = JobRequest(
            id=v.id,
            pool=v.pool,
            gpus=v.gpus,
            kind=v.kind,
            checkpointable=v.checkpointable,
            duration_seconds=v.duration_seconds,
            submitted_at=v.submitted_at,
        )
        self._cluster.pool(v.pool)
        # A job stored before jobs had pods: the pods it would be given now.
        pods = v.pods or self._jobs.pods_of(req)
        job = Job(req, preemptible=v.preemptible, grace=v.grace_seconds, now=v.queued_at, pods=pods)
        job.state = v.state
        job.started_at = v.started_at
        job.last_checkpoint = v.last_checkpoint
        job.progress = v.progress_seconds
        job.checkpoint_progress = v.checkpoint_progress_seconds
        job.resume_count = v.resume_count
        job.preemptions = list(v.preemptions)
        job.preemptions_total = max(v.preemptions_total, len(v.preemptions))
        job.lost = v.gpu_seconds_lost
        job.preempted_for = v.preempted_for
        job.deadline = v.deadline
        job.elastic = v.elastic
        job.reservation = v.reservation
        job.correlation_id = v.correlation_id
        self._cluster.jobs[v.id] = job
        if v.state in FINISHED_STATES:
            self._jobs.restored_finished(job)
        return job

    def _running(self, job: Job, v: JobView, now: float) -> None:
        cluster = self._cluster
        pool = cluster.pools[job.pool]
        job.run_ticket = cluster.next_ticket()
        for u in v.gpu_ids:
            g = cluster.gpus.get(u)
            if g is None or g.holder is not None:
                raise Conflict(f"stored allocation of {u} to {v.id} is inconsistent")
            cluster.take_idle(g)
            g.holder = job.id
            cluster.set_claim(g, job.pool)
            if g.home != job.pool and v.state is JobState.RUNNING:
                cluster.pools[g.home].borrowers_on[job.id] = None
        job.gpu_ids = list(v.gpu_ids)
        if v.state is JobState.RUNNING:
            pool.running_gpus += job.gpus
            self._victims.add(job, now)
        elif job.deadline is not None:
            self._preemption.watch(job)
        if job.duration is not None and job.started_at is not None:
            self._jobs.ends_at(job, job.started_at + max(0.0, job.duration - job.progress))
