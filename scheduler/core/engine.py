"""The policy core's public face: ``Scheduler``, composing one module per concern.

Pure and deterministic: no I/O, no wall clock (``clock`` is injected), no
randomness; the same calls on the same clock give the same decisions. Every
public call reads the clock at most once; one that decides opens a ``Cycle`` with
that instant, passes it down and returns the ``Decision``s it took, in order. The
rim (runtime) persists those decisions and only then actuates them. Not
thread-safe: the runtime serialises calls.

The concerns, each a module whose docstring says what state it owns and what it
may call besides the values (``model``) and the exception tree (``errors``), which
every module may use. import-linter holds them to these layers, each importing
only those below it; ``|`` separates siblings that may not import each other:

    engine                      this module: public methods, the tick's steps
    persistence                 export for the store, restore from it
    rebalance | reservations | scaling | views | lending
                                alert-driven grants and their return; reservation
                                windows; node scale-up and scale-down; read views;
                                lending windows and the drain of their loans
    placement                   admission: own pool first, then borrowing, then
                                preemption; draining a pool for its starving head
    preemption                  plan read-only, commit, grace periods, release
    jobs                        admission checks, completion, cancel, finishing
    queues | victims            per-pool FIFOs; the victim index in victim order
    fit | guards                which idle GPUs; may this job be preempted now
    cluster                     GPU, pool and job records; claim accounting
    decisions                   the cycle of a call; decision numbering
    ordering | windows | alerts | capacity
                                victim order and effective priority; reservation
                                and lending windows; alert actions and deliveries
                                seen; the queueing model that turns load into GPUs
    model | errors              the values in and out; the exception tree

Data structures are sized for thousands of GPUs and tens of thousands of jobs:
idle GPUs per home pool, a FIFO per pool, preemptible running jobs indexed per
pool in buckets kept in victim order, and the borrowers on each pool's GPUs; a
decision touches only the pools and buckets it needs.

Owns: the clock, and the order of the tick's steps.
May call: every module below it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import fields, replace
from typing import Any

from scheduler.core.alerts import AlertAction, Deliveries
from scheduler.core.cluster import Cluster
from scheduler.core.decisions import Cycle, Numbering
from scheduler.core.errors import InvalidRequest
from scheduler.core.guards import Guards
from scheduler.core.jobs import Jobs
from scheduler.core.lending import Lending
from scheduler.core.model import (
    Action,
    Cause,
    ClusterSpec,
    Decision,
    JobRequest,
    JobState,
    JobView,
    PolicySpec,
    PoolView,
    ReservationView,
    Result,
)
from scheduler.core.ordering import VICTIM_ORDERS
from scheduler.core.persistence import Persistence
from scheduler.core.placement import Placement
from scheduler.core.preemption import Preemption
from scheduler.core.queues import Queues
from scheduler.core.rebalance import Rebalance
from scheduler.core.reservations import Reservations
from scheduler.core.scaling import Scaling
from scheduler.core.victims import VictimIndex
from scheduler.core.views import Views


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
        self._clock = clock
        self._cluster = c = Cluster(cluster, policy)
        self._numbering = Numbering(
            first_decision_seq, {p.name: p.priority_class for p in cluster.pools}
        )
        self._guards = Guards(c)
        self._victims = VictimIndex(c, self._guards)
        self._queues = Queues(c)
        self._jobs = Jobs(c, self._queues, self._victims)
        self._preemption = Preemption(c, self._queues, self._victims, self._guards, self._jobs)
        self._placement = Placement(
            c, self._queues, self._victims, self._guards, self._jobs, self._preemption
        )
        self._rebalance = Rebalance(c, self._queues, self._jobs, self._preemption, self._placement)
        self._reservations = Reservations(c, self._queues, self._jobs)
        self._scaling = Scaling(c, self._queues)
        self._lending = Lending(c, self._preemption)
        self._views = Views(c, self._queues)
        self._deliveries = Deliveries()
        self._persistence = Persistence(
            c,
            self._numbering,
            self._guards,
            self._queues,
            self._victims,
            self._jobs,
            self._preemption,
            self._reservations,
        )
        # Calls that may change state so far, and next_wakeup's answer as of a count.
        self._changes = 0
        self._wakeup: tuple[int, float] = (-1, 0.0)
        # Time-driven progress, in this order (like KAI-Scheduler's action order).
        self._tick_steps: tuple[Callable[[Cycle], None], ...] = (
            self._promote,  # jobs the guards let go by now join the victim index
            self._preemption.expire,  # victims past their grace period let go
            self._jobs.complete_due,  # jobs done with their work leave
            self._reservations.step,  # windows end; windows start draining
            self._handover,  # what the load still needs of an ended window stays with P0
            self._lending.step,  # lending windows open; loans drained before they close
            self._rebalance.return_due,  # pools stable long enough give bursts back
            self._scaling.step,  # idle timers; scale up for queues, down for idle nodes
            self._placement.schedule,  # admit what fits, preempt for the rest
            self._forget,  # the guards drop what no longer matters
        )

    def _begin(self) -> Cycle:
        """A public call starts: the one read of the clock it makes."""
        self._changes += 1
        return Cycle(self._clock(), self._numbering, dry_run=self._cluster.policy.dry_run)

    def _handover(self, cycle: Cycle) -> None:
        if self._reservations.ended:
            self._rebalance.handover(self._reservations.ended, cycle)
            self._reservations.ended = []

    def _promote(self, cycle: Cycle) -> None:
        # Every plan files them first anyway; done here too so that a due maturity is
        # consumed by the tick it woke, whether or not that tick plans.
        self._victims.promote(cycle.now)

    def _forget(self, cycle: Cycle) -> None:
        self._guards.forget(cycle.now)

    # ------------------------------------------------------------------ settings

    @property
    def policy(self) -> PolicySpec:
        return self._cluster.policy

    @property
    def cluster(self) -> ClusterSpec:
        return self._cluster.spec

    @property
    def cycles_refused(self) -> int:
        """Preemptions refused because they would reverse a recent one."""
        return self._guards.reversal.refused_count

    def set_policy(self, **changes: Any) -> list[Decision]:
        known = {f.name for f in fields(PolicySpec)}
        old = self._cluster.policy
        for k, v in changes.items():
            if k not in known:
                raise InvalidRequest(f"unknown policy field {k!r}")
            current_value = getattr(old, k)
            if isinstance(current_value, str):
                if v not in VICTIM_ORDERS:
                    raise InvalidRequest(f"{k} must be one of {', '.join(VICTIM_ORDERS)}")
            elif isinstance(current_value, bool):
                if not isinstance(v, bool):
                    raise InvalidRequest(f"{k} must be true or false")
            elif isinstance(current_value, int):
                least = 0 if k in PolicySpec.OFF_AT_ZERO else 1
                if isinstance(v, bool) or not isinstance(v, int) or v < least:
                    raise InvalidRequest(f"{k} must be an integer >= {least}")
            elif isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                raise InvalidRequest(f"{k} must be a number >= 0")
        typed: dict[str, Any] = {
            k: (float(v) if isinstance(getattr(old, k), float) else v) for k, v in changes.items()
        }
        new = self._cluster.policy = replace(old, **typed)
        self._cluster.capacity_epoch += 1
        self._reservations.next_edge = -math.inf  # dry_run may have changed what a window does
        cycle = self._begin()  # after the change: its decision carries the new dry_run
        if (self._guards.index_fields | VictimIndex.policy_fields) & set(changes):
            # The guards decide when jobs become candidates, the order where: file everyone again.
            for job in self._cluster.jobs.values():
                if job.state is JobState.RUNNING:
                    self._victims.remove(job)
                    self._victims.add(job, cycle.now)
        changed = ", ".join(f"{k}: {getattr(old, k)} -> {getattr(new, k)}" for k in changes)
        cycle.decide(Action.SET_POLICY, "", Result.OK, changed or "no change", cause=Cause.REQUEST)
        return cycle.out

    # ------------------------------------------------------------------ jobs

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
        self._placement.check_seeds(reqs, cycle.now)  # all or nothing
        for req in reqs:
            self._placement.seed(req, cycle)
        self._placement.schedule(cycle)
        return cycle.out

    def cancel(self, job_id: str, *, correlation_id: str = "") -> list[Decision]:
        job = self._cluster.job(job_id)
        cycle = self._begin()
        self._jobs.cancel(job, correlation_id, cycle)
        self._placement.schedule(cycle)
        return cycle.out

    def report_checkpoint(self, job_id: str, at: float | None = None) -> None:
        """The job saved a checkpoint at ``at`` (default now): work before it is safe."""
        job = self._cluster.job(job_id)
        # No decisions, so no cycle; and no new wakeup either (a job's place among the
        # victims changes, not when its guards let it go).
        self._jobs.checkpoint(job, at, self._clock())

    def ack_preemption(self, job_id: str) -> list[Decision]:
        """The victim is done checkpointing: release its GPUs before the grace period ends.

        Idempotent: acking a job that is no longer preempting does nothing.
        """
        job = self._cluster.job(job_id)
        cycle = self._begin()
        if job.state is not JobState.PREEMPTING:
            return cycle.out
        self._preemption.release(job, Cause.ACK, cycle)
        self._placement.schedule(cycle)
        return cycle.out

    # ------------------------------------------------------------------ alerts and grants

    def alert(
        self,
        *,
        pool: str,
        action: str,
        firing: bool,
        correlation_id: str,
        model: str | None = None,
        rate_rps: float | None = None,
    ) -> list[Decision]:
        """An Alertmanager notification for ``pool``, already mapped to an action.

        ``rate_rps``: ``model``'s request rate the alert carried (None: it carried none);
        with the stack's serving spec it sizes the grant, else ``rebalance_step_gpus``.
        """
        p = self._cluster.pool(pool)
        kind = AlertAction.parse(action)
        cycle = self._begin()
        if not self._deliveries.first(correlation_id, kind, pool, firing):
            return cycle.out  # a retried delivery: decided already
        if kind is AlertAction.REBALANCE:
            self._rebalance.on_alert(
                p, firing, correlation_id, cycle, model=model, rate_rps=rate_rps
            )
        else:
            self._scaling.on_alert(p, firing, correlation_id, cycle)
        self._placement.schedule(cycle)
        return cycle.out

    def report_load(self, model: str, rate_rps: float | None) -> list[Decision]:
        """``model``'s current request rate, as the rim measured it (None: unknown now).

        What P0's grants are sized by and kept for: bursts go back only once the load
        would be served without them (rebalance.py), and while the pool's alert fires a
        load that needs more grows it. The service's load poller calls it every few
        seconds, the trace replay at each change of its demand profile.
        """
        cycle = self._begin()
        self._rebalance.report_load(model, rate_rps, cycle)
        if cycle.out:
            self._placement.schedule(cycle)
        return cycle.out

    def load_need(self, pool: str) -> int | None:
        """GPUs ``pool``'s reported load needs within its SLO with the margin (None: unknown)."""
        self._cluster.pool(pool)
        return self._rebalance.need(pool)

    def manual_rebalance(self, pool: str, gpus: int, correlation_id: str) -> list[Decision]:
        """An operator asks for ``gpus`` more GPUs for ``pool`` (returned like an alert's)."""
        p = self._cluster.pool(pool)
        if gpus < 1:
            raise InvalidRequest("gpus must be >= 1")
        cycle = self._begin()
        self._rebalance.manual(p, gpus, correlation_id, cycle)
        self._placement.schedule(cycle)
        return cycle.out

    # ------------------------------------------------------------------ scaling

    def manual_scale(self, pool: str, delta_nodes: int, correlation_id: str) -> list[Decision]:
        p = self._cluster.pool(pool)
        cycle = self._begin()
        self._scaling.manual(p, delta_nodes, correlation_id, cycle)
        return cycle.out

    def add_node(self, pool: str, node: str, gpu_uuids: Sequence[str]) -> list[Decision]:
        """A node the autoscaler brought up joined ``pool``: its GPUs raise the pool's quota."""
        p = self._cluster.pool(pool)
        cycle = self._begin()
        self._scaling.add_node(p, node, gpu_uuids, cycle.now)
        self._placement.schedule(cycle)
        return cycle.out

    def remove_node(self, node: str) -> None:
        """Take an idle autoscaled node out (scale-down)."""
        self._changes += 1
        self._scaling.remove_node(node)

    # ------------------------------------------------------------------ time

    def tick(self) -> list[Decision]:
        """Time-driven progress: grace expiry, completions, reservations, returns, scaling, placement."""
        cycle = self._begin()
        for step in self._tick_steps:
            step(cycle)
        return cycle.out

    def next_wakeup(self) -> float:
        """The earliest time at which ``tick`` may decide something (``inf``: nothing pending).

        The soonest of: now, if the last placement pass left work a next pass would do
        (GPUs freed or jobs requeued during it, a pool's look-ahead used up, anything
        decided at this instant after a plan had failed at it); a victim's
        grace period ends, a job's work is done, a job the
        guards held back becomes a victim or a reversal refusal runs out (while a job
        waits: for nobody else does that change anything), a reservation
        window drains or ends, a lending window opens or drains, a pool's bursts go back,
        a scaling timer runs out. A time
        at or before now means a tick is due. Between these instants, and calls that
        bring news (submit, alert, ack, checkpoint, cancel, add_node), ``tick`` decides
        nothing, so an event-driven caller (the trace replay) ticks only then instead of
        every few seconds. Effective priorities grow with waiting time, but they only
        order work that something else makes possible. Read-only (stale timers aside):
        what is due stays due until a tick takes it. What a tick itself makes due at
        its own instant (a job requeued by its placement after its scaling step looked)
        waits for the next tick, as it does in the service, whose heartbeat ticks every
        half second; an autoscaled node's idle time starts when a tick first sees it idle.
        """
        changes, wakeup = self._wakeup
        if changes == self._changes:
            # Nothing changed since: the same instants (one at or before an earlier
            # "now" is still due), without walking the queues and timers again.
            return wakeup
        now = self._clock()
        # A victim matures, or a refusal lapses, to the benefit of a waiting job only.
        waiting = any(p.waiting for p in self._cluster.pools.values())
        wakeup = min(
            now
            if self._placement.unsettled
            or self._placement.stale_failures(now, self._numbering.next)
            else math.inf,
            self._preemption.next_expiry(),
            self._jobs.next_completion(),
            self._victims.next_maturity() if waiting else math.inf,
            self._guards.next_lapse() if waiting else math.inf,
            self._reservations.next_edge,
            self._lending.next_edge(),
            self._rebalance.next_return(),
            self._scaling.next_step(now),
        )
        self._wakeup = (self._changes, wakeup)
        return wakeup

    # ------------------------------------------------------------------ views

    def serving_gpus(self, pool: str) -> int:
        return self._cluster.pool(pool).running_gpus

    def gpu_assignments(self) -> dict[str, tuple[str, str]]:
        """uuid -> (node, pool): the pool of the job on it, else the one it is held for, else home."""
        return self._views.gpu_assignments()

    def pool_names(self) -> list[str]:
        return list(self._cluster.pools)

    def priority_class(self, pool: str) -> str:
        return self._cluster.pool(pool).spec.priority_class

    def pool_view(self, pool: str) -> PoolView:
        return self._views.pool(pool, self._clock())

    def job(self, job_id: str) -> JobView:
        return self._cluster.job(job_id).view()

    def iter_jobs(self) -> Iterator[JobView]:
        return self._views.jobs()

    def queue(self, pool: str) -> list[tuple[JobView, float]]:
        """Waiting jobs of ``pool`` in order, with their effective priority."""
        return self._views.queue(pool, self._clock())

    def job_counts(self) -> dict[tuple[str, str], int]:
        """(pool, state) -> jobs the core holds, without building views (for scrapes)."""
        return self._views.job_counts()

    def queue_stats(self, pool: str) -> tuple[int, float | None]:
        """(waiting jobs, when the longest-waiting one was queued): O(1), for scrapes."""
        return self._views.queue_stats(pool)

    def reservation_views(self) -> list[ReservationView]:
        return self._reservations.views(self._clock())

    # ------------------------------------------------------------------ persistence

    def take_dirty(self) -> list[JobView]:
        """Jobs changed since the last call (for the store), in id order."""
        return self._persistence.take_dirty()

    def export_meta(self) -> dict[str, Any]:
        """The small non-job state a restart needs (timers, reversal records, counters)."""
        return self._persistence.export_meta()

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
        s._persistence.restore(jobs, meta, now)
        s._lending.refresh(now)
        return s
