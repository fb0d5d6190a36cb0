"""The scheduler's metrics: a custom Collector over the runtime's state.

Gauges are read from the core at scrape time (nothing to keep in sync);
counters and histograms are accumulated by the runtime from the decisions it
records and the jobs it writes (``Accumulator.observe``): a job's lifetime
preemptions and lost work are observed from its view once it finishes, so they
count what happened before a restart too. Names come from the catalog only; families
are built with ``exporters.exposition``, so each series' labels are escaped
once, when the series first appears, and a scrape renders them directly.

The collector reads its source through a small protocol (``metrics_snapshot``
and ``accumulator``), so this module does not import the runtime that imports it.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporters.catalog import Metric as CatalogMetric
from exporters.catalog import scheduler as cat
from exporters.exposition import Buckets, FamilySpec, HistogramSeries, Series
from scheduler.core.model import (
    FINISHED_STATES,
    Action,
    Decision,
    JobView,
    PoolView,
    ReservationView,
    Result,
)
from scheduler.grant_timing import GrantTimer

WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0)
DURATION_BUCKETS = (1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.25, 1.0)
JOB_PREEMPTION_BUCKETS = (0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)
# GPU-seconds: nothing, a GPU-minute, -ten minutes, -hour, four, a day, a week, a month.
JOB_LOST_BUCKETS = (0.0, 60.0, 600.0, 3600.0, 4 * 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0)
# Seconds to capacity: at once, a heartbeat, a victim's ack, its grace, a minute or more.
CAPACITY_BUCKETS = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)


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
        self.job_preemptions: dict[str, Buckets] = {}
        self.job_lost: dict[str, Buckets] = {}
        self.grants = GrantTimer()
        self.to_capacity: dict[tuple[str, str], Buckets] = {}  # (pool, stage)

    def observe(self, decisions: Sequence[Decision], jobs: Sequence[JobView] = ()) -> None:
        with self.lock:
            for j in jobs:
                if j.state in FINISHED_STATES:  # written once, as it finishes
                    n = self.job_preemptions.setdefault(j.pool, Buckets(JOB_PREEMPTION_BUCKETS))
                    n.observe(float(len(j.preemptions)))
                    lost = self.job_lost.setdefault(j.pool, Buckets(JOB_LOST_BUCKETS))
                    lost.observe(j.gpu_seconds_lost)
            for pool, stage, seconds in self.grants.observe(decisions):
                h = self.to_capacity.setdefault((pool, stage), Buckets(CAPACITY_BUCKETS))
                h.observe(seconds)
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


_BUCKETS = {
    cat.QUEUE_WAIT: WAIT_BUCKETS,
    cat.DECISION_DURATION: DURATION_BUCKETS,
    cat.JOB_PREEMPTIONS: JOB_PREEMPTION_BUCKETS,
    cat.JOB_GPU_SECONDS_LOST: JOB_LOST_BUCKETS,
    cat.GRANT_TIME_TO_CAPACITY: CAPACITY_BUCKETS,
}


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

    def _histograms(
        self, m: CatalogMetric, by_labels: Iterable[tuple[tuple[str, ...], Buckets]]
    ) -> list[tuple[HistogramSeries, tuple[int, ...], float]]:
        return [
            (self._histogram(m, *labels), h.cumulative(), h.sum)
            for labels, h in sorted(by_labels, key=lambda x: x[0])
        ]

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
            draining = 0.0 if p.draining_for is None else 1.0
            rows[cat.POOL_DRAINING].append((s(cat.POOL_DRAINING, p.name), draining))
            held = float(p.held_for_head)
            rows[cat.DRAIN_HELD_GPUS].append((s(cat.DRAIN_HELD_GPUS, p.name), held))
            usable = p.free_usable_ratio
            rows[cat.POOL_FREE_USABLE_RATIO].append((s(cat.POOL_FREE_USABLE_RATIO, p.name), usable))
            no_hole = float(p.no_hole_preemptions)
            rows[cat.NO_HOLE_PREEMPTIONS].append((s(cat.NO_HOLE_PREEMPTIONS, p.name), no_hole))
            declined = float(p.repacks_declined)
            rows[cat.REPACKS_DECLINED].append((s(cat.REPACKS_DECLINED, p.name), declined))
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
            histograms = {
                cat.QUEUE_WAIT: self._histograms(cat.QUEUE_WAIT, acc.wait.items()),
                cat.DECISION_DURATION: self._histograms(
                    cat.DECISION_DURATION, (((a,), h) for a, h in acc.duration.items())
                ),
                cat.JOB_PREEMPTIONS: self._histograms(
                    cat.JOB_PREEMPTIONS, (((p,), h) for p, h in acc.job_preemptions.items())
                ),
                cat.JOB_GPU_SECONDS_LOST: self._histograms(
                    cat.JOB_GPU_SECONDS_LOST, (((p,), h) for p, h in acc.job_lost.items())
                ),
                cat.GRANT_TIME_TO_CAPACITY: self._histograms(
                    cat.GRANT_TIME_TO_CAPACITY, acc.to_capacity.items()
                ),
            }

        for m in cat.SCHEDULER_METRICS:
            spec = self._specs[m]
            if m in histograms:
                yield spec.histogram_family(histograms[m])
            else:
                yield spec.family(rows[m])
            # Pools, nodes and reservations come and go: keep the series of this scrape only.
            spec.forget_unused()
