"""Which idle GPUs a pool gets: the one place that chooses GPUs for a claim.

Today a pool takes its own idle GPUs first (in the order they joined), then
borrows idle GPUs from the other pools, lowest priority first, within its
borrowing limit and each lender's lending limit: the stack's, or for a job that
may run on a lending window's loans, for the lenders it may take them from
(``loans``), the limit in force. Placement,
seeding and preemption planning all choose through ``idle_gpus`` (``seed_room``
counts a batch of seeds the same way before any is placed); node-aware placement
(packing a job onto few nodes) replaces this module's choice and nothing else.

Owns: nothing (a pure choice over the cluster's records).
May call: ``cluster``.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from itertools import islice

from scheduler.core.cluster import Cluster, Gpu, Pool


def idle_gpus(
    cluster: Cluster, pool: Pool, want: int, *, own_only: bool, loans: Collection[Pool] = ()
) -> list[Gpu]:
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
        limit = lender.lending_limit if lender in loans else lender.spec.lending_limit
        room = min(limit - lender.lent, borrow_room, want - len(out))
        if room <= 0:
            continue
        got = [gpus[u] for u in islice(lender.free, room)]
        out.extend(got)
        borrow_room -= len(got)
    return out


def seed_room(cluster: Cluster, demands: Sequence[tuple[Pool, int]]) -> int | None:
    """The first demand that idle GPUs cannot meet when all are met in order, as
    ``idle_gpus`` would meet them (own first, then borrowed); None if all are met."""
    free = {name: len(p.free) for name, p in cluster.pools.items()}
    lent = {name: p.lent for name, p in cluster.pools.items()}
    borrowed = {name: p.borrowed for name, p in cluster.pools.items()}
    for i, (pool, want) in enumerate(demands):
        own = min(want, free[pool.name])
        free[pool.name] -= own
        want -= own
        for lender in cluster.by_priority:
            room = pool.spec.borrowing_limit - borrowed[pool.name]
            if want <= 0 or room <= 0:
                break
            if lender is pool:
                continue
            n = min(lender.spec.lending_limit - lent[lender.name], room, want, free[lender.name])
            if n > 0:
                free[lender.name] -= n
                lent[lender.name] += n
                borrowed[pool.name] += n
                want -= n
        if want > 0:
            return i
    return None
