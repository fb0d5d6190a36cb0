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

from dataclasses import dataclass

from scheduler.core.cluster import Cluster, Gpu, Job, Pool, RunTimers
from scheduler.core.decisions import Cycle
from scheduler.core.fit import idle_gpus
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
    gpus: int  # GPUs the plan yields (free + claimable from victims)
    floor: frozenset[str] = frozenset()  # victims taken only for the preemptor's floor


class _Room:
    """Claims a plan has counted against the limits so far, before it makes any."""

    __slots__ = ("borrowed", "lent")

    def __init__(self) -> None:
        self.borrowed = 0  # foreign GPUs the preemptor's pool would claim
        self.lent: dict[str, int] = {}  # home pool -> its owners' GPUs that would become lent


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
        """Idle GPUs plus the fewest, cheapest victims that give ``pool`` ``need`` GPUs.

        Returns None when ``need`` cannot be met (unless ``best_effort``, which
        returns whatever can be had, possibly nothing). Read-only, but for
        counting a reversal the guards refuse (``count``).
        """
        cluster = self._cluster
        self._victims.promote(now)
        job = cluster.jobs.get(preemptor)
        # A job at its lifetime cap borrows no idle GPUs: their lender could not take them back.
        free = idle_gpus(
            cluster, pool, need, own_only=job is not None and self._guards.own_only(job)
        )
        if len(free) < need and cluster.preempts_owners(pool):
            free += self._drain_held(pool, need - len(free), free, now)
        remaining = need - len(free)
        if remaining <= 0:
            return Plan(tuple(free[:need]), (), need)
        # The idle GPUs taken from lenders count against the limits too.
        room = _Room()
        own_free = 0
        for g in free:
            if g.home != pool.name:
                room.lent[g.home] = room.lent.get(g.home, 0) + 1
                room.borrowed += 1
            else:
                own_free += 1
        # GPUs short of the guaranteed floor: reclaimed even from capped jobs.
        floor_left = pool.spec.guaranteed_gpus - pool.own - own_free
        floor: set[str] = set()
        chosen: list[tuple[Job, int]] = []
        got = 0
        guards = self._guards
        for c in self._victims.candidates(pool, remaining, now):
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
            n = len(self._claimable(victim, pool, room, floor_left if floor_only else None))
            if n == 0:
                continue
            if floor_only:
                floor.add(victim.id)
                floor_left -= n
            chosen.append((victim, n))
            got += n
            if got >= remaining:
                break
        if got < remaining and not best_effort:
            return None
        # Fewest victims: drop, latest first, any victim the others already cover.
        for i in range(len(chosen) - 1, -1, -1):
            if got - chosen[i][1] >= remaining:
                got -= chosen[i][1]
                del chosen[i]
        victims = tuple(v for v, _ in chosen)
        return Plan(
            tuple(free),
            victims,
            len(free) + min(got, remaining),
            frozenset(v.id for v in victims if v.id in floor),
        )

    def commit(self, plan: Plan, job: Job, cause: Cause, cycle: Cycle) -> None:
        """Claim the plan's idle GPUs and preempt its victims; freed GPUs are held for ``job``."""
        cluster = self._cluster
        pool = cluster.pools[job.pool]
        still = job.gpus - len(job.held)
        for g in plan.free[:still]:
            if g.held_for is not None:  # held for a draining head: the top class takes it
                cluster.jobs[g.held_for].held.remove(g.uuid)
                cluster.dirty.add(g.held_for)
            cluster.hold(g, job)
        still -= min(still, len(plan.free))
        for victim in plan.victims:
            floor = still if victim.id in plan.floor else None
            claimable = self._claimable(victim, pool, _Room(), floor)[:still]
            for g in claimable:
                cluster.hold(g, job)
            still -= len(claimable)
            victim_cause = cause
            if cause is Cause.PRIORITY and any(g.home == pool.name for g in claimable):
                victim_cause = Cause.RECLAIM
            self._preempt(victim, job, victim_cause, cycle)
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

    def _drain_held(self, pool: Pool, want: int, taken: list[Gpu], now: float) -> list[Gpu]:
        """Idle GPUs lower pools hold for a queue head they drain, that ``pool`` may claim."""
        cluster = self._cluster
        borrowed = pool.borrowed + sum(1 for g in taken if g.home != pool.name)
        out: list[Gpu] = []
        for lender in cluster.by_priority:
            if lender.priority >= pool.priority or len(out) >= want:
                break
            head = self._queues.head(lender)
            if head is None or not head.held or not self._queues.draining(head, now):
                continue
            lent = lender.lent + sum(1 for g in taken if g.home == lender.name)
            for u in head.held:
                g = cluster.gpus[u]
                if len(out) >= want or borrowed >= pool.spec.borrowing_limit:
                    break
                if lent >= lender.spec.lending_limit:
                    break
                if g.holder is None and g.home == lender.name:
                    out.append(g)
                    borrowed += 1
                    lent += 1
        return out

    def _claimable(
        self, victim: Job, pool: Pool, room: _Room, floor: int | None = None
    ) -> list[Gpu]:
        """GPUs of ``victim`` that ``pool`` may claim, counting them in ``room``.

        ``floor``: the victim is taken only to reclaim ``pool``'s guaranteed floor,
        so only that many of ``pool``'s own GPUs.
        """
        cluster = self._cluster
        if floor is not None:
            own = [
                g
                for g in map(cluster.gpus.__getitem__, victim.gpu_ids)
                if g.home == pool.name and g.held_for is None
            ]
            return own[:floor]
        # Only the top class takes owners' GPUs from lower classes; others reclaim their own.
        lower = cluster.pools[victim.pool].priority < pool.priority and cluster.preempts_owners(
            pool
        )
        out = []
        for u in victim.gpu_ids:
            g = cluster.gpus[u]
            if g.held_for is not None:
                continue
            if g.home == pool.name:  # reclaiming its own GPU
                out.append(g)
                continue
            if not lower:
                continue
            if pool.borrowed + room.borrowed >= pool.spec.borrowing_limit:
                continue
            home = cluster.pools[g.home]
            if victim.pool == g.home:  # an owner's GPU becomes lent
                if home.lent + room.lent.get(g.home, 0) >= home.spec.lending_limit:
                    continue
                room.lent[g.home] = room.lent.get(g.home, 0) + 1
            room.borrowed += 1
            out.append(g)
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
