"""The queues: per pool, the jobs waiting for GPUs in the order they came (a FIFO each).

A job's entry stays in its pool's deque after it leaves (placed, finished) and
is dropped from the front once dead (``compact``): walking a queue by index stays
valid while the walk places jobs. An entry is live while its ticket is the job's
``queue_ticket``; requeueing a job gives it a new ticket, so a stale entry never counts.
Across pools, waiting jobs compete by effective priority: the pool's class plus an
age bonus (``ordering.effective_priority``, Slurm's age factor).

Owns: each pool's deque of entries and its counters (``Pool.queue``, ``waiting``,
``waiting_gpus``), the ticket of the latest entry; ``Job.queue_ticket`` and ``Job.queued_at``; on every enqueue it clears the
memos of the job's previous wait (``Job.plan_failed_at``, ``Job.previewed``).
May call: ``cluster``, ``ordering``.
"""

from __future__ import annotations

from collections.abc import Iterator

from scheduler.core.cluster import Cluster, Job, Pool, QueueEntry
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
        pool.queue.append((now, job.queue_ticket, job.id))
        pool.waiting += 1
        pool.waiting_gpus += job.gpus
        self._cluster.dirty.add(job.id)

    def leave(self, job: Job) -> None:
        """``job`` stops waiting; its entry stays until ``compact`` (queues are walked by index)."""
        pool = self._cluster.pools[job.pool]
        pool.waiting -= 1
        pool.waiting_gpus -= job.gpus
        job.queue_ticket = -1

    def compact(self, pool: Pool) -> None:
        queue = pool.queue
        while queue and self._stale(queue[0]):
            queue.popleft()

    def first(self, pool: Pool, limit: int) -> Iterator[Job]:
        """Up to ``limit`` waiting jobs in order; safe while jobs are placed meanwhile."""
        jobs = self._cluster.jobs
        queue = pool.queue
        i = seen = 0
        while i < len(queue) and seen < limit:
            _, queue_ticket, job_id = queue[i]
            i += 1
            job = jobs.get(job_id)
            if job is not None and job.queue_ticket == queue_ticket:
                seen += 1
                yield job

    def waiting(self, pool: Pool) -> Iterator[Job]:
        """Every waiting job of ``pool``, in order (not safe while jobs are placed)."""
        jobs = self._cluster.jobs
        for _, queue_ticket, job_id in pool.queue:
            job = jobs.get(job_id)
            if job is not None and job.queue_ticket == queue_ticket:
                yield job

    def head(self, pool: Pool) -> Job | None:
        """The longest-waiting job of ``pool`` (every pass asks, for every pool: no generator)."""
        jobs = self._cluster.jobs
        for _, queue_ticket, job_id in pool.queue:
            job = jobs.get(job_id)
            if job is not None and job.queue_ticket == queue_ticket:
                return job
        return None

    def effective_priority(self, job: Job, now: float) -> float:
        policy = self._cluster.policy
        return effective_priority(
            self._cluster.pools[job.pool].priority,
            now - job.queued_at,
            policy.fairness_factor_per_hour,
            policy.fairness_cap,
        )

    def _stale(self, entry: QueueEntry) -> bool:
        job = self._cluster.jobs.get(entry[2])
        return job is None or job.queue_ticket != entry[1]
