"""The victim index: the running jobs a preemption plan may take, kept in victim order.

The order is ``ordering.victim_key`` (or the other order the policy names,
``ordering.key_for``) and nothing else: this index keeps no order of its own. Per pool, the running jobs that every guard judging a job alone lets
go sit in buckets of jobs that ``victim_key`` orders the same way at every instant
and for every need: one size (so "fewest victims" ties inside a bucket) and one
kind of loss (stateless jobs lose nothing; the others lose GPU-seconds at the rate
of their size, so their differences in work lost never change), borrowers apart
from owners. A job is filed in its bucket under ``ordering.index_key``: its
``victim_key`` with the work lost measured from a fixed origin, so that its place
stays right as time passes. A plan merges the buckets' heads by ``victim_key`` and
reads only as many candidates as it takes, instead of building and sorting every
running job.

Jobs the guards hold back (inside their minimum runtime, out of budget) wait in a
heap keyed by when the guards let them go, and join the index then: plans never
wade through them. Jobs the guards never let go (not preemptible, at their lifetime
cap) are not indexed at all; a pool reclaiming its GPUs still meets its borrowers
among the jobs on its GPUs (``candidates``), where the guards judge them again.

Owns: each pool's buckets (``Pool.victims``), the heap of maturing jobs,
``Job.bucket``, ``Job.index_entry`` and ``Job.maturing``. Reads each pool's borrowers
(``Pool.borrowers_on``, kept by placement, preemption and jobs as runs start and stop).
May call: ``guards``, ``cluster``, ``ordering``.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Iterable, Iterator

import scheduler.core.ordering as ordering
from scheduler.core.cluster import BucketKey, Cluster, IndexEntry, Job, Pool, RunTimers
from scheduler.core.guards import Guards
from scheduler.core.model import JobState
from scheduler.core.ordering import Candidate


def candidate(cluster: Cluster, job: Job, now: float) -> Candidate:
    """A running job as the ordering sees it at ``now``."""
    started_at = job.started_at
    assert started_at is not None
    lost = ordering.work_lost(
        gpus=job.gpus,
        stateless=job.stateless,
        started_at=started_at,
        last_checkpoint=job.last_checkpoint,
        now=now,
    )
    priority = cluster.priority_of(job)
    tier = 0.0 if cluster.policy.cost_before_class else priority
    return Candidate(job.id, cluster.borrows(job), priority, lost, job.gpus, started_at, tier)


def _stream(
    cluster: Cluster, bucket: list[IndexEntry], key: BucketKey, pool: Pool, now: float
) -> Iterator[Candidate]:
    """A bucket's jobs as candidates at ``now``, in its order (``candidate``, unrolled: hot)."""
    borrower, stateless, gpus = key
    work_lost = ordering.work_lost
    jobs = cluster.jobs
    boost = cluster.policy.preemption_priority_boost
    cost_first = cluster.policy.cost_before_class
    base = float(pool.priority)
    for _, job_id in bucket:
        job = jobs[job_id]
        n = job.preemptions_total
        priority = base + boost * n if n else base  # ordering.boosted, inline
        started_at = job.started_at
        assert started_at is not None
        lost = work_lost(
            gpus=gpus,
            stateless=stateless,
            started_at=started_at,
            last_checkpoint=job.last_checkpoint,
            now=now,
        )
        tier = 0.0 if cost_first else priority
        yield Candidate(job_id, borrower, priority, lost, gpus, started_at, tier)


class VictimIndex:
    # The policy fields its filing reads besides the guards': a change refiles every job.
    policy_fields = frozenset({"victim_order", "cost_before_class", "preemption_priority_boost"})

    def __init__(self, cluster: Cluster, guards: Guards) -> None:
        self._cluster = cluster
        self._guards = guards
        self._maturing = RunTimers(cluster.jobs)  # when the guards let held-back jobs go

    def add(self, job: Job, now: float) -> None:
        """A running job becomes a candidate now, or when the guards let it go."""
        ready = self._guards.ready_at(job, now)
        if ready == math.inf:
            return  # never a victim
        if ready > now:
            if not job.maturing:
                job.maturing = True
                self._maturing.set(job, ready)
            return
        job.maturing = False
        assert job.started_at is not None
        cluster = self._cluster
        pool = cluster.pools[job.pool]
        borrower = cluster.borrows(job)
        priority = cluster.priority_of(job)
        key: BucketKey = (borrower, job.stateless, job.gpus)
        entry = (
            ordering.index_key(
                job.id,
                borrower=borrower,
                priority=priority,
                tier=0.0 if cluster.policy.cost_before_class else priority,
                gpus=job.gpus,
                started_at=job.started_at,
                at_risk_since=None if job.stateless else job.checkpoint_ref(),
                key=ordering.key_for(self._cluster.policy.victim_order),
            ),
            job.id,
        )
        bisect.insort(pool.victims.setdefault(key, []), entry)
        job.bucket = key
        job.index_entry = entry

    def remove(self, job: Job) -> None:
        job.maturing = False  # a heap entry left behind is ignored when it pops
        if job.bucket is None or job.index_entry is None:
            return
        bucket = self._cluster.pools[job.pool].victims[job.bucket]
        i = bisect.bisect_left(bucket, job.index_entry)
        if i < len(bucket) and bucket[i] == job.index_entry:
            del bucket[i]
        job.bucket = None
        job.index_entry = None

    def promote(self, now: float) -> None:
        """Jobs whose guards let go by ``now`` join the index."""
        for job in self._maturing.due(now):
            if job.maturing and job.state is JobState.RUNNING:
                job.maturing = False
                self.add(job, now)

    def next_maturity(self) -> float:
        """When the next held-back job becomes a candidate (``inf``: none; due ones wait for a tick)."""
        return self._maturing.next_at()

    def candidates(self, pool: Pool, need: int, now: float) -> Iterator[Candidate]:
        """Every job that might give GPUs to ``pool``, lazily, in victim order.

        The other pools' jobs on ``pool``'s GPUs (to reclaim), and for the top
        class, every indexed job of the pools below it.
        """
        cluster = self._cluster
        order = ordering.key_for(cluster.policy.victim_order)
        # Under strict priority a pool reclaims only from lower classes.
        below = pool.priority if cluster.policy.strict_priority else None
        reclaim = ordering.order_victims(
            (
                candidate(cluster, job, now)
                for job in map(cluster.jobs.__getitem__, pool.borrowers_on)
                if below is None or cluster.pools[job.pool].priority < below
            ),
            need,
            order,
        )
        if not cluster.preempts_owners(pool):
            yield from reclaim
            return
        streams: list[Iterable[Candidate]] = [reclaim]
        for other in cluster.by_priority:
            if other.priority >= pool.priority:
                break
            for key, bucket in other.victims.items():
                if bucket:
                    streams.append(_stream(cluster, bucket, key, other, now))
        seen: set[str] = set()
        for c in heapq.merge(*streams, key=lambda c: order(c, need)):
            if c.job_id not in seen:
                seen.add(c.job_id)
                yield c
