"""Preemption: plan read-only, then commit; victims get a grace period, then their GPUs go.

A plan (``plan``) takes idle GPUs first (for the top class, also the idle GPUs
lower pools hold for a queue head they drain: P0 is never short while GPUs sit
idle), then walks the candidates in victim order (the index's merge), asks the
guards about each, counts the GPUs of each victim the preemptor may claim within
the limits, stops once the need is met, and drops (latest first) any victim the
others already cover: the fewest, cheapest victims. A victim the lifetime cap
protects is still taken for its GPUs of the preemptor's pool while that pool is
short of its guaranteed floor (only a lending window lends the floor). It changes
nothing; a refused reversal is counted when asked.
``commit`` then holds the plan's idle GPUs and the victims' GPUs for the
preemptor and signals each victim: it enters its grace period to checkpoint
(``preempt``), and when it acknowledges or the grace runs out its GPUs are let go
and it is requeued to resume from its checkpoint (``release``). A lending window
that closes drains its borrowers through ``drain`` (no preemptor: the GPUs go
home). In a dry run, ``preview`` records once what would be preempted and changes
nothing.

Owns: the grace deadlines (by run ticket); as victims, ``Job.state`` (preempting),
``Job.deadline``, ``Job.preempted_for``, ``Job.preemptions`` (and ``preemptions_total``), ``Job.lost``,
``Job.progress`` and ``Job.resume_count``; as preemptors, ``Job.pending_victims``
and ``Job.held`` (through the cluster's holds); ``Pool.lost``.
May call: ``jobs``, ``queues``, ``victims``, ``guards``, ``fit``, ``cluster``, ``decisions``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from scheduler.core.cluster import Cluster, Gpu, Job, Pool, RunTimers
from scheduler.core.decisions import Cycle
from scheduler.core.fit import BORROW, FREE, LEND, Candidate, fit, idle_total
from scheduler.core.guards import Guards
from scheduler.core.jobs import Jobs
from scheduler.core.model import Action, Cause, JobState, Result
from scheduler.core.queues import Queues
from scheduler.core.victims import VictimIndex


@dataclass(frozen=True)
class Plan:
    """What a preemptor would get: read-only until committed."""

    free: tuple[Gpu, ...]  # idle GPUs to claim now
    victims: tuple[Job, ...]  # jobs to preempt, in victim order
    gpus: int  # GPUs the plan yields (its pods' GPUs)
    floor: frozenset[str] = frozenset()  # victims taken only for the preemptor's floor
    take: tuple[Gpu, ...] = ()  # the victims' GPUs to hold for the preemptor
    hole: tuple[Gpu, ...] = ()  # every GPU of the pods it makes room for, pod by pod
    pods: tuple[int, ...] = ()  # ... and those pods' sizes


class Preemption:
    def __init__(
        self,
        cluster: Cluster,
        queues: Queues,
        victims: VictimIndex,
        guards: Guards,
        jobs: Jobs,
    ) -> None:
        self._cluster = cluster
        self._queues = queues
        self._victims = victims
        self._guards = guards
        self._jobs = jobs
        self._deadlines = RunTimers(cluster.jobs)  # when each victim's grace period ends

    def own_pool_only(self, job: Job) -> bool:
        """Whether ``job`` takes idle GPUs of its own pool only, in placement and in a
        preemption plan alike: at its lifetime cap it borrows nothing, since no lender could
        take it back; unless its pods fit on no node of its own pool (it would never run)."""
        return self._guards.capped(job) and not self._jobs.must_borrow(job)

    def plan(
        self,
        pool: Pool,
        need: int,
        preemptor: str,
        now: float,
        *,
        best_effort: bool,
        count: bool = True,
    ) -> Plan | None:
        """Idle GPUs plus the fewest, cheapest victims that make room for the preemptor's pods.

        The preemptor is a waiting job (its pods, with the GPUs already held for
        it), or a rebalance burst of ``need`` GPUs (whole replicas of the pool).
        Every pod needs a hole on one node (``fit.fit``): victims are walked in
        victim order until idle GPUs, held ones and theirs hold every pod, and only
        the victims whose GPUs the holes take are preempted; a plan that frees GPUs
        but no hole is never made. Returns None when no hole can be made (unless
        ``best_effort``, which returns the most whole pods it can, possibly none).
        Read-only, but for counting a reversal the guards refuse (``count``).
        """
        cluster = self._cluster
        self._victims.promote(now)
        job = cluster.jobs.get(preemptor)
        capped = job is not None and self.own_pool_only(job)
        pods: tuple[int, ...]
        if job is not None:
            pods = job.pods
            ready = [cluster.gpus[u] for u in job.held]
        else:
            per = cluster.replica_gpus.get(pool.name, 1)
            pods = (per,) * (need // per)
            ready = []
        if not pods:
            return Plan((), (), 0)
        total = sum(pods)
        extra: dict[str, list[Candidate]] = {}
        if cluster.preempts_owners(pool) and not capped:
            held = [(g, LEND) for g in self._drain_held(pool, now)]
            if held:
                extra[""] = held
        hole = fit(cluster, pool, pods, own_only=capped, ready=ready, extra=extra)
        if hole is not None:
            return self._plan(pods, hole, ready, ())
        # Walk the victims in victim order until their GPUs make the holes.
        idle = len(ready) + idle_total(cluster, pool, own_only=capped) + len(extra.get("", ()))
        near = self._near(pool, ready, capped, extra)
        # GPUs short of the guaranteed floor (its idle own GPUs count as had): reclaimed
        # even from capped jobs.
        floor_left = pool.spec.guaranteed_gpus - pool.own - len(pool.free)
        floor: set[str] = set()
        chosen: list[Job] = []
        offered = 0
        smallest = min(pods)
        guards = self._guards
        aware = cluster.policy.node_aware
        for c in self._victims.candidates(pool, total, now):
            victim = cluster.jobs[c.job_id]
            refusal = guards.refusal(victim, preemptor, now)
            floor_only = (
                refusal is not None
                and refusal.yields_to_floor
                and floor_left > 0
                and guards.refusal(victim, preemptor, now, floor=True) is None
            )
            if refusal is not None and not floor_only:
                if count:
                    refusal.refused(victim, preemptor, now)
                continue
            gs = self._eligible(victim, pool, capped, floor_left if floor_only else None)
            if not gs:
                continue
            if floor_only:
                floor.add(victim.id)
                floor_left -= len(gs)
            extra[victim.id] = gs
            chosen.append(victim)
            offered += len(gs)
            # Fit again only when this victim's GPUs may complete a hole: enough GPUs
            # in all, and on a node of its that could hold a pod.
            grown = False
            for g, _ in gs:
                key = g.node if aware else ""
                near[key] = near.get(key, 0) + 1
                grown = grown or near[key] >= smallest
            if not grown or idle + offered < total:
                continue
            hole = fit(cluster, pool, pods, own_only=capped, ready=ready, extra=extra)
            if hole is not None:
                hole = self._fewest(pool, pods, capped, ready, dict(extra), hole)
                return self._plan(pods, hole, ready, chosen, floor)
        if not best_effort:
            return None
        # The most whole pods the victims make room for (a rebalance burst).
        lo, hi, best = 0, len(pods) - 1, None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            got = fit(cluster, pool, pods[:mid], own_only=capped, ready=ready, extra=extra)
            if got is None:
                hi = mid - 1
            else:
                lo, best = mid, got
        if best is None:
            return Plan((), (), 0)
        return self._plan(pods[:lo], best, ready, chosen, floor)

    def _fewest(
        self,
        pool: Pool,
        pods: tuple[int, ...],
        capped: bool,
        ready: list[Gpu],
        extra: dict[str, list[Candidate]],
        hole: list[Gpu],
    ) -> list[Gpu]:
        """Fewest victims: drop, latest in victim order first, any the others' holes cover."""
        used = {g.holder for g in hole if g.holder is not None}
        for victim in reversed([v for v in extra if v]):
            if victim not in used:
                del extra[victim]  # its GPUs are in no hole: the others cover it
                continue
            if len(used) <= 1:
                break
            rest = {k: v for k, v in extra.items() if k != victim}
            got = fit(self._cluster, pool, pods, own_only=capped, ready=ready, extra=rest)
            if got is not None:
                hole, extra = got, rest
                used = {g.holder for g in hole if g.holder is not None}
        return hole

    def _plan(
        self,
        pods: tuple[int, ...],
        hole: list[Gpu],
        ready: list[Gpu],
        chosen: Sequence[Job],
        floor: set[str] | frozenset[str] = frozenset(),
    ) -> Plan:
        """The plan that makes ``hole``: the victims whose GPUs it takes, in victim order."""
        held = {g.uuid for g in ready}
        owners = {g.holder for g in hole if g.uuid not in held and g.holder is not None}
        victims = tuple(v for v in chosen if v.id in owners)
        take = tuple(g for g in hole if g.holder in owners and g.uuid not in held)
        free = tuple(g for g in hole if g.holder is None and g.uuid not in held)
        return Plan(
            free,
            victims,
            sum(pods),
            frozenset(v.id for v in victims if v.id in floor),
            take,
            tuple(hole),
            pods,
        )

    def _near(
        self, pool: Pool, ready: list[Gpu], capped: bool, extra: dict[str, list[Candidate]]
    ) -> dict[str, int]:
        """Per node, the GPUs a hole could use there before any victim (an upper bound)."""
        cluster = self._cluster
        if not cluster.policy.node_aware:
            return {"": len(ready) + idle_total(cluster, pool, own_only=capped)}
        near: dict[str, int] = {}
        for p in [pool] if capped else cluster.by_priority:
            for node, gpus in p.idle.on.items():
                near[node] = near.get(node, 0) + len(gpus)
        for g in ready:
            near[g.node] = near.get(g.node, 0) + 1
        for g, _ in extra.get("", ()):
            near[g.node] = near.get(g.node, 0) + 1
        return near

    def commit(self, plan: Plan, job: Job, cause: Cause, cycle: Cycle) -> None:
        """Claim the plan's idle GPUs and preempt its victims; freed GPUs are held for ``job``."""
        cluster = self._cluster
        pool = cluster.pools[job.pool]
        for g in plan.free:
            if g.held_for is not None:  # held for a draining head: the top class takes it
                cluster.jobs[g.held_for].held.remove(g.uuid)
                cluster.dirty.add(g.held_for)
            cluster.hold(g, job)
        for victim in plan.victims:
            mine = [g for g in plan.take if g.holder == victim.id]
            for g in mine:
                cluster.hold(g, job)
            victim_cause = cause
            if cause is Cause.PRIORITY and any(g.home == pool.name for g in mine):
                victim_cause = Cause.RECLAIM
            self._preempt(victim, job, victim_cause, cycle)
        if plan.victims and cluster.policy.node_aware:
            # The invariant every plan keeps: its hole, listed pod by pod, puts each of the
            # preemptor's pods on one node.
            at = 0
            for size in plan.pods:
                pod = plan.hole[at : at + size]
                at += size
                if len(pod) < size or any(g.node != pod[0].node for g in pod):
                    pool.no_hole_preemptions += 1
                    break
        job.freed_for = bool(job.held) or job.freed_for
        cluster.dirty.add(job.id)

    def preview(self, job: Job, cycle: Cycle) -> None:
        """Dry run: record once what would be preempted for ``job``, change nothing."""
        if job.previewed:
            return
        job.previewed = True
        pool = self._cluster.pools[job.pool]
        plan = self.plan(pool, job.gpus, job.id, cycle.now, best_effort=False, count=False)
        if plan is None:
            return
        cycle.decide(
            Action.PREEMPT,
            job.pool,
            Result.DRY_RUN,
            f"would preempt {len(plan.victims)} jobs and borrow for {job.id}",
            gpus=plan.gpus,
            victims=tuple(v.id for v in plan.victims),
            job=job.id,
            cause=Cause.PRIORITY,
        )

    def expire(self, cycle: Cycle) -> None:
        """Victims whose grace period is over by now let go of their GPUs (a tick step)."""
        for job in self._deadlines.due(cycle.now):
            if job.state is JobState.PREEMPTING:
                self.release(job, Cause.GRACE, cycle)

    def next_expiry(self) -> float:
        """When the soonest grace period of a current victim ends (``inf``: none)."""
        return self._deadlines.next_at()

    def watch(self, victim: Job) -> None:
        """Expire ``victim``'s grace period at its deadline (for a victim restored from the store)."""
        assert victim.deadline is not None
        self._deadlines.set(victim, victim.deadline)

    def drain(self, victim: Job, cause: Cause, reason: str, cycle: Cycle) -> None:
        """Preempt ``victim`` for no one: its GPUs go home (a lending window closes)."""
        self._preempt(victim, None, cause, cycle, reason=reason)

    def _drain_held(self, pool: Pool, now: float) -> list[Gpu]:
        """Idle GPUs lower pools hold for a queue head they drain (``fit`` counts the limits)."""
        cluster = self._cluster
        out: list[Gpu] = []
        for lender in cluster.by_priority:
            if lender.priority >= pool.priority:
                break
            head = self._queues.head(lender)
            if head is None or not head.held or not self._queues.draining(head, now):
                continue
            for u in head.held:
                g = cluster.gpus[u]
                if g.holder is None and g.home == lender.name:
                    out.append(g)
        return out

    def _eligible(
        self, victim: Job, pool: Pool, capped: bool, floor: int | None = None
    ) -> list[Candidate]:
        """GPUs of ``victim`` that ``pool`` may claim, with what each costs against the limits.

        ``floor``: the victim is taken only to reclaim ``pool``'s guaranteed floor,
        so only that many of ``pool``'s own GPUs. ``capped``: the preemptor borrows nothing.
        """
        cluster = self._cluster
        gpus = [g for g in map(cluster.gpus.__getitem__, victim.gpu_ids) if g.held_for is None]
        if floor is not None:
            return [(g, FREE) for g in gpus if g.home == pool.name][:floor]
        # Only the top class takes owners' GPUs from lower classes; others reclaim their own.
        lower = (
            not capped
            and cluster.pools[victim.pool].priority < pool.priority
            and cluster.preempts_owners(pool)
        )
        out: list[Candidate] = []
        for g in gpus:
            if g.home == pool.name:  # reclaiming its own GPU
                out.append((g, FREE))
            elif lower:  # an owner's GPU becomes lent; a borrower's stays lent
                out.append((g, LEND if victim.pool == g.home else BORROW))
        return out

    def _preempt(
        self, victim: Job, preemptor: Job | None, cause: Cause, cycle: Cycle, reason: str = ""
    ) -> None:
        """Tell ``victim`` to checkpoint and stop within its grace period."""
        cluster = self._cluster
        now = cycle.now
        self._victims.remove(victim)
        for u in victim.gpu_ids:
            cluster.pools[cluster.gpus[u].home].borrowers_on.pop(victim.id, None)
        cluster.pools[victim.pool].running_gpus -= victim.gpus
        victim.state = JobState.PREEMPTING
        victim.deadline = now + victim.grace
        victim.preemptions.append(now)
        victim.preemptions_total += 1  # for its whole life: the cap and the boost count it
        horizon = now - cluster.policy.preemption_budget_window_seconds
        victim.preemptions = [t for t in victim.preemptions if t > horizon]
        if preemptor is not None:
            victim.preempted_for = preemptor.id
            self._guards.preempted(victim, preemptor.id, now)
            preemptor.pending_victims.add(victim.id)
            reason = f"for {preemptor.id}"
        self.watch(victim)
        cluster.dirty.add(victim.id)
        lost_now = victim.work_lost(now)
        cycle.decide(
            Action.PREEMPT,
            victim.pool,
            Result.OK,
            f"{victim.id} preempted {reason} ({cause}); "
            f"{victim.grace:.0f}s grace to checkpoint, {lost_now:.0f} GPU-s at risk",
            gpus=victim.gpus,
            gpu_ids=tuple(victim.gpu_ids),
            victims=(victim.id,),
            job=victim.id,
            cause=cause,
            correlation_id="" if preemptor is None else preemptor.correlation_id,
            grace_seconds=victim.grace,
        )
        if victim.grace <= 0:
            self.release(victim, Cause.GRACE, cycle)

    def release(self, victim: Job, cause: Cause, cycle: Cycle) -> None:
        """The victim checkpointed (or its grace ran out): free its GPUs and requeue it."""
        cluster = self._cluster
        now = cycle.now
        assert victim.started_at is not None
        lost = victim.work_lost(now)
        gpu_ids = tuple(victim.gpu_ids)
        for u in gpu_ids:
            cluster.let_go(cluster.gpus[u])
        victim.gpu_ids = []
        victim.run_ticket = -1  # the run is over: its timers are stale
        victim.lost += lost
        cluster.pools[victim.pool].lost += lost
        # A checkpointing job resumes from its last checkpoint, whichever run saved it: one
        # resumed and preempted again before its next checkpoint keeps the earlier one
        # (its work lost is this run's, as ``work_lost`` counts). A job that cannot
        # checkpoint restarts from zero (its checkpoint progress is always 0).
        has_checkpoint = victim.checkpointable and (
            victim.checkpoint_progress > 0
            or (victim.last_checkpoint is not None and victim.last_checkpoint >= victim.started_at)
        )
        victim.progress = victim.checkpoint_progress if victim.checkpointable else 0.0
        victim.started_at = None
        victim.last_checkpoint = None
        victim.deadline = None
        preemptor = cluster.jobs.get(victim.preempted_for or "")
        if preemptor is not None:
            preemptor.pending_victims.discard(victim.id)
            cluster.dirty.add(preemptor.id)
        victim.preempted_for = None
        if victim.elastic:
            # A rebalance burst is extra capacity, not work: it is not requeued.
            self._jobs.finish(victim, JobState.CANCELLED)
            outcome = "stopped"
        else:
            victim.resume_count += 1
            self._queues.enqueue(victim, JobState.REQUEUED, now)
            outcome = (
                "requeued to resume from its last checkpoint"
                if has_checkpoint
                else ("requeued" if victim.stateless else "requeued to restart (no checkpoint)")
            )
        cycle.decide(
            Action.RELEASE,
            victim.pool,
            Result.OK,
            f"{victim.id} released {len(gpu_ids)} GPUs ({cause}); {lost:.0f} GPU-s lost; {outcome}",
            gpus=len(gpu_ids),
            gpu_ids=gpu_ids,
            job=victim.id,
            cause=cause,
            gpu_seconds_lost=lost,
        )
