"""A small cluster on a fake clock for core tests."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from scheduler.core import (
    ClusterSpec,
    Decision,
    GpuSpec,
    LendingWindowSpec,
    PolicySpec,
    PoolSpec,
    ReservationSpec,
    Scheduler,
)
from scheduler.store.sqlite import Store

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
    lending_windows: tuple[LendingWindowSpec, ...] = (),
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
        lending_windows=lending_windows,
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


class Durable:
    """A core whose every call is written through the real SQLite store, as the runtime
    writes it, and that can restart from what the store read back (``restart``)."""

    def __init__(self, spec: ClusterSpec, policy: PolicySpec, clock: Clock, path: Path) -> None:
        self.spec = spec
        self.policy = policy
        self.clock = clock
        self.store = Store(path)
        self.core = Scheduler(spec, policy, clock=clock)
        self.decisions: list[Decision] = []  # every decision, across restarts
        self.restarts = 0

    def call(self, fn: Callable[[Scheduler], list[Decision] | None]) -> list[Decision]:
        ds = fn(self.core) or []
        self.store.write(ds, self.core.take_dirty(), self.core.export_meta())
        self.decisions.extend(ds)
        return ds

    def restart(self) -> None:
        jobs, meta = self.store.load()
        if meta is None:  # nothing written yet: a fresh core, as the runtime starts one
            self.core = Scheduler(self.spec, self.policy, clock=self.clock)
        else:
            self.core = Scheduler.restore(
                self.spec, self.policy, clock=self.clock, jobs=jobs, meta=meta
            )
        self.restarts += 1

    def close(self) -> None:
        self.store.close()
