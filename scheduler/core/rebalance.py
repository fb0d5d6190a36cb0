"""Alert-driven grants and their return: a pool grows by a burst, and gives it back once stable.

When P0's latency alert fires, its pool grows by up to ``rebalance_step_gpus``
(an operator can ask for a number too): a *burst*, an elastic inference job of
as many GPUs as a best-effort preemption plan yields within the limits, placed
at once on idle GPUs or as its victims let go. When the alert resolves (at once
for an operator's grant), the bursts go back after ``return_stabilization_seconds``
without a new alert. A burst that is itself preempted is stopped, not requeued.

Owns: each pool's bursts, alert state and return timer (``Pool.elastic``,
``Pool.firing``, ``Pool.resolved_at``); ``Job.elastic``.
May call: ``placement``, ``preemption``, ``jobs``, ``queues``, ``cluster``, ``decisions``.
"""

from __future__ import annotations

import math

from scheduler.core.cluster import Cluster, Pool
from scheduler.core.decisions import Cycle
from scheduler.core.jobs import Jobs
from scheduler.core.model import Action, Cause, JobKind, JobRequest, JobState, Result
from scheduler.core.placement import Placement
from scheduler.core.preemption import Preemption
from scheduler.core.queues import Queues


class Rebalance:
    def __init__(
        self,
        cluster: Cluster,
        queues: Queues,
        jobs: Jobs,
        preemption: Preemption,
        placement: Placement,
    ) -> None:
        self._cluster = cluster
        self._queues = queues
        self._jobs = jobs
        self._preemption = preemption
        self._placement = placement

    def on_alert(self, pool: Pool, firing: bool, correlation_id: str, cycle: Cycle) -> None:
        """The pool's rebalance alert fired (grow by a step) or resolved (start the return timer)."""
        policy = self._cluster.policy
        if firing:
            pool.firing = True
            pool.resolved_at = None
            self._grow(pool, policy.rebalance_step_gpus, correlation_id, Cause.ALERT, cycle)
            return
        pool.firing = False
        if pool.elastic:
            pool.resolved_at = cycle.now
            stable = policy.return_stabilization_seconds
            cycle.decide(
                Action.RETURN,
                pool.name,
                Result.PENDING,
                f"alert resolved: borrowed GPUs go back after {stable:.0f}s stable",
                correlation_id=correlation_id,
                cause=Cause.RESOLVED,
            )
        else:
            cycle.decide(
                Action.RETURN,
                pool.name,
                Result.NOOP,
                "alert resolved: nothing borrowed",
                correlation_id=correlation_id,
                cause=Cause.RESOLVED,
            )

    def manual(self, pool: Pool, gpus: int, correlation_id: str, cycle: Cycle) -> None:
        """An operator's grant of ``gpus`` more GPUs, returned like an alert's."""
        self._grow(pool, gpus, correlation_id, Cause.MANUAL, cycle)
        if not pool.firing and pool.elastic:
            pool.resolved_at = cycle.now  # no alert to wait for: the return timer starts now

    def next_return(self) -> float:
        """When the soonest pool stable since its alert resolved gives its bursts back (``inf``: none)."""
        stable = self._cluster.policy.return_stabilization_seconds
        return min(
            (
                p.resolved_at + stable
                for p in self._cluster.pools.values()
                if p.resolved_at is not None and not p.firing
            ),
            default=math.inf,
        )

    def return_due(self, cycle: Cycle) -> None:
        """Pools stable long enough since their alert resolved give their bursts back (a tick step)."""
        policy = self._cluster.policy
        for pool in self._cluster.pools.values():
            if (
                pool.resolved_at is not None
                and not pool.firing
                and cycle.now - pool.resolved_at >= policy.return_stabilization_seconds
            ):
                if policy.dry_run:
                    pool.resolved_at = None
                    cycle.decide(
                        Action.RETURN,
                        pool.name,
                        Result.DRY_RUN,
                        "would return borrowed GPUs",
                        cause=Cause.STABILIZED,
                    )
                else:
                    self._give_back(pool, cycle)

    def _grow(self, pool: Pool, step: int, correlation_id: str, cause: Cause, cycle: Cycle) -> None:
        policy = self._cluster.policy
        held_by_waiting = sum(len(j.held) for j in self._queues.waiting(pool))
        headroom = (
            pool.nominal
            + pool.spec.borrowing_limit
            - (pool.own + pool.borrowed)
            - (pool.waiting_gpus - held_by_waiting)
        )
        want = min(step, headroom)
        if want <= 0:
            cycle.decide(
                Action.REBALANCE,
                pool.name,
                Result.NOOP,
                f"{pool.name} is at its borrowing limit ({pool.spec.borrowing_limit})",
                correlation_id=correlation_id,
                cause=cause,
            )
            return
        burst_id = f"{pool.name}/burst-{cycle.next_decision}"
        plan = self._preemption.plan(
            pool, want, burst_id, cycle.now, best_effort=True, count=not policy.dry_run
        )
        assert plan is not None
        if plan.gpus == 0:
            cycle.decide(
                Action.REBALANCE,
                pool.name,
                Result.NOOP,
                f"no idle GPU and no preemptible job past its "
                f"{policy.min_runtime_seconds:.0f}s cooldown within the limits",
                correlation_id=correlation_id,
                cause=cause,
            )
            return
        victims = tuple(v.id for v in plan.victims)
        if policy.dry_run:
            cycle.decide(
                Action.REBALANCE,
                pool.name,
                Result.DRY_RUN,
                f"would grow {pool.name} by {plan.gpus} GPUs ({len(plan.free)} idle, "
                f"{len(victims)} preemptions)",
                gpus=plan.gpus,
                victims=victims,
                correlation_id=correlation_id,
                cause=cause,
            )
            return
        job = self._jobs.new(
            JobRequest(
                id=burst_id,
                pool=pool.name,
                gpus=plan.gpus,
                kind=JobKind.INFERENCE,
                preemptible=pool.spec.preemptible,
            ),
            cycle.now,
        )
        job.elastic = True
        job.correlation_id = correlation_id
        pool.elastic[job.id] = None
        self._queues.enqueue(job, JobState.QUEUED, cycle.now)
        self._preemption.commit(plan, job, Cause.REBALANCE, cycle)
        placed = self._placement.try_place(job, cycle)
        cycle.decide(
            Action.REBALANCE,
            pool.name,
            Result.OK if placed else Result.PENDING,
            f"{pool.name} grows by {plan.gpus} GPUs ({len(plan.free)} idle now"
            + (f", {len(victims)} preempted with grace" if victims else "")
            + (")" if plan.gpus == want else f"; wanted {want})"),
            gpus=plan.gpus,
            gpu_ids=tuple(job.gpu_ids or job.held),
            victims=victims,
            job=job.id,
            correlation_id=correlation_id,
            cause=cause,
        )

    def _give_back(self, pool: Pool, cycle: Cycle) -> None:
        stable = self._cluster.policy.return_stabilization_seconds
        for job_id in list(pool.elastic):
            job = self._cluster.jobs[job_id]
            n = len(job.gpu_ids)
            gpu_ids = tuple(job.gpu_ids)
            self._jobs.finish(job, JobState.COMPLETED)
            cycle.decide(
                Action.RETURN,
                pool.name,
                Result.OK,
                f"{pool.name} stable for {stable:.0f}s: {job_id} returns {n} GPUs",
                gpus=n,
                gpu_ids=gpu_ids,
                job=job_id,
                correlation_id=job.correlation_id,
                cause=Cause.STABILIZED,
            )
        pool.resolved_at = None
