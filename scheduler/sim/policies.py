"""The policies a replay compares, each as the core's specs: the same ``Scheduler``, set differently.

- ``static``: today at the bank. Each pool only its own GPUs: no lending, no borrowing
  (so no preemption), no reservations or lending windows, no autoscaling, FIFO queues
  (no draining for a starving head). P0's alert can still grow P0 on its own idle GPUs.
- ``naive``: a plain priority scheduler. Borrowing within the stack's limits, and every
  class preempts lower classes, newest victim first, with no grace period to checkpoint,
  no minimum runtime, no budget, no lifetime cap or boost and no cycle guard; no
  reservations or lending windows, no draining, no autoscaling.
- ``novabrain``: the stack's policy as it is: guards, checkpoint-aware victims,
  reservations (the market bell), autoscaling within ``max_nodes``.
- variants, ``NAME:key=value,...``: ``novabrain`` with policy fields changed (any field
  of ``PolicySpec``), or ``autoscale``/``reservations`` (true or false) switched.

``--gpus N`` scales the cluster (pools, limits, node counts, reservations) keeping
the pools' ratios.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, replace

from scheduler.core.model import ClusterSpec, GpuSpec, PolicySpec
from scheduler.core.ordering import VICTIM_ORDERS
from scheduler.sim.errors import SettingsError

BUILTIN = ("static", "naive", "novabrain")
SWITCHES = ("autoscale", "reservations")


@dataclass(frozen=True)
class PolicyRun:
    """One policy of a comparison: what the core is built with, and what the world does."""

    name: str
    cluster: ClusterSpec
    policy: PolicySpec
    autoscale: bool  # nodes the core asks for join after the scale-up delay
    description: str


def scale_cluster(spec: ClusterSpec, gpus: int) -> ClusterSpec:
    """The cluster with ``gpus`` GPUs, every pool's quota, limits and nodes scaled alike."""
    total = len(spec.gpus)
    if gpus < len(spec.pools):
        raise SettingsError(f"--gpus {gpus}: at least one GPU per pool ({len(spec.pools)})")
    f = gpus / total
    nominal = [max(1, round(p.nominal_gpus * f)) for p in spec.pools]
    nominal[nominal.index(max(nominal))] += gpus - sum(nominal)  # rounding lands on the largest
    per = spec.gpus_per_new_node
    pools = []
    for p, n in zip(spec.pools, nominal, strict=True):
        guaranteed = min(n, round(p.guaranteed_gpus * f))
        nodes = math.ceil(n / per)
        pools.append(
            replace(
                p,
                nominal_gpus=n,
                guaranteed_gpus=guaranteed,
                lending_limit=min(n - guaranteed, round(p.lending_limit * f)),
                borrowing_limit=round(p.borrowing_limit * f),
                min_nodes=min(nodes, round(p.min_nodes * f)),
                max_nodes=max(nodes, round(p.max_nodes * f)),
            )
        )
    homes = [p.name for p, n in zip(spec.pools, nominal, strict=True) for _ in range(n)]
    gpu_specs = tuple(
        GpuSpec(f"GPU-sim-{i:05d}", f"node-{i // per:04d}", home) for i, home in enumerate(homes)
    )
    reservations = tuple(replace(r, gpus=max(1, round(r.gpus * f))) for r in spec.reservations)
    return replace(spec, pools=tuple(pools), gpus=gpu_specs, reservations=reservations)


# The rules that bound lost work and starvation, off (``static`` and ``naive`` have none).
def _without_policy_rules(policy: PolicySpec) -> PolicySpec:
    return replace(
        policy,
        max_preemptions_checkpointing=0,
        max_preemptions_non_checkpointing=0,
        preemption_priority_boost=0.0,
        drain_after_seconds=0.0,
        cost_before_class=False,
        load_aware_grants=False,
    )


def _fixed(spec: ClusterSpec, *, lend: bool) -> ClusterSpec:
    """No autoscaling (and, unless ``lend``, no lending or borrowing), no reservations,
    no lending windows."""
    nodes: dict[str, set[str]] = {}
    for g in spec.gpus:
        nodes.setdefault(g.pool, set()).add(g.node)
    pools = tuple(
        replace(
            p,
            lending_limit=p.lending_limit if lend else 0,
            borrowing_limit=p.borrowing_limit if lend else 0,
            max_nodes=len(nodes.get(p.name, ())),
            min_nodes=min(p.min_nodes, len(nodes.get(p.name, ()))),
            lending_windows=(),
        )
        for p in spec.pools
    )
    return replace(spec, pools=pools, reservations=())


