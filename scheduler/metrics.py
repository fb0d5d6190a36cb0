"""The scheduler's metrics: a custom Collector over the runtime's state.

Gauges are read from the core at scrape time (nothing to keep in sync);
counters and histograms are accumulated by the runtime from the decisions it
records (``Accumulator.observe``). Names come from the catalog only.
"""

from __future__ import annotations

import bisect
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from exporters.catalog import scheduler as cat
from scheduler.core.model import Decision

if TYPE_CHECKING:
    from scheduler.runtime import SchedulerRuntime

WAIT_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0)
DURATION_BUCKETS = (1e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 5e-2, 0.25, 1.0)


class _Histogram:
    def __init__(self, buckets: Sequence[float]) -> None:
        self.bounds = tuple(buckets)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, v: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, v)] += 1
        self.sum += v

    def buckets(self) -> list[tuple[str, float]]:
        out, acc = [], 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            acc += n
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(acc)))
        return out


class Accumulator:
    """Counters and histograms fed from recorded decisions and timed calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.decisions: Counter[tuple[str, str]] = Counter()
        self.preemptions: Counter[tuple[str, str]] = Counter()
        self.lost: defaultdict[str, float] = defaultdict(float)
        self.scale: Counter[tuple[str, str, str]] = Counter()
        self.wait: dict[tuple[str, str], _Histogram] = {}
        self.duration: dict[str, _Histogram] = {}

    def observe(self, decisions: Sequence[Decision]) -> None:
        with self._lock:
            for d in decisions:
                self.decisions[(d.action, d.result)] += 1
                if d.action == "preempt" and d.result == "ok":
                    self.preemptions[(d.cause, d.priority)] += 1
                elif d.action == "release" and d.gpu_seconds_lost > 0:
                    self.lost[d.pool] += d.gpu_seconds_lost
                elif d.action == "place":
                    h = self.wait.setdefault((d.pool, d.priority), _Histogram(WAIT_BUCKETS))
                    h.observe(d.waited_seconds)
                elif d.action in ("scale_up", "scale_down"):
                    direction = "up" if d.action == "scale_up" else "down"
                    self.scale[(d.pool, direction, d.result)] += 1

    def time(self, action: str, seconds: float) -> None:
        with self._lock:
            self.duration.setdefault(action, _Histogram(DURATION_BUCKETS)).observe(seconds)


class SchedulerCollector(Collector):
    def __init__(self, runtime: SchedulerRuntime) -> None:
        self._rt = runtime

    def collect(self) -> Iterator[Metric]:
        snap = self._rt.metrics_snapshot()
        acc = self._rt.accumulator

        info = InfoMetricFamily(cat.GPU_POOL_INFO.name, cat.GPU_POOL_INFO.help, labels=())
        for uuid, (node, pool) in sorted(snap.assignments.items()):
            info.add_metric([], {"uuid": uuid, "node": node, "pool": pool})
        yield info

        pool_gpus = GaugeMetricFamily(
            cat.POOL_GPUS.name, cat.POOL_GPUS.help, labels=cat.POOL_GPUS.labels
        )
        nodes = GaugeMetricFamily(
            cat.POOL_NODES.name, cat.POOL_NODES.help, labels=cat.POOL_NODES.labels
        )
        for p in snap.pools:
            for state in ("owned", "borrowed", "lent", "idle"):
                pool_gpus.add_metric([p["name"], state], float(p[state]))
            nodes.add_metric([p["name"]], float(p["nodes"]))
        yield pool_gpus
        yield nodes

        qlen = GaugeMetricFamily(
            cat.QUEUE_LENGTH.name, cat.QUEUE_LENGTH.help, labels=cat.QUEUE_LENGTH.labels
        )
        oldest = GaugeMetricFamily(
            cat.QUEUE_OLDEST_WAIT.name,
            cat.QUEUE_OLDEST_WAIT.help,
            labels=cat.QUEUE_OLDEST_WAIT.labels,
        )
        for (pool, prio), (n, oldest_wait) in sorted(snap.queues.items()):
            qlen.add_metric([pool, prio], float(n))
            oldest.add_metric([pool, prio], oldest_wait)
        yield qlen
        yield oldest

        jobs = GaugeMetricFamily(cat.JOBS.name, cat.JOBS.help, labels=cat.JOBS.labels)
        for (pool, state), n in sorted(snap.jobs.items()):
            jobs.add_metric([pool, state], float(n))
        yield jobs

        res_active = GaugeMetricFamily(
            cat.RESERVATION_ACTIVE.name,
            cat.RESERVATION_ACTIVE.help,
            labels=cat.RESERVATION_ACTIVE.labels,
        )
        res_ok = GaugeMetricFamily(
            cat.RESERVATION_SATISFIED.name,
            cat.RESERVATION_SATISFIED.help,
            labels=cat.RESERVATION_SATISFIED.labels,
        )
        for r in snap.reservations:
            res_active.add_metric([r["name"], r["pool"]], 1.0 if r["active"] else 0.0)
            res_ok.add_metric([r["name"], r["pool"]], 1.0 if r["satisfied"] else 0.0)
        yield res_active
        yield res_ok

        with acc._lock:
            pre = CounterMetricFamily(
                cat.PREEMPTIONS.name, cat.PREEMPTIONS.help, labels=cat.PREEMPTIONS.labels
            )
            for (reason, prio), n in sorted(acc.preemptions.items()):
                pre.add_metric([reason, prio], float(n))
            lost = CounterMetricFamily(
                cat.GPU_SECONDS_LOST.name,
                cat.GPU_SECONDS_LOST.help,
                labels=cat.GPU_SECONDS_LOST.labels,
            )
            for pool in snap.pool_names:
                lost.add_metric([pool], acc.lost.get(pool, 0.0))
            dec = CounterMetricFamily(
                cat.DECISIONS.name, cat.DECISIONS.help, labels=cat.DECISIONS.labels
            )
            for (action, result), n in sorted(acc.decisions.items()):
                dec.add_metric([action, result], float(n))
            scale = CounterMetricFamily(
                cat.SCALE_EVENTS.name, cat.SCALE_EVENTS.help, labels=cat.SCALE_EVENTS.labels
            )
            for (pool, direction, result), n in sorted(acc.scale.items()):
                scale.add_metric([pool, direction, result], float(n))
            wait = HistogramMetricFamily(
                cat.QUEUE_WAIT.name, cat.QUEUE_WAIT.help, labels=cat.QUEUE_WAIT.labels
            )
            for (pool, prio), h in sorted(acc.wait.items()):
                wait.add_metric([pool, prio], h.buckets(), h.sum)
            dur = HistogramMetricFamily(
                cat.DECISION_DURATION.name,
                cat.DECISION_DURATION.help,
                labels=cat.DECISION_DURATION.labels,
            )
            for action, h in sorted(acc.duration.items()):
                dur.add_metric([action], h.buckets(), h.sum)
        cycles = CounterMetricFamily(cat.CYCLES_REFUSED.name, cat.CYCLES_REFUSED.help, labels=())
        cycles.add_metric([], float(snap.cycles_refused))
        yield pre
        yield lost
        yield cycles
        yield dec
        yield scale
        yield wait
        yield dur
