"""Preemption: plan read-only, then commit; victims get a grace period, then their GPUs go.

A plan (``plan``) takes idle GPUs first, then walks the candidates in victim
order (the index's merge), asks the guards about each, counts the GPUs of each
victim the preemptor may claim within the limits, stops once the need is met,
and drops (latest first) any victim the others already cover: the fewest,
cheapest victims. It changes nothing; a refused reversal is counted when asked.
``commit`` then holds the plan's idle GPUs and the victims' GPUs for the
preemptor and signals each victim: it enters its grace period to checkpoint
(``preempt``), and when it acknowledges or the grace runs out its GPUs are let go
and it is requeued to resume from its checkpoint (``release``). In a dry run,
``preview`` records once what would be preempted and changes nothing.

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
        free = idle_gpus(cluster, pool, need, own_only=False)
        remaining = need - len(free)
        if remaining <= 0:
            return Plan(tuple(free[:need]), (), need)
        # The idle GPUs taken from lenders count against the limits too.
        room = _Room()
        for g in free:
            if g.home != pool.name:
                room.lent[g.home] = room.lent.get(g.home, 0) + 1
                room.borrowed += 1
        chosen: list[tuple[Job, int]] = []
        got = 0
        for c in self._victims.candidates(pool, remaining, now):
            victim = cluster.jobs[c.job_id]
            refusal = self._guards.refusal(victim, preemptor, now)
            if refusal is not None:
                if count:
                    refusal.refused(victim, preemptor, now)
                continue
            n = len(self._claimable(victim, pool, room))
            if n == 0:
                continue
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
        return Plan(tuple(free), tuple(v for v, _ in chosen), len(free) + min(got, remaining))

    def commit(self, plan: Plan, job: Job, cause: Cause, cycle: Cycle) -> None:
        """Claim the plan's idle GPUs and preempt its victims; freed GPUs are held for ``job``."""
        cluster = self._cluster
        pool = cluster.pools[job.pool]
        still = job.gpus - len(job.held)
        for g in plan.free[:still]:
            cluster.hold(g, job)
        still -= min(still, len(plan.free))
        for victim in plan.victims:
            claimable = self._claimable(victim, pool, _Room())[:still]
            for g in claimable:
                cluster.hold(g, job)
            still -= len(claimable)
            victim_cause = cause
            if cause is Cause.PRIORITY and any(g.home == pool.name for g in claimable):
                victim_cause = Cause.RECLAIM
            self._preempt(victim, job, victim_cause, cycle)
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

    def _claimable(self, victim: Job, pool: Pool, room: _Room) -> list[Gpu]:
        """GPUs of ``victim`` that ``pool`` may claim, counting them in ``room``."""
        cluster = self._cluster
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

    def _preempt(self, victim: Job, preemptor: Job, cause: Cause, cycle: Cycle) -> None:
        """Tell ``victim`` to checkpoint and stop within its grace period."""
        cluster = self._cluster
        now = cycle.now
        self._victims.remove(victim)
        for u in victim.gpu_ids:
            cluster.pools[cluster.gpus[u].home].borrowers_on.pop(victim.id, None)
        cluster.pools[victim.pool].running_gpus -= victim.gpus
        victim.state = JobState.PREEMPTING
        victim.deadline = now + victim.grace
        victim.preempted_for = preemptor.id
        victim.preemptions.append(now)
        victim.preemptions_total += 1
        horizon = now - cluster.policy.preemption_budget_window_seconds
        victim.preemptions = [t for t in victim.preemptions if t > horizon]
        self._guards.preempted(victim, preemptor.id, now)
        preemptor.pending_victims.add(victim.id)
        self.watch(victim)
        cluster.dirty.add(victim.id)
        lost_now = victim.work_lost(now)
        cycle.decide(
            Action.PREEMPT,
            victim.pool,
            Result.OK,
            f"{victim.id} preempted for {preemptor.id} ({cause}); "
            f"{victim.grace:.0f}s grace to checkpoint, {lost_now:.0f} GPU-s at risk",
            gpus=victim.gpus,
            gpu_ids=tuple(victim.gpu_ids),
            victims=(victim.id,),
            job=victim.id,
            cause=cause,
            correlation_id=preemptor.correlation_id,
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
