"""The in-process store (the default): plain values under one lock per model.

prometheus_client's own ``Histogram`` fixes buckets per family; these fix them
per model, which the stack-derived buckets need. The store is a collector:
``collect`` folds every recorder's journal and yields the catalog families
(``exporters.instrument.families``), which ``exporters.exposition`` renders.
"""

from __future__ import annotations

import functools
import itertools
import threading
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from exporters.instrument.buckets import ModelBuckets
from exporters.instrument.core import Clock, ErrorReason, ModelKey, ModelRecorder, Outcome
from exporters.instrument.families import ModelFamilies

# Durations a recorder's journal holds before the request that reaches this many folds
# them: bounds the journal's memory, and a fold of this size runs in a few tens of us.
FOLD_AT = 256


class Value:
    """A counter or gauge child of the in-process store.

    A plain float under a lock shared by every child of one model: a threaded
    server stays exact, and an uncontended acquire costs tens of nanoseconds.
    """

    __slots__ = ("_lock", "value")

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        with self._lock:
            self.value += amount

    def dec(self, amount: float = 1) -> None:
        with self._lock:
            self.value -= amount


class Hist:
    """A histogram child of the in-process store: per-bucket counts (not cumulative) and a sum."""

    __slots__ = ("_lock", "bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...], lock: threading.Lock) -> None:
        self._lock = lock
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, amount: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le is "<=").
        i = bisect_left(self.bounds, amount)
        with self._lock:
            self.counts[i] += 1
            self.sum += amount

    def snapshot(self) -> tuple[list[int], float]:
        with self._lock:
            return list(self.counts), self.sum


class InFlight:
    """The in-flight gauge: ``inc`` and ``dec`` as any gauge, plus ``start``, the request
    path's increment, which takes no lock.

    ``start`` is ``next`` of an ``itertools.count``: one C call, atomic under the
    GIL. Reading the count costs a ``next`` too; ``_reads`` takes those back out.
    """

    __slots__ = ("_lock", "_reads", "_started", "base", "start")

    def __init__(self, lock: threading.Lock) -> None:
        self._lock = lock
        self._started = itertools.count()
        self._reads = 0
        self.base = 0.0  # every change but the lock-free starts (ends are subtracted here)
        self.start: Callable[[], object] = functools.partial(next, self._started)

    def inc(self, amount: float = 1) -> None:
        with self._lock:
            self.base += amount

    def dec(self, amount: float = 1) -> None:
        with self._lock:
            self.base -= amount

    @property
    def value(self) -> float:
        with self._lock:
            started = next(self._started) - self._reads
            self._reads += 1
            return self.base + started


class InProcessRecorder(ModelRecorder):
    """The in-process store's recorder, with a request path that takes no lock.

    A request begins with ``InFlight.start`` and, when it ends well, appends its
    duration to a journal (``collections.deque``: append and popleft are atomic
    under the GIL); ``fold`` moves the journal into the histogram, the ok counter
    and the in-flight gauge under the model's lock, once ``FOLD_AT`` durations
    wait and before every scrape. A threaded server stays exact; a request pays
    two C calls and a length check instead of two lock round trips (measured in
    ``benchmarks/bench_model_exporter.py``).
    """

    __slots__ = ("_dur", "_flight", "_journal", "_lock", "_ok")

    def __init__(self, key: ModelKey, clock: Clock, lock: threading.Lock, **parts: Any) -> None:
        super().__init__(key, clock, **parts)
        self._lock = lock
        self._dur: Hist = parts["duration"]
        self._ok: Value = parts["requests"][Outcome.OK]
        self._flight: InFlight = parts["in_flight"]
        self._journal: deque[float] = deque()
        self.begin = self._flight.start

    def observe_ok(self, duration_seconds: float) -> None:
        h = self._dur
        i = bisect_left(h.bounds, duration_seconds)
        with self._lock:
            h.counts[i] += 1
            h.sum += duration_seconds
            self._ok.value += 1

    def finish_ok(self, duration_seconds: float) -> None:
        journal = self._journal
        journal.append(duration_seconds)
        if len(journal) >= FOLD_AT:
            self.fold()

    def fold(self) -> None:
        """Move the journal's durations into the values (each popped exactly once, by one fold)."""
        journal, h = self._journal, self._dur
        bounds, counts = h.bounds, h.counts
        n, total = 0, 0.0
        with self._lock:
            while journal:
                d = journal.popleft()
                counts[bisect_left(bounds, d)] += 1
                total += d
                n += 1
            h.sum += total
            self._ok.value += n
            self._flight.base -= n


class InProcessStore(Collector):
    """The default store: our children, exposed by ``collect`` as catalog families.

    ``generate_latest`` builds a sample object per bucket and re-validates and
    re-escapes every label of every sample at every scrape; here each
    recorder's series are built once, with the recorder
    (``exporters.instrument.families``), and a scrape reads the values and
    renders them directly (``exporters.exposition``).
    """

    def __init__(self) -> None:
        self._families = ModelFamilies()
        self._recorders: list[InProcessRecorder] = []
        self.unknown = Value(threading.Lock())

    def add(self, key: ModelKey, b: ModelBuckets, clock: Clock) -> ModelRecorder:
        lock = threading.Lock()

        def v() -> Value:
            return Value(lock)

        parts: dict[str, Any] = {
            "requests": {o: v() for o in Outcome},
            "errors": {r: v() for r in ErrorReason},
            "duration": Hist(b.request_duration, lock),
            "queue_wait": Hist(b.queue_wait, lock),
            "in_flight": InFlight(lock),
            "batch_size": Hist(b.batch_size, lock),
            "time_to_first_token": Hist(b.time_to_first_token, lock),
            "inter_token_latency": Hist(b.inter_token_latency, lock),
            "prompt_tokens": v(),
            "generation_tokens": v(),
            "running": v(),
            "waiting": v(),
        }
        self._families.add(key.labels, key.llm, parts)
        rec = InProcessRecorder(key, clock, lock, **parts)
        self._recorders.append(rec)
        return rec

    def collect(self) -> Iterable[Metric]:
        for rec in self._recorders:
            rec.fold()
        return self._families.build(self.unknown.value)
