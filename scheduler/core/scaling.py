"""Scaling: asking the Cluster Autoscaler for nodes, and giving idle ones back.

A pool whose longest-waiting job waited ``scale_up_wait_seconds`` asks for enough
nodes for its waiting GPUs (the Cluster Autoscaler's "pending pod" signal), as do
a firing scale alert and an operator; a pool with nothing waiting gives back an
autoscaled node idle for ``scale_down_unneeded_seconds``. Requests respect
``max_nodes``, ``min_nodes`` and the stabilisation windows; a node arrives through
``add_node``, and until it does (or the provisioning timeout passes) no further
request is made. Only autoscaled nodes are ever removed.

Owns: each pool's autoscaled nodes and their idle timers, its scale timers
(``Pool.autoscaled``, ``Pool.last_scale_event``, ``Pool.scale_pending_until``) and
its node-grown quota (``Pool.nominal``, ``Pool.nodes`` as nodes come and go).
May call: ``queues``, ``cluster``, ``decisions``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from scheduler.core.cluster import Cluster, Pool
from scheduler.core.decisions import Cycle
from scheduler.core.errors import Conflict, InvalidRequest
from scheduler.core.model import Action, Cause, GpuSpec, Result
from scheduler.core.queues import Queues


class Scaling:
    def __init__(self, cluster: Cluster, queues: Queues) -> None:
        self._cluster = cluster
        self._queues = queues

    def on_alert(self, pool: Pool, firing: bool, correlation_id: str, cycle: Cycle) -> None:
        if firing:
            self._scale_up(pool, 1, correlation_id, Cause.ALERT, cycle)
            return
        cycle.decide(
            Action.SCALE_UP,
            pool.name,
            Result.NOOP,
            "alert resolved: scale-down follows the idle timer",
            correlation_id=correlation_id,
            cause=Cause.RESOLVED,
        )

    def manual(self, pool: Pool, delta_nodes: int, correlation_id: str, cycle: Cycle) -> None:
        if delta_nodes == 0:
            raise InvalidRequest("delta_nodes must not be 0")
        if delta_nodes > 0:
            self._scale_up(pool, delta_nodes, correlation_id, Cause.MANUAL, cycle)
            return
        for _ in range(-delta_nodes):
            if not self._scale_down(
                pool, correlation_id, Cause.MANUAL, cycle, require_idle_for=0.0
            ):
                break

    def add_node(self, pool: Pool, node: str, gpu_uuids: Sequence[str], now: float) -> None:
        """A node the autoscaler brought up joined ``pool``: its GPUs raise the pool's quota."""
        cluster = self._cluster
        if node in pool.nodes or any(u in cluster.gpus for u in gpu_uuids):
            raise Conflict(f"node {node} or one of its GPUs is known already")
        for u in gpu_uuids:
            cluster.add_gpu(GpuSpec(u, node, pool.name))
        pool.nominal += len(gpu_uuids)
        pool.autoscaled[node] = now
        pool.scale_pending_until = -math.inf
        cluster.capacity_epoch += 1

    def remove_node(self, node: str) -> None:
        """Take an idle autoscaled node out (scale-down)."""
        for p in self._cluster.pools.values():
            if node in p.autoscaled:
                gpus = p.nodes.pop(node)
                if not all(u in p.free for u in gpus):
                    p.nodes[node] = gpus
                    raise Conflict(f"node {node} still has GPUs in use")
                for u in gpus:
                    self._cluster.remove_gpu(u)
                p.nominal -= len(gpus)
                del p.autoscaled[node]
                return
        raise InvalidRequest(f"{node} is not an autoscaled node")

    def step(self, cycle: Cycle) -> None:
        """Idle timers, scale-up for waiting queues, scale-down of idle nodes (a tick step)."""
        now = cycle.now
        policy = self._cluster.policy
        for pool in self._cluster.pools.values():
            for node in pool.autoscaled:
                idle = all(u in pool.free for u in pool.nodes.get(node, []))
                if not idle:
                    pool.autoscaled[node] = None
                elif pool.autoscaled[node] is None:
                    pool.autoscaled[node] = now
            head = self._queues.head(pool)
            if head is not None:
                if (
                    now - head.queued_at >= policy.scale_up_wait_seconds
                    and now >= pool.scale_pending_until
                    and len(pool.nodes) < pool.spec.max_nodes
                ):
                    per = self._cluster.spec.gpus_per_new_node
                    nodes = max(1, math.ceil(pool.waiting_gpus / per))
                    self._scale_up(pool, nodes, "", Cause.QUEUE, cycle)
            elif now - pool.last_scale_event >= policy.scale_down_stabilization_seconds:
                self._scale_down(
                    pool,
                    "",
                    Cause.UNNEEDED,
                    cycle,
                    require_idle_for=policy.scale_down_unneeded_seconds,
                )

    def next_step(self, now: float) -> float:
        """When ``step`` has something to do next (``now``: an idle timer to start or stop).

        A scale-up that the stabilization window would refuse is next tried when it
        ends (ticking in between would only record the refusal again).
        """
        policy = self._cluster.policy
        soonest = math.inf
        for pool in self._cluster.pools.values():
            idle_since: list[float] = []
            for node, since in pool.autoscaled.items():
                idle = all(u in pool.free for u in pool.nodes.get(node, []))
                if idle != (since is not None):
                    return now
                if since is not None:
                    idle_since.append(since)
            head = self._queues.head(pool)
            if head is not None:
                if len(pool.nodes) < pool.spec.max_nodes:
                    at = max(
                        head.queued_at + policy.scale_up_wait_seconds,
                        pool.scale_pending_until,
                        pool.last_scale_event + policy.scale_up_stabilization_seconds,
                    )
                    soonest = min(soonest, at)
            elif idle_since and len(pool.nodes) > pool.spec.min_nodes:
                at = max(
                    pool.last_scale_event + policy.scale_down_stabilization_seconds,
                    min(idle_since) + policy.scale_down_unneeded_seconds,
                )
                soonest = min(soonest, at)
        return soonest

    def _scale_up(
        self, pool: Pool, nodes: int, correlation_id: str, cause: Cause, cycle: Cycle
    ) -> None:
        now = cycle.now
        policy = self._cluster.policy
        per = self._cluster.spec.gpus_per_new_node
        room = pool.spec.max_nodes - len(pool.nodes)
        if room <= 0:
            cycle.decide(
                Action.SCALE_UP,
                pool.name,
                Result.REFUSED,
                f"{pool.name} is at max_nodes ({pool.spec.max_nodes})",
                correlation_id=correlation_id,
                cause=cause,
            )
            return
        if now - pool.last_scale_event < policy.scale_up_stabilization_seconds:
            cycle.decide(
                Action.SCALE_UP,
                pool.name,
                Result.REFUSED,
                "inside the scale-up stabilization window",
                correlation_id=correlation_id,
                cause=cause,
            )
            return
        n = min(nodes, room)
        pool.last_scale_event = now
        # The node arrives through add_node; until then (or the unneeded timeout,
        # the Cluster Autoscaler's provisioning timeout here) no further request.
        pool.scale_pending_until = now + policy.scale_down_unneeded_seconds
        cycle.decide(
            Action.SCALE_UP,
            pool.name,
            Result.DRY_RUN if policy.dry_run else Result.OK,
            f"{pool.name}: +{n} node(s) of {per} GPUs ({cause})",
            gpus=n * per,
            correlation_id=correlation_id,
            cause=cause,
        )

    def _scale_down(
        self,
        pool: Pool,
        correlation_id: str,
        cause: Cause,
        cycle: Cycle,
        *,
        require_idle_for: float,
    ) -> bool:
        now = cycle.now
        dry_run = self._cluster.policy.dry_run
        if len(pool.nodes) <= pool.spec.min_nodes:
            return False
        for node, idle_since in pool.autoscaled.items():
            gpus = pool.nodes.get(node, [])
            if not all(u in pool.free for u in gpus):
                continue
            if idle_since is None or now - idle_since < require_idle_for:
                continue
            pool.last_scale_event = now
            if not dry_run:
                self.remove_node(node)
            cycle.decide(
                Action.SCALE_DOWN,
                pool.name,
                Result.DRY_RUN if dry_run else Result.OK,
                f"{pool.name}: -1 node ({node} idle {now - idle_since:.0f}s, {cause})",
                gpus=len(gpus),
                gpu_ids=tuple(gpus),
                nodes=(node,),
                correlation_id=correlation_id,
                cause=cause,
            )
            return True
        return False