def builtin(name: str, spec: ClusterSpec, policy: PolicySpec) -> PolicyRun:
    if name == "static":
        return PolicyRun(
            "static",
            _fixed(spec, lend=False),
            _without_policy_rules(policy),
            autoscale=False,
            description="each pool only its own GPUs: no borrowing, preemption, reservations "
            "or autoscaling (today)",
        )
    if name == "naive":
        return PolicyRun(
            "naive",
            _fixed(spec, lend=True),
            replace(
                _without_policy_rules(policy),
                min_runtime_seconds=0.0,
                preemption_budget=sys.maxsize,
                cycle_guard=False,
                default_grace_seconds=0.0,
                victim_order="newest_first",
                strict_priority=True,
            ),
            autoscale=False,
            description="borrowing and strict priority preemption: newest victim first, no "
            "grace to checkpoint, no minimum runtime, budget or cycle guard",
        )
    if name == "novabrain":
        return PolicyRun(
            "novabrain",
            spec,
            policy,
            autoscale=True,
            description="the stack's policy: guards, checkpoint-aware victims, the market-bell "
            "reservations, autoscaling within max_nodes",
        )
    raise SettingsError(f"unknown policy {name!r} (built in: {', '.join(BUILTIN)})")


def variant(text: str, base: PolicyRun) -> PolicyRun:
    """``NAME:key=value,...``: ``base`` (novabrain) with policy fields or switches changed."""
    name, sep, body = text.partition(":")
    name = name.strip()
    if not sep or not name or not body.strip():
        raise SettingsError(f"--variant {text!r}: expected NAME:key=value[,key=value...]")
    if name in BUILTIN:
        raise SettingsError(f"--variant {text!r}: {name!r} names a built-in policy")
    fields = {f.name: f for f in dataclasses.fields(PolicySpec)}
    changes: dict[str, object] = {}
    cluster, autoscale = base.cluster, base.autoscale
    for item in body.split(","):
        key, eq, raw = (s.strip() for s in item.partition("="))
        if not eq or not key:
            raise SettingsError(f"--variant {text!r}: {item!r} is not key=value")
        if key in SWITCHES:
            on = _flag(raw, key, text)
            if key == "autoscale":
                autoscale = on
                if not on:
                    cluster = replace(_fixed(cluster, lend=True), reservations=cluster.reservations)
            elif not on:
                cluster = replace(cluster, reservations=())
            continue
        if key not in fields:
            raise SettingsError(
                f"--variant {text!r}: unknown key {key!r} "
                f"(policy fields: {', '.join(fields)}; switches: {', '.join(SWITCHES)})"
            )
        current = getattr(base.policy, key)
        changes[key] = _typed(raw, current, key, text)
    try:
        policy = replace(base.policy, **changes)  # type: ignore[arg-type]
    except TypeError as e:
        raise SettingsError(f"--variant {text!r}: {e}") from None
    described = ", ".join(item.strip() for item in body.split(","))
    return PolicyRun(name, cluster, policy, autoscale, f"novabrain with {described}")


def _flag(raw: str, key: str, text: str) -> bool:
    if raw not in ("true", "false"):
        raise SettingsError(f"--variant {text!r}: {key} must be true or false")
    return raw == "true"


def _typed(raw: str, current: object, key: str, text: str) -> object:
    if isinstance(current, bool):
        return _flag(raw, key, text)
    if isinstance(current, str):
        if raw not in VICTIM_ORDERS:
            raise SettingsError(
                f"--variant {text!r}: {key} must be one of {', '.join(VICTIM_ORDERS)}"
            )
        return raw
    try:
        value = int(raw) if isinstance(current, int) else float(raw)
    except ValueError:
        raise SettingsError(f"--variant {text!r}: {key} must be a number, got {raw!r}") from None
    if not math.isfinite(value) or value < 0 or (isinstance(current, int) and value < 1):
        raise SettingsError(f"--variant {text!r}: {key} out of range: {raw}")
    return value


def policy_runs(
    names: Sequence[str], variants: Sequence[str], spec: ClusterSpec, policy: PolicySpec
) -> list[PolicyRun]:
    """The runs of a comparison, in the order asked, variants last; names unique."""
    runs = [builtin(n, spec, policy) for n in names]
    base = builtin("novabrain", spec, policy)
    runs += [variant(v, base) for v in variants]
    seen: set[str] = set()
    for r in runs:
        if r.name in seen:
            raise SettingsError(f"policy {r.name!r} asked for twice")
        seen.add(r.name)
    if not runs:
        raise SettingsError("no policy to run")
    return runs
