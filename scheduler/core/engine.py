"""The policy core: pools, queues, borrowing, checkpoint-aware preemption, reservations, scaling.

Pure and deterministic: no I/O, no wall clock (``clock`` is injected), no
randomness; the same calls on the same clock give the same decisions. Every
public method returns the ``Decision``s it took, in order. The rim (runtime)
persists those decisions and only then actuates them.

Accounting. Every GPU has a *home* pool (whose nominal quota it is part of)
and at most one *claimant*: the pool of the job it is held for (a preemptor
waiting for it) or else of the job running on it. Per pool the core keeps
``own`` (home GPUs it claims), ``borrowed`` (foreign GPUs it claims) and
``lent`` (home GPUs others claim); ``own + lent + idle == nominal``. Limits are
checked on claims, so GPUs promised to a preemptor already count: a pool never
claims more than ``borrowing_limit`` foreign GPUs and never has more than
``lending_limit`` of its own claimed by others (the stack validates
``lending_limit <= nominal - guaranteed``, so the floor is never lent).

Data structures are sized for thousands of GPUs and tens of thousands of jobs:
free GPUs per home pool, a FIFO per pool, preemptible running jobs indexed per
pool in buckets that are already in victim order, and the borrowers on each
pool's GPUs; a decision touches only the pools and buckets it needs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

from scheduler.core.cluster import Cluster, Job, Pool
from scheduler.core.decisions import Cycle, Numbering
from scheduler.core.errors import Conflict, InvalidRequest
from scheduler.core.guards import Guards
from scheduler.core.jobs import Jobs
from scheduler.core.model import (
    FINISHED_STATES,
    WAITING_STATES,
    Action,
    Cause,
    ClusterSpec,
    Decision,
    GpuSpec,
    JobKind,
    JobRequest,
    JobState,
    JobView,
    PolicySpec,
    PoolView,
    ReservationView,
    Result,
)
from scheduler.core.placement import Placement
from scheduler.core.preemption import Preemption
from scheduler.core.queues import Queues
from scheduler.core.victims import VictimIndex
from scheduler.core.windows import current, next_occurrence

# Alert correlation ids remembered for de-duplicating retried notifications.
SEEN_ALERTS_KEPT = 1_000


class Scheduler:
    """The policy core. Not thread-safe: the runtime serialises calls."""

    def __init__(
        self,
        cluster: ClusterSpec,
        policy: PolicySpec,
        *,
        clock: Callable[[], float],
        first_decision_seq: int = 1,
    ) -> None:
        self._c = Cluster(cluster, policy)
        self._clock = clock
        self._numbering = Numbering(
            first_decision_seq, {p.name: p.priority_class for p in cluster.pools}
        )
        self._seen_alerts: dict[str, None] = {}
        self._reservation_jobs: dict[str, str] = {}  # reservation name -> its job id
        self._guards = Guards(self._c)
        self._victims = VictimIndex(self._c, self._guards)
        self._queues = Queues(self._c)
        self._jobs = Jobs(self._c, self._queues, self._victims)
        self._preemption = Preemption(
            self._c, self._queues, self._victims, self._guards, self._jobs
        )
        self._placement = Placement(
            self._c, self._queues, self._victims, self._jobs, self._preemption
        )

    # ------------------------------------------------------------------ setup helpers

    @property
    def cycles_refused(self) -> int:
        """Preemptions refused because they would reverse a recent one."""
        return self._guards.reversal.refused_count

    @property
    def policy(self) -> PolicySpec:
        return self._c.policy

    @property
    def cluster(self) -> ClusterSpec:
        return self._c.spec

    def _begin(self) -> Cycle:
        """A public call starts: the one read of the clock it makes."""
        return Cycle(self._clock(), self._numbering, dry_run=self._c.policy.dry_run)

    def submit(self, req: JobRequest, *, correlation_id: str = "") -> list[Decision]:
        """Queue a job; it is placed (or preempts) right away if it can."""
        cycle = self._begin()
        job = self._jobs.new(req, cycle.now)
        job.correlation_id = correlation_id
        self._queues.enqueue(job, JobState.QUEUED, cycle.now)
        self._placement.schedule(cycle)
        return cycle.out

    def seed(self, reqs: Sequence[JobRequest]) -> list[Decision]:
        """Jobs already running (``started_at`` in the past), placed on their own pool first.

        Jobs without ``started_at`` are queued as if submitted.
        """
        cycle = self._begin()
        for req in reqs:
            self._placement.seed(req, cycle)
        self._placement.schedule(cycle)
        return cycle.out

    def cancel(self, job_id: str, *, correlation_id: str = "") -> list[Decision]:
        job = self._c.job(job_id)
        cycle = self._begin()
        self._jobs.cancel(job, correlation_id, cycle)
        self._placement.schedule(cycle)
        return cycle.out

    def report_checkpoint(self, job_id: str, at: float | None = None) -> None:
        """The job saved a checkpoint at ``at`` (default now): work before it is safe."""
        job = self._c.job(job_id)
        self._jobs.checkpoint(job, at, self._clock())  # no decisions: no cycle

    def ack_preemption(self, job_id: str) -> list[Decision]:
        """The victim is done checkpointing: release its GPUs before the grace period ends.

        Idempotent: acking a job that is no longer preempting does nothing.
        """
        job = self._c.job(job_id)
        cycle = self._begin()
        if job.state is not JobState.PREEMPTING:
            return cycle.out
        self._preemption.release(job, Cause.ACK, cycle)
        self._placement.schedule(cycle)
        return cycle.out

    # ------------------------------------------------------------------ public: alerts

    def alert(self, *, pool: str, action: str, firing: bool, correlation_id: str) -> list[Decision]:
        """An Alertmanager notification for ``pool``, already mapped to an action."""
        p = self._c.pool(pool)
        if action not in ("rebalance", "scale"):
            raise InvalidRequest(f"unknown action {action!r}")
        cycle = self._begin()
        if correlation_id:
            key = f"{correlation_id}|{action}|{pool}|{firing}"
            if key in self._seen_alerts:
                return cycle.out  # a retried delivery: decided already
            self._seen_alerts[key] = None
            while len(self._seen_alerts) > SEEN_ALERTS_KEPT:
                del self._seen_alerts[next(iter(self._seen_alerts))]
        now = cycle.now
        if action == "rebalance":
            if firing:
                p.firing = True
                p.resolved_at = None
                self._rebalance(
                    p, self._c.policy.rebalance_step_gpus, correlation_id, Cause.ALERT, cycle
                )
            else:
                p.firing = False
                if p.elastic:
                    p.resolved_at = now
                    stab = self._c.policy.return_stabilization_seconds
                    cycle.decide(
                        Action.RETURN,
                        pool,
                        Result.PENDING,
                        f"alert resolved: borrowed GPUs go back after {stab:.0f}s stable",
                        correlation_id=correlation_id,
                        cause=Cause.RESOLVED,
                    )
                else:
                    cycle.decide(
                        Action.RETURN,
                        pool,
                        Result.NOOP,
                        "alert resolved: nothing borrowed",
                        correlation_id=correlation_id,
                        cause=Cause.RESOLVED,
                    )
        elif firing:
            self._scale_up(p, 1, correlation_id, Cause.ALERT, cycle)
        else:
            cycle.decide(
                Action.SCALE_UP,
                pool,
                Result.NOOP,
                "alert resolved: scale-down follows the idle timer",
                correlation_id=correlation_id,
                cause=Cause.RESOLVED,
            )
        self._placement.schedule(cycle)
        return cycle.out

    def manual_rebalance(self, pool: str, gpus: int, correlation_id: str) -> list[Decision]:
        """An operator asks for ``gpus`` more GPUs for ``pool`` (returned like an alert's)."""
        p = self._c.pool(pool)
        if gpus < 1:
            raise InvalidRequest("gpus must be >= 1")
        cycle = self._begin()
        self._rebalance(p, gpus, correlation_id, Cause.MANUAL, cycle)
        if not p.firing and p.elastic:
            p.resolved_at = cycle.now  # no alert to wait for: the return timer starts now
        self._placement.schedule(cycle)
        return cycle.out

    def _rebalance(
        self, pool: Pool, step: int, correlation_id: str, cause: Cause, cycle: Cycle
    ) -> None:
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
            pool, want, burst_id, cycle.now, best_effort=True, count=not self._c.policy.dry_run
        )
        assert plan is not None
        if plan.gpus == 0:
            cycle.decide(
                Action.REBALANCE,
                pool.name,
                Result.NOOP,
                f"no idle GPU and no preemptible job past its {self._c.policy.min_runtime_seconds:.0f}s "
                "cooldown within the limits",
                correlation_id=correlation_id,
                cause=cause,
            )
            return
        victims = tuple(v.id for v in plan.victims)
        if self._c.policy.dry_run:
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

    def _return(self, pool: Pool, cycle: Cycle) -> None:
        for job_id in list(pool.elastic):
            job = self._c.jobs[job_id]
            n = len(job.gpu_ids)
            gpu_ids = tuple(job.gpu_ids)
            self._jobs.finish(job, JobState.COMPLETED)
            cycle.decide(
                Action.RETURN,
                pool.name,
                Result.OK,
                f"{pool.name} stable for {self._c.policy.return_stabilization_seconds:.0f}s: "
                f"{job_id} returns {n} GPUs",
                gpus=n,
                gpu_ids=gpu_ids,
                job=job_id,
                correlation_id=job.correlation_id,
                cause=Cause.STABILIZED,
            )
        pool.resolved_at = None

    # ------------------------------------------------------------------ public: scaling

    def manual_scale(self, pool: str, delta_nodes: int, correlation_id: str) -> list[Decision]:
        p = self._c.pool(pool)
        if delta_nodes == 0:
            raise InvalidRequest("delta_nodes must not be 0")
        cycle = self._begin()
        if delta_nodes > 0:
            self._scale_up(p, delta_nodes, correlation_id, Cause.MANUAL, cycle)
        else:
            for _ in range(-delta_nodes):
                if not self._scale_down(
                    p, correlation_id, Cause.MANUAL, cycle, require_idle_for=0.0
                ):
                    break
        return cycle.out

    def _node_count(self, pool: Pool) -> int:
        return len(pool.nodes)

    def _scale_up(
        self, pool: Pool, nodes: int, correlation_id: str, cause: Cause, cycle: Cycle
    ) -> None:
        now = cycle.now
        p = self._c.policy
        room = pool.spec.max_nodes - self._node_count(pool)
        if room <= 0:
            cycle.decide(
                Action.SCALE_UP,
                pool.name,
                Result.REFUSED,
                f"{pool.name} is at max_nodes ({pool.spec.max_nodes})",
                correlation_id=correlation_id,
                cause=cause,
            )
            return
        if now - pool.last_scale_event < p.scale_up_stabilization_seconds:
            cycle.decide(
                Action.SCALE_UP,
                pool.name,
                Result.REFUSED,
                "inside the scale-up stabilization window",
                correlation_id=correlation_id,
                cause=cause,
            )
            return
        n = min(nodes, room)
        pool.last_scale_event = now
        # The node arrives through add_node; until then (or the unneeded timeout,
        # the Cluster Autoscaler's provisioning timeout here) no further request.
        pool.scale_pending_until = now + p.scale_down_unneeded_seconds
        cycle.decide(
            Action.SCALE_UP,
            pool.name,
            Result.DRY_RUN if p.dry_run else Result.OK,
            f"{pool.name}: +{n} node(s) of {self._c.spec.gpus_per_new_node} GPUs ({cause})",
            gpus=n * self._c.spec.gpus_per_new_node,
            correlation_id=correlation_id,
            cause=cause,
        )

    def _scale_down(
        self,
        pool: Pool,
        correlation_id: str,
        cause: Cause,
        cycle: Cycle,
        *,
        require_idle_for: float,
    ) -> bool:
        now = cycle.now
        if self._node_count(pool) <= pool.spec.min_nodes:
            return False
        for node, idle_since in pool.autoscaled.items():
            gpus = pool.nodes.get(node, [])
            if not all(u in pool.free for u in gpus):
                continue
            if idle_since is None or now - idle_since < require_idle_for:
                continue
            pool.last_scale_event = now
            if not self._c.policy.dry_run:
                self.remove_node(node)
            cycle.decide(
                Action.SCALE_DOWN,
                pool.name,
                Result.DRY_RUN if self._c.policy.dry_run else Result.OK,
                f"{pool.name}: -1 node ({node} idle {now - idle_since:.0f}s, {cause})",
                gpus=len(gpus),
                gpu_ids=tuple(gpus),
                nodes=(node,),
                correlation_id=correlation_id,
                cause=cause,
            )
            return True
        return False

    def add_node(self, pool: str, node: str, gpu_uuids: Sequence[str]) -> list[Decision]:
        """A node the autoscaler brought up joined ``pool``: its GPUs raise the pool's quota."""
        p = self._c.pool(pool)
        if node in p.nodes or any(u in self._c.gpus for u in gpu_uuids):
            raise Conflict(f"node {node} or one of its GPUs is known already")
        cycle = self._begin()
        for u in gpu_uuids:
            self._c.add_gpu(GpuSpec(u, node, pool))
        p.nominal += len(gpu_uuids)
        p.autoscaled[node] = cycle.now
        p.scale_pending_until = -math.inf
        self._c.capacity_epoch += 1
        self._placement.schedule(cycle)
        return cycle.out

    def remove_node(self, node: str) -> None:
        """Take an idle autoscaled node out (scale-down)."""
        for p in self._c.pools.values():
            if node in p.autoscaled:
                gpus = p.nodes.pop(node)
                if not all(u in p.free for u in gpus):
                    p.nodes[node] = gpus
                    raise Conflict(f"node {node} still has GPUs in use")
                for u in gpus:
                    del p.free[u]
                    del self._c.gpus[u]
                p.nominal -= len(gpus)
                del p.autoscaled[node]
                return
        raise InvalidRequest(f"{node} is not an autoscaled node")

    def _autoscale(self, cycle: Cycle) -> None:
        now = cycle.now
        p = self._c.policy
        for pool in self._c.pools.values():
            for node in pool.autoscaled:
                idle = all(u in pool.free for u in pool.nodes.get(node, []))
                if not idle:
                    pool.autoscaled[node] = None
                elif pool.autoscaled[node] is None:
                    pool.autoscaled[node] = now
            head = self._queues.head(pool)
            if head is not None:
                if (
                    now - head.queued_at >= p.scale_up_wait_seconds
                    and now >= pool.scale_pending_until
                    and self._node_count(pool) < pool.spec.max_nodes
                ):
                    per = self._c.spec.gpus_per_new_node
                    self._scale_up(
                        pool, max(1, math.ceil(pool.waiting_gpus / per)), "", Cause.QUEUE, cycle
                    )
            elif now - pool.last_scale_event >= p.scale_down_stabilization_seconds:
                self._scale_down(
                    pool, "", Cause.UNNEEDED, cycle, require_idle_for=p.scale_down_unneeded_seconds
                )

    # ------------------------------------------------------------------ public: time

    def tick(self) -> list[Decision]:
        """Time-driven progress: grace expiry, completions, reservations, returns, scaling, placement."""
        cycle = self._begin()
        now = cycle.now
        self._preemption.expire(cycle)
        self._jobs.complete_due(cycle)
        self._reservations(cycle)
        for pool in self._c.pools.values():
            if (
                pool.resolved_at is not None
                and not pool.firing
                and now - pool.resolved_at >= self._c.policy.return_stabilization_seconds
            ):
                if self._c.policy.dry_run:
                    pool.resolved_at = None
                    cycle.decide(
                        Action.RETURN,
                        pool.name,
                        Result.DRY_RUN,
                        "would return borrowed GPUs",
                        cause=Cause.STABILIZED,
                    )
                else:
                    self._return(pool, cycle)
        self._autoscale(cycle)
        self._placement.schedule(cycle)
        self._guards.forget(now)
        return cycle.out

    def _reservations(self, cycle: Cycle) -> None:
        now = cycle.now
        for spec in self._c.spec.reservations:
            occ = current(spec, now)
            job_id = self._reservation_jobs.get(spec.name)
            job = self._c.jobs.get(job_id) if job_id else None
            want = f"reservation/{spec.name}/{int(occ.start)}" if occ else None
            if job is not None and job.id != want:
                n = len(job.gpu_ids)
                if job.state not in FINISHED_STATES:
                    self._jobs.finish(job, JobState.COMPLETED)
                    cycle.decide(
                        Action.RESERVE,
                        spec.pool,
                        Result.OK,
                        f"reservation {spec.name} window over: {n} GPUs released",
                        gpus=n,
                        job=job.id,
                        cause=Cause.WINDOW_END,
                    )
                del self._reservation_jobs[spec.name]
            if occ is not None and want is not None and want not in self._c.jobs:
                if self._c.policy.dry_run:
                    if self._reservation_jobs.get(spec.name) != want:
                        self._reservation_jobs[spec.name] = want
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
                self._reservation_jobs[spec.name] = want
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

    # ------------------------------------------------------------------ public: policy

    def set_policy(self, **changes: Any) -> list[Decision]:
        known = {f.name: f for f in fields(PolicySpec)}
        for k, v in changes.items():
            if k not in known:
                raise InvalidRequest(f"unknown policy field {k!r}")
            current_value = getattr(self._c.policy, k)
            if isinstance(current_value, bool):
                if not isinstance(v, bool):
                    raise InvalidRequest(f"{k} must be true or false")
            elif isinstance(current_value, int):
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise InvalidRequest(f"{k} must be an integer >= 1")
            elif isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise InvalidRequest(f"{k} must be a number >= 0")
        old = self._c.policy
        typed: dict[str, Any] = {
            k: (float(v) if isinstance(getattr(old, k), float) else v) for k, v in changes.items()
        }
        self._c.policy = replace(old, **typed)
        self._c.capacity_epoch += 1
        cycle = self._begin()  # after the change: its decision carries the new dry_run
        if self._guards.index_fields & set(changes):
            # Cooldown and budget decide who is indexed as a candidate: re-sort everyone.
            for job in self._c.jobs.values():
                if job.state is JobState.RUNNING:
                    self._victims.remove(job)
                    self._victims.add(job, cycle.now)
        changed = ", ".join(
            f"{k}: {getattr(old, k)} -> {getattr(self._c.policy, k)}" for k in changes
        )
        cycle.decide(Action.SET_POLICY, "", Result.OK, changed or "no change", cause=Cause.REQUEST)
        return cycle.out

    # ------------------------------------------------------------------ views

    def serving_gpus(self, pool: str) -> int:
        return self._c.pool(pool).running_gpus

    def gpu_assignments(self) -> dict[str, tuple[str, str]]:
        """uuid -> (node, pool): the pool of the job on it, else the one it is held for, else home."""
        out = {}
        for g in self._c.gpus.values():
            job = g.holder or g.held_for
            out[g.uuid] = (g.node, self._c.jobs[job].pool if job else g.home)
        return out

    def pool_names(self) -> list[str]:
        return list(self._c.pools)

    def priority_class(self, pool: str) -> str:
        return self._c.pool(pool).spec.priority_class

    def pool_view(self, pool: str) -> PoolView:
        p = self._c.pool(pool)
        s = p.spec
        return PoolView(
            name=p.name,
            priority_class=s.priority_class,
            priority=s.priority,
            nominal_gpus=p.nominal,
            guaranteed_gpus=s.guaranteed_gpus,
            lending_limit=s.lending_limit,
            borrowing_limit=s.borrowing_limit,
            min_nodes=s.min_nodes,
            max_nodes=s.max_nodes,
            nodes=len(p.nodes),
            owned=p.own,
            borrowed=p.borrowed,
            lent=p.lent,
            idle=len(p.free),
            serving_gpus=p.running_gpus,
            waiting=p.waiting,
            waiting_gpus=p.waiting_gpus,
            gpu_seconds_lost=p.lost,
            firing=p.firing,
            return_at=(
                None
                if p.resolved_at is None
                else p.resolved_at + self._c.policy.return_stabilization_seconds
            ),
        )

    def pool_state(self, pool: str) -> dict[str, Any]:
        """``pool_view`` as a dict, for the runtime's JSON and metrics (until they take the view)."""
        return self.pool_view(pool).to_dict()

    def job(self, job_id: str) -> JobView:
        return self._c.job(job_id).view()

    def iter_jobs(self) -> Iterator[JobView]:
        for job in self._c.jobs.values():
            yield job.view()

    def queue(self, pool: str) -> list[tuple[JobView, float]]:
        """Waiting jobs of ``pool`` in order, with their effective priority."""
        now = self._clock()
        p = self._c.pool(pool)
        return [
            (j.view(), self._queues.effective_priority(j, now)) for j in self._queues.waiting(p)
        ]

    def job_counts(self) -> dict[tuple[str, str], int]:
        """(pool, state) -> jobs the core holds, without building views (for scrapes)."""
        out: dict[tuple[str, str], int] = {}
        for job in self._c.jobs.values():
            key = (job.pool, job.state.value)
            out[key] = out.get(key, 0) + 1
        return out

    def queue_stats(self, pool: str) -> tuple[int, float | None]:
        """(waiting jobs, when the longest-waiting one was queued): O(1), for scrapes."""
        p = self._c.pool(pool)
        head = self._queues.head(p)
        return p.waiting, None if head is None else head.queued_at

    def reservation_views(self) -> list[ReservationView]:
        now = self._clock()
        out = []
        for spec in self._c.spec.reservations:
            occ = current(spec, now)
            nxt = occ or next_occurrence(spec, now)
            job = self._c.jobs.get(self._reservation_jobs.get(spec.name, ""))
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

    def reservation_states(self) -> list[dict[str, Any]]:
        """``reservation_views`` as dicts, for the runtime's JSON and metrics (until they take the views)."""
        return [v.to_dict() for v in self.reservation_views()]

    # ------------------------------------------------------------------ persistence support

    def take_dirty(self) -> list[JobView]:
        """Jobs changed since the last call (for the store), in id order."""
        out = [self._c.jobs[j].view() for j in sorted(self._c.dirty) if j in self._c.jobs]
        self._c.dirty.clear()
        return out

    def export_meta(self) -> dict[str, Any]:
        """The small non-job state a restart needs (timers, cycle records, counters).

        Built of fresh containers: the caller may keep it and compare it with a later one.
        """
        return {
            "decision_seq": self._numbering.next,
            "job_seq": self._c.tickets,
            "policy": {f.name: getattr(self._c.policy, f.name) for f in fields(PolicySpec)},
            "cycles": [[v, p, t] for (v, p), t in self._guards.reversal.pairs.items()],
            "cycles_refused": self.cycles_refused,
            "reservation_jobs": dict(self._reservation_jobs),
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
                for p in self._c.pools.values()
            },
        }

    @classmethod
    def restore(
        cls,
        cluster: ClusterSpec,
        policy: PolicySpec,
        *,
        clock: Callable[[], float],
        jobs: Sequence[JobView],
        meta: Mapping[str, Any],
    ) -> Scheduler:
        """Rebuild the core from the store: same GPUs held, same queues, same timers."""
        pol = meta.get("policy")
        if isinstance(pol, dict):
            policy = replace(policy, **{k: v for k, v in pol.items() if hasattr(policy, k)})
        s = cls(cluster, policy, clock=clock, first_decision_seq=int(meta.get("decision_seq", 1)))
        now = clock()
        s._c.tickets = int(meta.get("job_seq", 0))
        reversal = s._guards.reversal
        reversal.refused_count = int(meta.get("cycles_refused", 0))
        reversal.pairs = {(str(v), str(p)): float(t) for v, p, t in meta.get("cycles", [])}
        s._reservation_jobs = {str(k): str(v) for k, v in meta.get("reservation_jobs", {}).items()}
        for name, pm in meta.get("pools", {}).items():
            p = s._c.pools.get(name)
            if p is None:
                continue
            p.firing = bool(pm.get("firing", False))
            p.resolved_at = pm.get("resolved_at")
            lse = pm.get("last_scale_event")
            p.last_scale_event = -math.inf if lse is None else float(lse)
            p.lost = float(pm.get("lost", 0.0))
            for node, (idle_since, gpus) in pm.get("autoscaled", {}).items():
                for u in gpus:
                    s._c.add_gpu(GpuSpec(u, node, name))
                p.nominal += len(gpus)
                p.autoscaled[node] = idle_since
        waiting: list[JobView] = []
        for v in jobs:
            job = s._restore_job(v)
            if v.state in WAITING_STATES:
                waiting.append(v)
            elif v.state in (JobState.RUNNING, JobState.PREEMPTING):
                s._restore_running(job, v, now)
        # Queues in their original order; holds after every holder is back.
        for v in sorted(waiting, key=lambda v: (v.queued_at, v.id)):
            job = s._c.jobs[v.id]
            s._queues.enqueue(job, v.state, v.queued_at)
            p = s._c.pools[job.pool]
            for u in v.held_gpu_ids:
                g = s._c.gpus.get(u)
                if g is not None and g.held_for is None:
                    s._c.hold(g, job)
            job.pending_victims = {
                x
                for x in v.pending_victims
                if x in s._c.jobs and s._c.jobs[x].state is JobState.PREEMPTING
            }
            if job.elastic:
                p.elastic[job.id] = None
        for v in jobs:
            job = s._c.jobs[v.id]
            if job.elastic and job.state is JobState.RUNNING:
                s._c.pools[job.pool].elastic[job.id] = None
        s._c.dirty.clear()
        return s

    def _restore_job(self, v: JobView) -> Job:
        req = JobRequest(
            id=v.id,
            pool=v.pool,
            gpus=v.gpus,
            kind=v.kind,
            checkpointable=v.checkpointable,
            duration_seconds=v.duration_seconds,
            submitted_at=v.submitted_at,
        )
        self._c.pool(v.pool)
        job = Job(req, preemptible=v.preemptible, grace=v.grace_seconds, now=v.queued_at)
        job.state = v.state
        job.started_at = v.started_at
        job.last_checkpoint = v.last_checkpoint
        job.progress = v.progress_seconds
        job.checkpoint_progress = v.checkpoint_progress_seconds
        job.resume_count = v.resume_count
        job.preemptions = list(v.preemptions)
        job.lost = v.gpu_seconds_lost
        job.preempted_for = v.preempted_for
        job.deadline = v.deadline
        job.elastic = v.elastic
        job.reservation = v.reservation
        job.correlation_id = v.correlation_id
        self._c.jobs[v.id] = job
        if v.state in FINISHED_STATES:
            self._jobs.restored_finished(job)
        return job

    def _restore_running(self, job: Job, v: JobView, now: float) -> None:
        pool = self._c.pools[job.pool]
        job.run_seq = self._c.next_ticket()
        for u in v.gpu_ids:
            g = self._c.gpus.get(u)
            if g is None or g.holder is not None:
                raise Conflict(f"stored allocation of {u} to {v.id} is inconsistent")
            self._c.pools[g.home].free.pop(u, None)
            g.holder = job.id
            self._c.set_claim(g, job.pool)
            if g.home != job.pool and v.state is JobState.RUNNING:
                self._c.pools[g.home].borrowers_on[job.id] = None
        job.gpu_ids = list(v.gpu_ids)
        if v.state is JobState.RUNNING:
            pool.running_gpus += job.gpus
            self._victims.add(job, now)
        elif job.deadline is not None:
            self._preemption.watch(job)
        if job.duration is not None and job.started_at is not None:
            end = job.started_at + max(0.0, job.duration - job.progress)
            self._jobs.ends_at(job, end)
