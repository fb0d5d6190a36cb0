"""Which idle GPUs a pool gets: the one place that chooses GPUs for a claim.

Today a pool takes its own idle GPUs first (in the order they joined), then
borrows idle GPUs from the other pools, lowest priority first, within its
borrowing limit and each lender's lending limit. Placement, seeding and
preemption planning all choose through ``idle_gpus``; node-aware placement
(packing a job onto few nodes) replaces this module's choice and nothing else.

Owns: nothing (a pure choice over the cluster's records).
May call: ``cluster``.
"""

from __future__ import annotations

from itertools import islice

from scheduler.core.cluster import Cluster, Gpu, Pool


def idle_gpus(cluster: Cluster, pool: Pool, want: int, *, own_only: bool) -> list[Gpu]:
    """Up to ``want`` idle GPUs ``pool`` may claim now: its own first, then borrowed."""
    gpus = cluster.gpus
    out = [gpus[u] for u in islice(pool.free, want)]
    if len(out) >= want or own_only:
        return out
    borrow_room = pool.spec.borrowing_limit - pool.borrowed
    for lender in cluster.by_priority:
        if borrow_room <= 0 or len(out) >= want:
            break
        if lender is pool or not lender.free:
            continue
        room = min(lender.spec.lending_limit - lender.lent, borrow_room, want - len(out))
        if room <= 0:
            continue
        got = [gpus[u] for u in islice(lender.free, room)]
        out.extend(got)
        borrow_room -= len(got)
    return out
