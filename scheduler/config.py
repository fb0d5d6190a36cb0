"""Map the stack file (``deploy.stack.Stack``) onto the policy core's specs.

The core never imports ``deploy``; this module is the one translation.
GPUs get their home pool by walking the cluster's GPUs in node order and
filling pools in stack order up to their nominal quota. A node may hold GPUs of
two pools: pool membership is the scheduler's own accounting (per GPU), not a
node label, and every pod is placed on one node by the scheduler.
"""

from __future__ import annotations

import dataclasses

from deploy.stack import DAYS, Stack
from scheduler.core.model import (
    ClusterSpec,
    GpuSpec,
    LendingWindowSpec,
    ModelSpec,
    PolicySpec,
    PoolSpec,
    ReservationSpec,
)


def policy_spec(stack: Stack) -> PolicySpec:
    p = stack.policy
    known = {f.name for f in dataclasses.fields(PolicySpec)}
    values = {f.name: getattr(p, f.name) for f in dataclasses.fields(p) if f.name in known}
    return PolicySpec(**values)


def cluster_spec(stack: Stack) -> ClusterSpec:
    pools = tuple(
        PoolSpec(
            name=p.name,
            priority_class=p.priority,
            priority=stack.priority_classes[p.priority],
            nominal_gpus=p.nominal_gpus,
            guaranteed_gpus=p.guaranteed_gpus,
            lending_limit=p.lending_limit,
            borrowing_limit=p.borrowing_limit,
            preemptible=p.preemptible,
            min_nodes=p.min_nodes,
            max_nodes=p.max_nodes,
            lending_windows=tuple(
                LendingWindowSpec(
                    gpus=w.gpus,
                    timezone=w.timezone,
                    days=tuple(DAYS.index(d) for d in w.days),
                    windows=w.windows,
                    drain_lead_seconds=w.drain_lead_seconds,
                )
                for w in p.lending_windows
            ),
        )
        for p in stack.pools
    )
    homes = [p.name for p in stack.pools for _ in range(p.nominal_gpus)]
    gpus = tuple(
        GpuSpec(uuid=g.uuid, node=g.node, pool=home)
        for g, home in zip(stack.gpus(), homes, strict=True)
    )
    reservations = tuple(
        ReservationSpec(
            name=r.name,
            pool=r.pool,
            gpus=r.gpus,
            timezone=r.timezone,
            days=tuple(DAYS.index(d) for d in r.days),
            windows=tuple((s.hour * 60 + s.minute, e.hour * 60 + e.minute) for s, e in r.windows),
            drain_lead_seconds=r.drain_lead_seconds,
        )
        for r in stack.reservations
    )
    per_node = stack.node_groups[0].gpus_per_node if stack.node_groups else 8
    # The models whose serving the stack gives: their load sizes their pool's grants.
    models = tuple(
        ModelSpec(
            name=m.name,
            pool=m.pool,
            service_time_seconds=m.serving.service_time_seconds,
            gpus_per_replica=m.serving.gpus_per_replica,
            replica_concurrency=m.serving.replica_concurrency,
            threshold_seconds=m.slo.latency_threshold_seconds,
            quantile=m.slo.latency_quantile,
        )
        for m in stack.models
        if m.serving is not None
    )
    return ClusterSpec(
        pools=pools,
        gpus=gpus,
        reservations=reservations,
        gpus_per_new_node=per_node,
        models=models,
    )
