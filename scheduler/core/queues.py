"""The queues: per pool, the jobs waiting for GPUs in the order they came (a FIFO each).

A pool's queue holds its waiting jobs and nothing else: a job leaves it the moment
it stops waiting (placed, cancelled, finished), wherever it stands, so that every
walk (the head, the first few, every waiting job) costs what the live jobs cost,
however many came and went before. It is an ``OrderedDict`` (a linked list under a
hash map: removal from the middle and the head are O(1), iteration follows live
entries only). A walk that places jobs as it goes reads the few entries it will look
at first (``first``), so placing one never disturbs the walk. Each entry carries a
ticket (``Job.queue_ticket``; -1 when the job is not waiting).
Across pools, waiting jobs compete by effective priority: the pool's class, an age
bonus (``ordering.effective_priority``, Slurm's age factor) and a boost per
preemption the job suffered.

Owns: each pool's queue and its counters (``Pool.queue``, ``waiting``,
``waiting_gpus``), the ticket of the latest entry; ``Job.queue_ticket`` and ``Job.queued_at``;
on every enqueue it clears the
memos of the job's previous wait (``Job.plan_failed_at``, ``Job.previewed``).
May call: ``cluster``, ``ordering``.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import islice

from scheduler.core.cluster import Cluster, Job, Pool
from scheduler.core.model import JobState
from scheduler.core.ordering import effective_priority


class Queues:
    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self.last_enqueued = 0  # the ticket of the latest entry (a pass sees what came during it)

    def enqueue(self, job: Job, state: JobState, now: float) -> None:
        """``job`` starts waiting at ``now`` (queued, or requeued after preemption)."""
        job.state = state
        job.queued_at = now
        job.queue_ticket = self.last_enqueued = self._cluster.next_ticket()
        job.plan_failed_at = None
        job.previewed = False
        pool = self._cluster.pools[job.pool]
        pool.queue[job.id] = job.queue_ticket
        pool.waiting += 1
        pool.waiting_gpus += job.gpus
        self._cluster.dirty.add(job.id)

    def leave(self, job: Job) -> None:
        """``job`` stops waiting: its entry goes at once, wherever it stands."""
        pool = self._cluster.pools[job.pool]
        del pool.queue[job.id]
        pool.waiting -= 1
        pool.waiting_gpus -= job.gpus
        job.queue_ticket = -1

    def first(self, pool: Pool, limit: int) -> Iterator[Job]:
        """Up to ``limit`` waiting jobs in order; safe while the caller places them.

        The entries are read before the first job is handed out: a walk only ever
        places (removes) the jobs it was handed, and enqueues into other pools, so
        the jobs it reads are the ones a lazy walk would have met.
        """
        jobs = self._cluster.jobs
        for job_id, ticket in list(islice(pool.queue.items(), limit)):
            job = jobs.get(job_id)
            if job is not None and job.queue_ticket == ticket:
                yield job

    def waiting(self, pool: Pool) -> Iterator[Job]:
        """Every waiting job of ``pool``, in order (not safe while jobs are placed)."""
        return map(self._cluster.jobs.__getitem__, pool.queue)

    def head(self, pool: Pool) -> Job | None:
        """The longest-waiting job of ``pool``: O(1)."""
        queue = pool.queue
        return self._cluster.jobs[next(iter(queue))] if queue else None

    def draining(self, head: Job, now: float) -> bool:
        """Whether ``head``, the head of its pool's queue, waited long enough to be drained for."""
        after = self._cluster.policy.drain_after_seconds
        return after > 0 and now - head.queued_at >= after

    def effective_priority(self, job: Job, now: float) -> float:
        """Its class, boosted per preemption suffered, plus the age bonus of its wait."""
        cluster = self._cluster
        policy = cluster.policy
        return effective_priority(
            cluster.priority_of(job),
            now - job.queued_at,
            policy.fairness_factor_per_hour,
            policy.fairness_cap,
        )
