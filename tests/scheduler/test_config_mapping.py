"""The stack file mapped onto the core's specs."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from deploy.stack import load_stack
from scheduler.config import cluster_spec, policy_spec

ROOT = Path(__file__).resolve().parents[2]


def test_every_gpu_has_a_home_pool_and_nodes_belong_to_one_pool() -> None:
    stack = load_stack(ROOT / "deploy/stack.yaml")
    spec = cluster_spec(stack)
    assert [g.uuid for g in spec.gpus] == [g.uuid for g in stack.gpus()]
    per_pool = defaultdict(int)
    node_pools = defaultdict(set)
    for g in spec.gpus:
        per_pool[g.pool] += 1
        node_pools[g.node].add(g.pool)
    assert dict(per_pool) == {p.name: p.nominal_gpus for p in stack.pools}
    # Node-aligned quotas, as the Kubernetes actuator's node labels need.
    assert all(len(pools) == 1 for pools in node_pools.values())
    p0 = next(p for p in spec.pools if p.name == "p0-risk")
    assert (p0.priority, p0.lending_limit, p0.preemptible) == (1000, 0, False)
    (bell,) = spec.reservations
    assert bell.days == (0, 1, 2, 3, 4)
    assert bell.windows == ((9 * 60 + 15, 9 * 60 + 45), (14 * 60 + 45, 15 * 60 + 15))


def test_policy_follows_the_stack() -> None:
    stack = load_stack(ROOT / "deploy/stack.yaml")
    policy = policy_spec(stack)
    assert policy.min_runtime_seconds == stack.policy.min_runtime_seconds
    assert policy.rebalance_step_gpus == stack.policy.rebalance_step_gpus
    assert policy.dry_run is stack.policy.dry_run


def test_lending_windows_and_the_new_policy_reach_the_core() -> None:
    stack = load_stack(ROOT / "deploy/stack.yaml")
    p0 = next(p for p in cluster_spec(stack).pools if p.name == "p0-risk")
    nights, weekend = p0.lending_windows
    assert (nights.gpus, nights.timezone, nights.days) == (6, "Asia/Shanghai", (6, 0, 1, 2, 3, 4))
    assert nights.windows == ((18 * 60, 8 * 60 + 30),) and weekend.days == (5, 6)
    policy = policy_spec(stack)
    for name in (
        "cost_before_class",
        "preemption_priority_boost",
        "max_preemptions_checkpointing",
        "max_preemptions_non_checkpointing",
        "drain_after_seconds",
    ):
        assert getattr(policy, name) == getattr(stack.policy, name), name
