"""A small cluster on a fake clock for core tests."""

from __future__ import annotations

from dataclasses import dataclass, field

from scheduler.core import ClusterSpec, GpuSpec, PolicySpec, PoolSpec, ReservationSpec, Scheduler

T0 = 1_800_000_000.0  # 2027-01-15, a Friday; tests move the clock themselves


@dataclass
class Clock:
    now: float = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def pool(
    name: str,
    cls: str,
    prio: int,
    nominal: int,
    *,
    guaranteed: int = 0,
    lending: int | None = None,
    borrowing: int = 0,
    preemptible: bool = True,
    max_nodes: int = 4,
) -> PoolSpec:
    return PoolSpec(
        name=name,
        priority_class=cls,
        priority=prio,
        nominal_gpus=nominal,
        guaranteed_gpus=guaranteed,
        lending_limit=nominal - guaranteed if lending is None else lending,
        borrowing_limit=borrowing,
        preemptible=preemptible,
        min_nodes=0,
        max_nodes=max_nodes,
    )


def cluster(
    pools: list[PoolSpec], per_node: int = 4, reservations: tuple[ReservationSpec, ...] = ()
) -> ClusterSpec:
    gpus = []
    i = 0
    for p in pools:
        for _ in range(p.nominal_gpus):
            gpus.append(GpuSpec(f"GPU-{i:04d}", f"node-{i // per_node}", p.name))
            i += 1
    return ClusterSpec(tuple(pools), tuple(gpus), reservations, gpus_per_new_node=per_node)


def bank(reservations: tuple[ReservationSpec, ...] = ()) -> ClusterSpec:
    """The example stack's shape, halved: P0 4 GPUs, P1 8, P2 4."""
    return cluster(
        [
            pool("p0", "P0", 1000, 4, guaranteed=4, lending=0, borrowing=8, preemptible=False),
            pool("p1", "P1", 500, 8, guaranteed=2, lending=6, borrowing=4),
            pool("p2", "P2", 100, 4, guaranteed=0, lending=4, borrowing=8),
        ],
        reservations=reservations,
    )


FAST = PolicySpec(
    min_runtime_seconds=60.0,
    default_grace_seconds=10.0,
    return_stabilization_seconds=30.0,
    rebalance_step_gpus=4,
    cycle_window_seconds=600.0,
    preemption_budget=2,
    preemption_budget_window_seconds=3600.0,
)


@dataclass
class World:
    clock: Clock = field(default_factory=Clock)

    def make(self, spec: ClusterSpec | None = None, policy: PolicySpec = FAST) -> Scheduler:
        return Scheduler(spec or bank(), policy, clock=self.clock)
