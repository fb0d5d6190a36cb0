"""Read views: typed, frozen snapshots of the core's state for the API, the store and the metrics.

Nothing here changes state. The scrape-path views (``job_counts``,
``queue_stats``, ``gpu_assignments``) build no job views, so that a scrape of a
core holding tens of thousands of jobs stays cheap.

Owns: nothing.
May call: ``queues``, ``cluster``.
"""

from __future__ import annotations

from collections.abc import Iterator

from scheduler.core.cluster import Cluster, Pool
from scheduler.core.model import JobView, PoolView
from scheduler.core.queues import Queues


def usable_ratio(pool: Pool, pod: int) -> float:
    """Of the pool's idle GPUs, the share a pod of ``pod`` GPUs can use (1.0: none idle, or no pod).

    Per node, whole pods only: a node with 5 idle GPUs gives a 4-GPU pod 4 of them.
    """
    idle = len(pool.free)
    if not idle or pod <= 1:
        return 1.0
    usable = sum(len(nodes) * (n // pod) * pod for n, nodes in pool.idle.by_count.items())
    return usable / idle


class Views:
    def __init__(self, cluster: Cluster, queues: Queues) -> None:
        self._cluster = cluster
        self._queues = queues

    def pool(self, name: str, now: float) -> PoolView:
        p = self._cluster.pool(name)
        s = p.spec
        head = self._queues.head(p)
        draining = head if head is not None and self._queues.draining(head, now) else None
        return PoolView(
            name=p.name,
            priority_class=s.priority_class,
            priority=s.priority,
            nominal_gpus=p.nominal,
            guaranteed_gpus=s.guaranteed_gpus,
            lending_limit=p.lending_limit,
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
                else p.resolved_at + self._cluster.policy.return_stabilization_seconds
            ),
            loans_until=p.loans_until,
            draining_for=None if draining is None else draining.id,
            held_for_head=0 if draining is None else len(draining.held),
            largest_waiting_pod=(
                pod := max((j.pods[0] for j in self._queues.waiting(p)), default=0)
            ),
            free_usable_ratio=usable_ratio(p, pod),
            no_hole_preemptions=p.no_hole_preemptions,
            repacks_declined=p.repacks_declined,
            pods_spanning_nodes=p.pods_spanning_nodes,
        )

    def jobs(self) -> Iterator[JobView]:
        for job in self._cluster.jobs.values():
            yield job.view()

    def queue(self, name: str, now: float) -> list[tuple[JobView, float]]:
        """Waiting jobs of pool ``name`` in order, with their effective priority."""
        queues = self._queues
        pool = self._cluster.pool(name)
        return [(j.view(), queues.effective_priority(j, now)) for j in queues.waiting(pool)]

    def job_counts(self) -> dict[tuple[str, str], int]:
        """(pool, state) -> jobs the core holds, without building views (for scrapes)."""
        out: dict[tuple[str, str], int] = {}
        for job in self._cluster.jobs.values():
            key = (job.pool, job.state.value)
            out[key] = out.get(key, 0) + 1
        return out

    def queue_stats(self, name: str) -> tuple[int, float | None]:
        """(waiting jobs, when the longest-waiting one was queued): O(1), for scrapes."""
        pool = self._cluster.pool(name)
        head = self._queues.head(pool)
        return pool.waiting, None if head is None else head.queued_at

    def gpu_assignments(self) -> dict[str, tuple[str, str]]:
        """uuid -> (node, pool): the pool of the job on it, else the one it is held for, else home."""
        jobs = self._cluster.jobs
        out = {}
        for g in self._cluster.gpus.values():
            job = g.holder or g.held_for
            out[g.uuid] = (g.node, jobs[job].pool if job else g.home)
        return out
