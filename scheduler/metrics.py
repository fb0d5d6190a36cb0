"""The scheduler's metrics: a custom Collector over the runtime's state.

Gauges are read from the core at scrape time (nothing to keep in sync);
counters and histograms are accumulated by the runtime from the decisions it
records (``Accumulator.observe``). Names come from the catalog only; families
are built with ``exporters.exposition``, so each series' labels are escaped
once, when the series first appears, and a scrape renders them directly.

The collector reads its source through a small protocol (``metrics_snapshot``
and ``accumulator``), so this module does not import the runtime that imports it.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporters.catalog import Metric as CatalogMetric
from exporters.catalog import scheduler as cat
from exporters.exposition import Buckets, FamilySpec, HistogramSeries, Series
from scheduler.core.model import Action, Decision, PoolView, ReservationView, Result

WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0)
DURATION_BUCKETS = (1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.25, 1.0)


@dataclass(frozen=True)
class MetricsSnapshot:
    pool_names: tuple[str, ...]
    pools: tuple[PoolView, ...]
    assignments: dict[str, tuple[str, str]]
    queues: dict[tuple[str, str], tuple[int, float]]  # (pool, priority) -> (length, oldest wait)
    jobs: dict[tuple[str, str], int]  # (pool, state) -> count
    reservations: tuple[ReservationView, ...]
    cycles_refused: int


class Accumulator:
    """Counters and histograms fed from recorded decisions and timed calls."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.preemptions: Counter[tuple[str, str]] = Counter()
        self.lost: defaultdict[str, float] = defaultdict(float)
        self.scale: Counter[tuple[str, str, str]] = Counter()
        self.wait: dict[tuple[str, str], Buckets] = {}
        self.duration: dict[str, Buckets] = {}

    def observe(self, decisions: Sequence[Decision]) -> None:
        with self.lock:
            for d in decisions:
                # Label values are the enums' strings (what the store and the audit hold).
                self.decisions[(str(d.action), str(d.result))] += 1
                if d.action == Action.PREEMPT and d.result == Result.OK:
                    self.preemptions[(str(d.cause), d.priority)] += 1
                elif d.action == Action.RELEASE and d.gpu_seconds_lost > 0:
                    self.lost[d.pool] += d.gpu_seconds_lost
                elif d.action == Action.PLACE:
                    h = self.wait.setdefault((d.pool, d.priority), Buckets(WAIT_BUCKETS))
                    h.observe(d.waited_seconds)
                elif d.action in (Action.SCALE_UP, Action.SCALE_DOWN):
                    direction = "up" if d.action == Action.SCALE_UP else "down"
                    self.scale[(d.pool, direction, str(d.result))] += 1

    def scale_failed(self, pool: str) -> None:
        """A scale-up that did not add its capacity (the node's join was refused)."""
        with self.lock:
            self.scale[(pool, "up", "failed")] += 1

    def time(self, action: str, seconds: float) -> None:
        with self.lock:
            self.duration.setdefault(action, Buckets(DURATION_BUCKETS)).observe(seconds)


class MetricsSource(Protocol):
    """What the collector reads: the runtime."""

    @property
    def accumulator(self) -> Accumulator: ...

    def metrics_snapshot(self) -> MetricsSnapshot: ...


_BUCKETS = {cat.QUEUE_WAIT: WAIT_BUCKETS, cat.DECISION_DURATION: DURATION_BUCKETS}


class SchedulerCollector(Collector):
    def __init__(self, source: MetricsSource) -> None:
        self._source = source
        self._specs = {
            m: FamilySpec.of(m, buckets=_BUCKETS.get(m, ())) for m in cat.SCHEDULER_METRICS
        }

    def _series(self, m: CatalogMetric, *values: str) -> Series:
        return self._specs[m].series(values)

    def _histogram(self, m: CatalogMetric, *values: str) -> HistogramSeries:
        return self._specs[m].histogram_series(values)

    def collect(self) -> Iterator[Metric]:
        snap = self._source.metrics_snapshot()
        acc = self._source.accumulator
        s = self._series
        rows: dict[CatalogMetric, list[tuple[Series, float]]] = {
            m: [] for m in cat.SCHEDULER_METRICS
        }

        for uuid, (node, pool) in sorted(snap.assignments.items()):
            rows[cat.GPU_POOL_INFO].append((s(cat.GPU_POOL_INFO, uuid, node, pool), 1.0))
        for p in snap.pools:
            gpus = (
                ("owned", p.owned),
                ("borrowed", p.borrowed),
                ("lent", p.lent),
                ("idle", p.idle),
            )
            for state, n in gpus:
                rows[cat.POOL_GPUS].append((s(cat.POOL_GPUS, p.name, state), float(n)))
            rows[cat.POOL_NODES].append((s(cat.POOL_NODES, p.name), float(p.nodes)))
        for (pool, prio), (n, oldest_wait) in sorted(snap.queues.items()):
            rows[cat.QUEUE_LENGTH].append((s(cat.QUEUE_LENGTH, pool, prio), float(n)))
            rows[cat.QUEUE_OLDEST_WAIT].append((s(cat.QUEUE_OLDEST_WAIT, pool, prio), oldest_wait))
        for (pool, state), n in sorted(snap.jobs.items()):
            rows[cat.JOBS].append((s(cat.JOBS, pool, state), float(n)))
        for r in snap.reservations:
            key = (r.name, r.pool)
            active = 1.0 if r.active else 0.0
            rows[cat.RESERVATION_ACTIVE].append((s(cat.RESERVATION_ACTIVE, *key), active))
            satisfied = 1.0 if r.satisfied else 0.0
            rows[cat.RESERVATION_SATISFIED].append((s(cat.RESERVATION_SATISFIED, *key), satisfied))
        rows[cat.CYCLES_REFUSED].append((s(cat.CYCLES_REFUSED), float(snap.cycles_refused)))

        with acc.lock:
            for (reason, prio), n in sorted(acc.preemptions.items()):
                rows[cat.PREEMPTIONS].append((s(cat.PREEMPTIONS, reason, prio), float(n)))
            for pool in snap.pool_names:
                lost = acc.lost.get(pool, 0.0)
                rows[cat.GPU_SECONDS_LOST].append((s(cat.GPU_SECONDS_LOST, pool), lost))
            for (action, result), n in sorted(acc.decisions.items()):
                rows[cat.DECISIONS].append((s(cat.DECISIONS, action, result), float(n)))
            for (pool, direction, result), n in sorted(acc.scale.items()):
                series = s(cat.SCALE_EVENTS, pool, direction, result)
                rows[cat.SCALE_EVENTS].append((series, float(n)))
            wait = [
                (self._histogram(cat.QUEUE_WAIT, pool, prio), h.cumulative(), h.sum)
                for (pool, prio), h in sorted(acc.wait.items())
            ]
            duration = [
                (self._histogram(cat.DECISION_DURATION, action), h.cumulative(), h.sum)
                for action, h in sorted(acc.duration.items())
            ]

        for m in cat.SCHEDULER_METRICS:
            spec = self._specs[m]
            if m is cat.QUEUE_WAIT:
                yield spec.histogram_family(wait)
            elif m is cat.DECISION_DURATION:
                yield spec.histogram_family(duration)
            else:
                yield spec.family(rows[m])
            # Pools, nodes and reservations come and go: keep the series of this scrape only.
            spec.forget_unused()
