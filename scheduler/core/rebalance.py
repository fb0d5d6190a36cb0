"""Alert-driven grants and their return: P0 borrows what its SLO needs, and keeps it while needed.

When P0's latency alert fires, its pool grows by a *burst*: an elastic inference
job of as many GPUs as a best-effort preemption plan yields within the limits,
placed at once on idle GPUs or as its victims let go. How many:

- **sized from the load** when the alert carries the model's request rate (or the
  rim reported it, ``report_load``) and the stack gives the model's serving
  (``ClusterSpec.models``): ``capacity.size_grant`` asks for the fewest GPUs whose
  predicted latency quantile is ``grant_slo_margin`` under the threshold, less what
  the pool serves on and what earlier grants still being filled will bring (credit:
  a second alert does not ask twice), capped by the borrowing limit. The decision
  records the inputs and the prediction (``Decision.sizing``);
- otherwise ``rebalance_step_gpus`` (an operator can ask for a number too).

Bursts go back when they are no longer needed:

- **with the load known**, the newest burst goes back once the peak of what the
  load needed over the last ``return_stabilization_seconds`` would be served with
  the margin without it, and no alert fires. The alert resolving is no signal:
  it resolves *because* the GPUs arrived;
- **without it** (no serving spec, no report), ``return_stabilization_seconds``
  after the alert resolved, all at once (at once for an operator's grant).

A reservation window that ends while the load still needs its GPUs hands them over
to a burst in the same step (``handover``), so P0 is never short in between. A
burst that is itself preempted is stopped, not requeued. The load is not persisted:
after a restart the rim reports it again (the next poll, the next alert), and until
then the fallback rules hold.

Owns: each pool's bursts, alert state and return timer (``Pool.elastic``,
``Pool.firing``, ``Pool.resolved_at``); ``Job.elastic``; the models' reported loads
and each pool's recent needs.
May call: ``placement``, ``preemption``, ``jobs``, ``queues``, ``cluster``, ``decisions``,
``capacity``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import pairwise

from scheduler.core.capacity import UNSERVABLE, Sizing, model_need, size_grant
from scheduler.core.cluster import Cluster, Pool
from scheduler.core.decisions import Cycle
from scheduler.core.errors import InvalidRequest
from scheduler.core.jobs import Jobs
from scheduler.core.model import (
    Action,
    Cause,
    JobKind,
    JobRequest,
    JobState,
    ModelSpec,
    Result,
)
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
        self._models: dict[str, ModelSpec] = {m.name: m for m in cluster.spec.models}
        self._by_pool: dict[str, tuple[ModelSpec, ...]] = {}
        for m in cluster.spec.models:
            self._by_pool[m.pool] = (*self._by_pool.get(m.pool, ()), m)
        self._rates: dict[str, float] = {}  # model -> requests per second, as last reported
        self._firing_cid: dict[str, str] = {}  # pool -> its firing alert's correlation id
        # pool -> (since, GPUs needed) change points, oldest first, pruned to the window.
        self._needs: dict[str, list[tuple[float, int]]] = {}

    # ------------------------------------------------------------------ the load

    def report_load(self, model: str, rate_rps: float | None, cycle: Cycle) -> None:
        """``model``'s current request rate (None: unknown, the fallback rules hold).

        While the pool's alert fires, a load that needs more than the pool holds and has
        been granted grows it at once: under overload the measured rate is what the
        GPUs could serve, not what arrives, so the alert's first rate can fall short,
        and the alert, still firing, would not be sent again for hours.
        """
        pool_name = self._record_load(model, rate_rps, cycle.now)
        pool = self._cluster.pools.get(pool_name)
        if pool is not None and pool.firing and rate_rps is not None:
            self._grow_for_alert(
                pool, self._firing_cid.get(pool.name, ""), cycle, model, top_up=True
            )

    def _record_load(self, model: str, rate_rps: float | None, now: float) -> str:
        spec = self._models.get(model)
        if spec is None:
            raise InvalidRequest(f"no model {model!r} with a serving spec")
        if rate_rps is None or not math.isfinite(rate_rps) or rate_rps < 0:
            self._rates.pop(model, None)
            self._needs.pop(spec.pool, None)
            return spec.pool
        self._rates[model] = rate_rps
        need = self.need(spec.pool)
        if need is None:
            return spec.pool
        points = self._needs.setdefault(spec.pool, [])
        if points and points[-1][0] == now:
            points.pop()
        if not points or points[-1][1] != need:
            points.append((now, need))
        window = self._cluster.policy.return_stabilization_seconds
        # Keep the change in force at the window's start; older ones no longer count.
        while len(points) > 1 and points[1][0] <= now - window:
            points.pop(0)
        return spec.pool

    def need(self, pool: str) -> int | None:
        """GPUs the pool's load needs, with the margin (None: some model's load is unknown)."""
        models = self._by_pool.get(pool)
        if not models or not self._cluster.policy.load_aware_grants:
            return None
        margin = self._cluster.policy.grant_slo_margin
        total = 0
        for m in models:
            rate = self._rates.get(m.name)
            if rate is None:
                return None
            n = model_need(rate, m, margin)
            total += UNSERVABLE if n is None else n
        return total

    def _peak(self, pool: str, now: float) -> int | None:
        """The most the load needed over the stabilization window up to now (None: unknown)."""
        points = self._needs.get(pool)
        if not points or self.need(pool) is None:
            return None
        start = now - self._cluster.policy.return_stabilization_seconds
        peak = points[-1][1]
        for (_, n), (until, _) in pairwise(points):
            if until > start:
                peak = max(peak, n)
        return peak

    def _have(self, pool: Pool) -> tuple[int, int]:
        """(GPUs the pool serves on, GPUs granted to it still being filled: its credit)."""
        credit = sum(
            j.gpus for j in self._queues.waiting(pool) if j.elastic or j.kind is JobKind.RESERVATION
        )
        return pool.running_gpus, credit

    # ------------------------------------------------------------------ alerts

    def on_alert(
        self,
        pool: Pool,
        firing: bool,
        correlation_id: str,
        cycle: Cycle,
        *,
        model: str | None = None,
        rate_rps: float | None = None,
    ) -> None:
        """The pool's rebalance alert fired (grow) or resolved (start the return timer)."""
        policy = self._cluster.policy
        if rate_rps is not None:
            spec = self._alert_model(pool, model)
            if spec is not None:
                self._record_load(spec.name, rate_rps, cycle.now)
        if firing:
            self._firing_cid[pool.name] = correlation_id
            pool.firing = True
            pool.resolved_at = None
            self._grow_for_alert(pool, correlation_id, cycle, model)
            return
        pool.firing = False
        if pool.elastic:
            pool.resolved_at = cycle.now
            stable = policy.return_stabilization_seconds
            reason = (
                f"alert resolved: borrowed GPUs go back once the load needs them no more "
                f"for {stable:.0f}s"
                if self.need(pool.name) is not None
                else f"alert resolved: borrowed GPUs go back after {stable:.0f}s stable"
            )
            cycle.decide(
                Action.RETURN,
                pool.name,
                Result.PENDING,
                reason,
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

    def _alert_model(self, pool: Pool, model: str | None) -> ModelSpec | None:
        """The model an alert is about: its ``model`` label, else the pool's only model."""
        models = self._by_pool.get(pool.name, ())
        if model is not None:
            return next((m for m in models if m.name == model), None)
        return models[0] if len(models) == 1 else None

    def _grow_for_alert(
        self,
        pool: Pool,
        correlation_id: str,
        cycle: Cycle,
        model: str | None,
        *,
        top_up: bool = False,
    ) -> None:
        """Grow a firing pool: sized from its load, else by the step (not for a top-up)."""
        policy = self._cluster.policy
        spec = self._alert_model(pool, model)
        need = self.need(pool.name)
        if spec is None or need is None:
            if not top_up:
                self._grow(pool, policy.rebalance_step_gpus, correlation_id, Cause.ALERT, cycle)
            return
        held, credit = self._have(pool)
        # The other models' needs come off what the pool holds: the rest serves this one.
        others = need - (model_need(self._rates[spec.name], spec, policy.grant_slo_margin) or 0)
        sizing = size_grant(
            self._rates[spec.name],
            spec,
            margin=policy.grant_slo_margin,
            held=max(0, held - others),
            credit=credit,
            headroom=self._headroom(pool),
        )
        if sizing.want_gpus == 0:
            if top_up:
                return  # the load feed says nothing new: no decision every poll
            why = (
                f"{pool.name} is at its borrowing limit ({pool.spec.borrowing_limit})"
                if sizing.needed_gpus > sizing.held_gpus + sizing.credit_gpus
                else f"{sizing.held_gpus} GPUs serving and {sizing.credit_gpus} granted cover "
                f"{sizing.rate_rps:.0f} req/s (needs {sizing.needed_gpus})"
            )
            cycle.decide(
                Action.REBALANCE,
                pool.name,
                Result.NOOP,
                why,
                correlation_id=correlation_id,
                cause=Cause.ALERT,
                sizing=sizing.inputs(),
            )
            return
        self._grow(pool, sizing.want_gpus, correlation_id, Cause.ALERT, cycle, sizing)

    def manual(self, pool: Pool, gpus: int, correlation_id: str, cycle: Cycle) -> None:
        """An operator's grant of ``gpus`` more GPUs, returned like an alert's."""
        self._grow(pool, gpus, correlation_id, Cause.MANUAL, cycle)
        if not pool.firing and pool.elastic:
            pool.resolved_at = cycle.now  # no alert to wait for: the return timer starts now

    # ------------------------------------------------------------------ the handover

    def handover(self, ended: Sequence[tuple[str, int]], cycle: Cycle) -> None:
        """Reservation windows just ended (pool, GPUs released): what the load needs stays.

        Runs in the tick right after the reservations' step released the holds, before
        anyone else's placement: the burst takes the GPUs just freed, so P0 serves on
        as many GPUs as its load needs without a gap (the rest go back to their pools).
        """
        if self._cluster.policy.dry_run:
            return
        for name, released in ended:
            pool = self._cluster.pools.get(name)
            need = self.need(name)
            if pool is None or need is None or released <= 0:
                continue
            held, credit = self._have(pool)
            keep = min(released, need - held - credit, self._headroom(pool))
            if keep > 0:
                self._grow(pool, keep, "", Cause.HANDOVER, cycle)

    # ------------------------------------------------------------------ returns

    def next_return(self) -> float:
        """When the soonest pool gives a burst back (``inf``: none)."""
        policy = self._cluster.policy
        stable = policy.return_stabilization_seconds
        soonest = math.inf
        for p in self._cluster.pools.values():
            if not p.elastic or p.firing:
                continue
            if self.need(p.name) is None:
                if p.resolved_at is not None:
                    soonest = min(soonest, p.resolved_at + stable)
                continue
            soonest = min(soonest, self._load_return_at(p))
        return soonest

    def _load_return_at(self, pool: Pool) -> float:
        """When the pool's newest burst is no longer needed, if the load stays as it is."""
        points = self._needs.get(pool.name)
        newest = self._cluster.jobs[next(reversed(pool.elastic))]
        held, credit = self._have(pool)
        allowed = held + credit - newest.gpus
        if not points or points[-1][1] > allowed:
            return math.inf  # needed now: only a new report can change that
        stable = self._cluster.policy.return_stabilization_seconds
        at = -math.inf
        for (_, n), (until, _) in pairwise(points):
            if n > allowed:
                at = max(at, until + stable)
        return at

    def return_due(self, cycle: Cycle) -> None:
        """Bursts no longer needed go back (a tick step)."""
        policy = self._cluster.policy
        for pool in self._cluster.pools.values():
            if not pool.elastic or pool.firing:
                if not pool.elastic:
                    pool.resolved_at = None
                continue
            if self.need(pool.name) is not None:
                self._return_unneeded(pool, cycle)
            elif (
                pool.resolved_at is not None
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
                    stable = policy.return_stabilization_seconds
                    for job_id in list(pool.elastic):
                        self._give_back(
                            pool, job_id, f"{pool.name} stable for {stable:.0f}s", cycle
                        )
                    pool.resolved_at = None

    def _return_unneeded(self, pool: Pool, cycle: Cycle) -> None:
        peak = self._peak(pool.name, cycle.now)
        assert peak is not None
        stable = self._cluster.policy.return_stabilization_seconds
        while pool.elastic:
            newest = self._cluster.jobs[next(reversed(pool.elastic))]
            held, credit = self._have(pool)
            if held + credit - newest.gpus < peak:
                return
            if self._cluster.policy.dry_run:
                cycle.decide(
                    Action.RETURN,
                    pool.name,
                    Result.DRY_RUN,
                    f"would return {newest.id}: the load needs {peak} GPUs",
                    cause=Cause.STABILIZED,
                )
                return
            self._give_back(
                pool,
                newest.id,
                f"{pool.name}'s load needed at most {peak} GPUs for {stable:.0f}s",
                cycle,
            )
        pool.resolved_at = None

    # ------------------------------------------------------------------ grants

    def _headroom(self, pool: Pool) -> int:
        """GPUs the pool may still claim within its borrowing limit, queued claims counted."""
        held_by_waiting = sum(len(j.held) for j in self._queues.waiting(pool))
        return (
            pool.nominal
            + pool.spec.borrowing_limit
            - (pool.own + pool.borrowed)
            - (pool.waiting_gpus - held_by_waiting)
        )

    def _grow(
        self,
        pool: Pool,
        step: int,
        correlation_id: str,
        cause: Cause,
        cycle: Cycle,
        sizing: Sizing | None = None,
    ) -> None:
        policy = self._cluster.policy
        recorded = () if sizing is None else sizing.inputs()
        want = min(step, self._headroom(pool))
        if want <= 0:
            cycle.decide(
                Action.REBALANCE,
                pool.name,
                Result.NOOP,
                f"{pool.name} is at its borrowing limit ({pool.spec.borrowing_limit})",
                correlation_id=correlation_id,
                cause=cause,
                sizing=recorded,
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
                sizing=recorded,
            )
            return
        victims = tuple(v.id for v in plan.victims)
        sized = (
            ""
            if sizing is None
            else f"; {sizing.rate_rps:.0f} req/s needs {sizing.needed_gpus}, "
            f"{sizing.held_gpus} serving + {sizing.credit_gpus} granted"
        )
        if policy.dry_run:
            cycle.decide(
                Action.REBALANCE,
                pool.name,
                Result.DRY_RUN,
                f"would grow {pool.name} by {plan.gpus} GPUs ({len(plan.free)} idle, "
                f"{len(victims)} preemptions{sized})",
                gpus=plan.gpus,
                victims=victims,
                correlation_id=correlation_id,
                cause=cause,
                sizing=recorded,
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
        what = "keeps" if cause is Cause.HANDOVER else "grows by"
        cycle.decide(
            Action.REBALANCE,
            pool.name,
            Result.OK if placed else Result.PENDING,
            f"{pool.name} {what} {plan.gpus} GPUs ({len(plan.free)} idle now"
            + (f", {len(victims)} preempted with grace" if victims else "")
            + sized
            + (")" if plan.gpus == want else f"; wanted {want})"),
            gpus=plan.gpus,
            gpu_ids=tuple(job.gpu_ids or job.held),
            victims=victims,
            job=job.id,
            correlation_id=correlation_id,
            cause=cause,
            sizing=recorded,
        )

    def _give_back(self, pool: Pool, job_id: str, why: str, cycle: Cycle) -> None:
        job = self._cluster.jobs[job_id]
        n = len(job.gpu_ids)
        gpu_ids = tuple(job.gpu_ids)
        self._jobs.finish(job, JobState.COMPLETED)
        cycle.decide(
            Action.RETURN,
            pool.name,
            Result.OK,
            f"{why}: {job_id} returns {n} GPUs",
            gpus=n,
            gpu_ids=gpu_ids,
            job=job_id,
            correlation_id=job.correlation_id,
            cause=Cause.STABILIZED,
        )
