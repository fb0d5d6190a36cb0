"""Placement: admitting waiting jobs onto GPUs, and planning preemptions for those that do not fit.

One pass (``schedule``, after every call that can change what fits) orders the
pools by the effective priority of the job at the head of each queue. First, in
that order, each pool's jobs take the pool's own idle GPUs (as in Kueue, a
workload that needs no borrowing is admitted before one that does: borrowing a
pool's idle GPUs while its own jobs wait would only invite a reclaim). Then each
pool admits from its queue (``_admit``): a job takes idle GPUs, its own first then
borrowed (``fit.idle_gpus``), or GPUs freed for it by preemption; one that does
not fit gets a preemption plan; up to ``BLOCKED_LOOKAHEAD`` jobs behind one that
could not get a plan may still try (best-effort FIFO, bounded). A plan that failed
is not tried again at the same capacity epoch and instant, nor a larger one.

No job starves behind smaller ones: once the head of a pool's queue has waited
``drain_after_seconds``, the pool *drains* for it: every pass first holds the
pool's idle GPUs for the head (as a preemptor's freed GPUs are held), up to its
size, so that GPUs freed by finishing jobs are not backfilled; the jobs behind it
still take the idle GPUs it does not need, but plan no preemptions of their own.
Only a lending window's loans (``fit.idle_gpus(window=True)``) go to jobs the
guards say can be drained before the window ends.

Owns: the order of admission; a running job's start (``Job.state``,
``Job.started_at``, ``Job.gpu_ids``, ``Job.run_ticket``) and its pool's serving GPUs
(``Pool.running_gpus``); the borrowers on each pool's GPUs as runs start
(``Pool.borrowers_on``); the failed-plan memos (``Job.plan_failed_at``, ``Pool.plan_failed_at``,
``Pool.plan_failed_pods``); the repacks declined (``Pool.repacks_declined``).
May call: ``preemption``, ``jobs``, ``queues``, ``victims``, ``fit``, ``guards``, ``cluster``,
``decisions``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scheduler.core.cluster import Cluster, Gpu, Job, Pool
from scheduler.core.decisions import Cycle
from scheduler.core.errors import InvalidRequest
from scheduler.core.fit import fit, idle_total, seed_room
from scheduler.core.guards import Guards
from scheduler.core.jobs import Jobs
from scheduler.core.model import Action, Cause, JobKind, JobRequest, JobState, Result
from scheduler.core.pods import covers
from scheduler.core.preemption import Preemption
from scheduler.core.queues import Queues
from scheduler.core.victims import VictimIndex

# How many waiting jobs per pool may each try a preemption plan in one pass
# behind a job that could not get one (best-effort FIFO, bounded).
BLOCKED_LOOKAHEAD = 8


class Placement:
    def __init__(
        self,
        cluster: Cluster,
        queues: Queues,
        victims: VictimIndex,
        guards: Guards,
        jobs: Jobs,
        preemption: Preemption,
    ) -> None:
        self._cluster = cluster
        self._queues = queues
        self._victims = victims
        self._guards = guards
        self._jobs = jobs
        self._preemption = preemption
        # The pools with lending windows (most clusters: one or none), asked on every miss.
        self._windowed = tuple(p for p in cluster.by_priority if p.spec.lending_windows)
        # The last pass left work that another pass at the same instant could do: GPUs
        # were freed or jobs requeued during it (after their pools were looked at), a
        # job started after a plan had failed (a victim that plan did not see), or a pool
        # placed as many jobs as it looks ahead. The next tick finishes it.
        self.unsettled = False
        self._cut_short = False
        self._placed = 0  # jobs placed so far (a pass compares counts)
        self._placed_at_block = -1  # ... when the pass's first plan failed (-1: none did)
        # A plan failed at ``_failed_at``, when the next decision was to be numbered
        # ``_decided_at_failure``. Its failure is remembered until the clock moves on.
        self._failed_at = -math.inf
        self._decided_at_failure = 0

    def schedule(self, cycle: Cycle) -> None:
        """Place what fits, in effective-priority order across pools; plan preemptions for the rest."""
        cluster = self._cluster
        epoch, ticket = cluster.capacity_epoch, cluster.tickets
        self._cut_short = False
        self._placed_at_block = -1
        self._pass(cycle)
        blocked_at = self._placed_at_block
        self.unsettled = (
            self._cut_short
            or cluster.capacity_epoch != epoch
            or self._queues.last_enqueued > ticket
            or 0 <= blocked_at < self._placed
        )

    def _pass(self, cycle: Cycle) -> None:
        now = cycle.now
        queues = self._queues
        order = []
        for pool in self._cluster.pools.values():
            head = queues.head(pool)
            if head is not None:
                order.append(
                    (-queues.effective_priority(head, now), -pool.priority, pool.name, pool)
                )
                if pool.free and queues.draining(head, now):
                    self._hold_for_head(pool, head)
        order.sort(key=lambda t: t[:3])
        for *_, pool in order:
            if not pool.free:
                continue
            limit = self._look_ahead(pool)
            seen = placed = 0
            for job in queues.first(pool, limit):
                if not pool.free:
                    break
                seen += 1
                placed += self.try_place(job, cycle, own_only=True)
            self._cut_short |= placed > 0 and seen >= limit
        for *_, pool in order:
            self._admit(pool, cycle)

    def try_place(self, job: Job, cycle: Cycle, *, own_only: bool = False) -> bool:
        """Start ``job`` on the GPUs held for it and idle ones, if they make up its size."""
        cluster = self._cluster
        pool = cluster.pools[job.pool]
        if not job.held and not pool.free:
            # Fast exit for the common case of a full cluster.
            if own_only or pool.borrowed >= pool.spec.borrowing_limit:
                return False
            if not any(lender.free for lender in cluster.by_priority if lender is not pool):
                return False
        ready = [cluster.gpus[u] for u in job.held if cluster.gpus[u].holder is None]
        asked_own_only = own_only
        own_only = own_only or cluster.policy.dry_run or self._preemption.own_pool_only(job)
        have = len(ready) + idle_total(cluster, pool, own_only=own_only)
        gpus = None
        if have >= job.gpus:
            gpus = fit(cluster, pool, job.pods, own_only=own_only, ready=ready, counted=True)
        if gpus is None and not own_only:
            loans = self._loans_for(job, pool, cycle.now)
            if loans:
                gpus = fit(cluster, pool, job.pods, own_only=False, ready=ready, loans=loans)
        if gpus is None:
            # Enough idle GPUs, on too many nodes: only moving running pods (a repack,
            # which this scheduler does not do) would let it start now. Counted once a wait.
            if have >= job.gpus and not asked_own_only and not job.repack_counted:
                job.repack_counted = True
                pool.repacks_declined += 1
            return False
        # On GPUs a preemption freed for it (not just drained)?
        freed = job.freed_for and any(g.uuid in job.held for g in gpus)
        self.place(job, gpus, cycle, Cause.PREEMPTION if freed else Cause.QUEUE)
        return True

    def place(self, job: Job, gpus: Sequence[Gpu], cycle: Cycle, cause: Cause) -> None:
        """``job`` starts (or resumes) on ``gpus``; holds it did not use go back."""
        cluster = self._cluster
        now = cycle.now
        pool = cluster.pools[job.pool]
        self._queues.leave(job)
        for g in gpus:
            cluster.take_idle(g)
            g.holder = job.id
            g.held_for = None
            cluster.set_claim(g, job.pool)
            if g.home != job.pool:
                cluster.pools[g.home].borrowers_on[job.id] = None
        taken = {g.uuid for g in gpus}
        for u in job.held:
            if u not in taken:
                cluster.unhold(cluster.gpus[u])
        job.held = []
        job.freed_for = False
        job.gpu_ids = [g.uuid for g in gpus]
        if len(job.pods) > 1 or len({g.node for g in gpus}) > 1:
            at = 0
            for size in job.pods:
                pod = gpus[at : at + size]
                at += size
                if any(g.node != pod[0].node for g in pod):
                    pool.pods_spanning_nodes += 1
        waited = now - job.queued_at
        job.state = JobState.RUNNING
        job.started_at = now
        job.plan_failed_at = None
        job.repack_counted = False
        job.run_ticket = cluster.next_ticket()
        pool.running_gpus += job.gpus
        self._placed += 1
        self._victims.add(job, now)
        if job.duration is not None:
            self._jobs.ends_at(job, now + max(0.0, job.duration - job.progress))
        cluster.dirty.add(job.id)
        borrowed = sum(1 for g in gpus if g.home != job.pool)
        what = f"resumed (#{job.resume_count})" if job.resume_count else "placed"
        cycle.decide(
            Action.PLACE,
            job.pool,
            Result.OK,
            f"{job.id} {what} on {len(gpus)} GPUs"
            + (f", {borrowed} borrowed" if borrowed else "")
            + f" after {waited:.0f}s",
            gpus=len(gpus),
            gpu_ids=tuple(job.gpu_ids),
            job=job.id,
            cause=cause,
            correlation_id=job.correlation_id,
            waited_seconds=waited,
        )

    def check_seeds(self, reqs: Sequence[JobRequest], now: float) -> None:
        """Raise, changing nothing, unless every request can be seeded (in order)."""
        seen: set[str] = set()
        for req in reqs:
            self._jobs.check(req)
            if req.id in seen:
                raise InvalidRequest(f"{req.id}: listed twice")
            seen.add(req.id)
            if req.started_at is not None and req.started_at > now:
                raise InvalidRequest(f"{req.id}: started_at is in the future")
        cluster = self._cluster
        running = [r for r in reqs if r.started_at is not None]
        short = seed_room(
            cluster, [(cluster.pools[r.pool], self._jobs.pods_of(r)) for r in running]
        )
        if short is not None:
            req = running[short]
            raise InvalidRequest(f"{req.id}: no room to seed {req.gpus} GPUs in {req.pool}")

    def seed(self, req: JobRequest, cycle: Cycle) -> None:
        """A job already running since ``req.started_at``, placed on its own pool first.

        ``check_seeds`` has vouched for it: nothing here can fail half-way.
        """
        now = cycle.now
        job = self._jobs.new(req, now)
        self._queues.enqueue(job, JobState.QUEUED, now)
        if req.started_at is None:
            return
        free = fit(self._cluster, self._cluster.pools[job.pool], job.pods, own_only=False)
        assert free is not None, "check_seeds counted the room"
        job.queued_at = req.started_at
        self.place(job, free, cycle, Cause.SEED)
        job.started_at = req.started_at
        self._victims.remove(job)
        if req.last_checkpoint is not None and job.checkpointable:
            job.last_checkpoint = min(req.last_checkpoint, now)
            job.checkpoint_progress = max(0.0, job.last_checkpoint - req.started_at)
        # A new run ticket: the timers ``place`` set for a run starting now are stale.
        job.run_ticket = self._cluster.next_ticket()
        self._victims.add(job, now)
        if job.duration is not None:
            self._jobs.ends_at(job, req.started_at + job.duration)

    def _admit(self, pool: Pool, cycle: Cycle) -> None:
        """Admit from ``pool``'s queue: place what fits, plan preemptions for what does not."""
        now = cycle.now
        cluster = self._cluster
        blocked = 0
        placed = False
        # Placing only ever uses up idle GPUs here, so once a job's pods did not
        # fit, no later job whose pods cover them (``pods.covers``; holding nothing)
        # will: skip the try. Not while a lending window lends, nor after a capped
        # job (which borrows nothing): what fits depends on the job then.
        unfit: tuple[int, ...] | None = None
        lending = any(p.loans_until is not None for p in self._windowed)
        head = self._queues.head(pool)
        # Behind a head the pool drains for, jobs backfill idle GPUs but take none by force.
        drained_for = head if head is not None and self._queues.draining(head, now) else None
        limit = self._look_ahead(pool)
        seen = 0
        for job in self._queues.first(pool, limit):
            seen += 1
            if job.held or unfit is None or not covers(job.pods, unfit):
                if self.try_place(job, cycle):
                    placed = True
                    continue
                if not job.held and not lending and not self._preemption.own_pool_only(job):
                    unfit = job.pods
            if job.pending_victims:
                continue  # waiting out its victims' grace periods
            if drained_for is not None and job is not drained_for:
                continue
            mark = (cluster.capacity_epoch, now)
            if job.plan_failed_at == mark or (
                pool.plan_failed_at == mark
                and not job.held
                and covers(job.pods, pool.plan_failed_pods)
            ):
                blocked += 1
                self._blocked()
            elif cluster.policy.dry_run:
                self._preemption.preview(job, cycle)
                blocked += 1
                self._blocked()
            else:
                cause = (
                    Cause.RESERVATION
                    if job.kind is JobKind.RESERVATION
                    else (Cause.REBALANCE if job.elastic else Cause.PRIORITY)
                )
                plan = self._preemption.plan(pool, job.gpus, job.id, now, best_effort=False)
                if plan is None:
                    job.plan_failed_at = mark
                    if self._failed_at != now:
                        self._failed_at, self._decided_at_failure = now, cycle.next_decision
                    if not job.held and (
                        pool.plan_failed_at != mark or covers(pool.plan_failed_pods, job.pods)
                    ):
                        pool.plan_failed_at, pool.plan_failed_pods = mark, job.pods
                    blocked += 1
                    self._blocked()
                else:
                    self._preemption.commit(plan, job, cause, cycle)
                    if self.try_place(job, cycle):
                        placed = True
            if blocked >= BLOCKED_LOOKAHEAD:
                break
        self._cut_short |= placed and seen >= limit

    def _hold_for_head(self, pool: Pool, head: Job) -> None:
        """The pool drains for its head: its idle GPUs are held for it, up to its size.

        Unless they are enough for it: then it takes them in this pass anyway. The
        fullest nodes' first, so that the holes grow where the head's pods fit soonest.
        """
        cluster = self._cluster
        want = head.gpus - len(head.held)
        if want <= 0 or (want <= len(pool.free) and not cluster.policy.node_aware):
            return
        ready = [cluster.gpus[u] for u in head.held if cluster.gpus[u].holder is None]
        if fit(cluster, pool, head.pods, own_only=True, ready=ready) is not None:
            return
        largest = cluster.largest_node
        for node in pool.idle.fullest_first(largest) if cluster.policy.node_aware else ("",):
            uuids = list(pool.idle.on[node]) if node else list(pool.free)
            for u in uuids[:want]:
                cluster.hold(cluster.gpus[u], head)
            want -= min(want, len(uuids))
            if want <= 0:
                break
        cluster.dirty.add(head.id)

    def _loans_for(self, job: Job, pool: Pool, now: float) -> tuple[Pool, ...]:
        """The pools lending past their usual limit now whose loans ``job`` may take."""
        if not self._windowed:
            return ()
        may = self._guards.may_borrow_until
        return tuple(
            lender
            for lender in self._windowed
            if lender is not pool
            and lender.loans_until is not None
            and lender.loans_end is not None
            and may(job, now, lender.loans_until, lender.loans_end)
        )

    def stale_failures(self, now: float, next_decision: int) -> bool:
        """A plan failed at ``now`` and something was decided at ``now`` after it, in any call.

        What was decided may have made the plan possible (a job started: a victim it did
        not see; a preemption committed: a lender's lent count went down), but the failure
        is remembered, not retried, until the clock moves on: the next tick, at a later
        instant, plans again. ``unsettled`` covers starts within one pass only.
        """
        return self._failed_at == now and next_decision > self._decided_at_failure

    def _blocked(self) -> None:
        if self._placed_at_block < 0:
            self._placed_at_block = self._placed

    def _look_ahead(self, pool: Pool) -> int:
        """How far down ``pool``'s queue a pass looks."""
        # Jobs waiting on their victims do not count against the look-ahead.
        holders = 0
        for job in self._queues.waiting(pool):
            if not job.pending_victims:
                break
            holders += 1
        return holders + 4 * BLOCKED_LOOKAHEAD
