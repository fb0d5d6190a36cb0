"""Lending windows: a pool lends past its usual limit while it needs its GPUs least.

P0's GPUs idle while the market is closed; its lending windows (``PoolSpec.lending_windows``,
local times in the stack's timezone) let it lend up to a number of them then,
past its guaranteed floor. ``windows.lending`` says what a pool lends within at an
instant and until when; this module keeps each pool's limit in force
(``Pool.lending_limit``) and when its loans must go (``Pool.loans_until``, ``Pool.loans_end``),
and drains the loans in time: from a window's drain lead before it ends, the limit
is back to the usual one and every borrower past it is preempted (cheapest first,
``ordering.order_victims``), whatever the guards say: the loan was made on those
terms. Placement only lends such GPUs to jobs the guards would let go then, that
let go within their grace before the window ends and lose little by it
(``guards.Guards.may_borrow_until``), so the drain seldom overrides anything.

Owns: each pool's lending state (``Pool.lending_limit``, ``Pool.loans_until``,
``Pool.loans_end``, ``Pool.lending_next``).
May call: ``preemption``, ``victims``, ``cluster``, ``ordering``, ``windows``, ``decisions``.
"""

from __future__ import annotations

import math

from scheduler.core.cluster import Cluster, Pool
from scheduler.core.decisions import Cycle
from scheduler.core.model import Cause, JobState
from scheduler.core.ordering import order_victims
from scheduler.core.preemption import Preemption
from scheduler.core.victims import candidate
from scheduler.core.windows import lending


class Lending:
    def __init__(self, cluster: Cluster, preemption: Preemption) -> None:
        self._cluster = cluster
        self._preemption = preemption
        self._pools = [p for p in cluster.pools.values() if p.spec.lending_windows]

    def refresh(self, now: float) -> None:
        """Each pool's lending limit in force at ``now`` (no decision: nothing moves)."""
        for pool in self._pools:
            if now >= pool.lending_next:
                state = lending(pool.spec.lending_limit, pool.spec.lending_windows, now)
                if state.limit > pool.lending_limit:
                    self._cluster.capacity_epoch += 1  # a plan that failed may succeed now
                pool.lending_limit = state.limit
                pool.loans_until = state.until
                pool.loans_end = state.end
                pool.lending_next = state.next_change

    def next_edge(self) -> float:
        """When a pool's lending windows next change its limit (``inf``: none)."""
        return min((p.lending_next for p in self._pools), default=math.inf)

    def step(self, cycle: Cycle) -> None:
        """Limits follow the windows; loans past the limit in force are drained (a tick step)."""
        self.refresh(cycle.now)
        for pool in self._pools:
            if pool.lent > pool.lending_limit:
                self._drain(pool, cycle)

    def _drain(self, pool: Pool, cycle: Cycle) -> None:
        cluster = self._cluster
        jobs = cluster.jobs
        excess = pool.lent - pool.lending_limit
        for u in [u for node in pool.nodes.values() for u in node]:
            g = cluster.gpus[u]
            if g.claim is None or g.claim == pool.name:
                continue
            if g.holder is None:  # promised to a waiting job of another pool: it goes home
                holder = jobs[g.held_for or ""]
                holder.held.remove(u)
                cluster.unhold(g)
                cluster.dirty.add(holder.id)
                excess -= 1
            elif jobs[g.holder].state is JobState.PREEMPTING:
                excess -= 1  # on its way home already
        if excess <= 0:
            return
        borrowers = [candidate(cluster, jobs[j], cycle.now) for j in pool.borrowers_on]
        reason = f"the lending window of {pool.name} is closing"
        for c in order_victims(borrowers, excess):
            if excess <= 0:
                break
            victim = jobs[c.job_id]
            excess -= sum(1 for u in victim.gpu_ids if cluster.gpus[u].home == pool.name)
            self._preemption.drain(victim, Cause.LOAN_END, reason, cycle)
