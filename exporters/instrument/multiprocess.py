"""prometheus_client's multiprocess mode, for servers with several worker processes.

``MultiprocessStore`` binds each recorder to prometheus_client's mmap-backed
values; the helpers below serve and clean them.

Set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory *before* any process
imports prometheus_client (gunicorn: in the master's environment), create
``ModelInstruments(stack, None, multiprocess=True)`` in each worker, serve
``multiprocess_registry()`` on ``/metrics`` (from any worker), and call
``mark_process_dead(pid)`` from the master's ``child_exit`` hook.

What multiprocess mode does and does not do (see the README):

* counters and histograms are summed over every process that ever wrote them,
  dead ones included, so totals never go backwards when a worker is replaced;
* the in-flight/running/waiting gauges use ``livesum``: only live workers
  count, which needs ``mark_process_dead`` to drop a dead worker's file;
* the directory grows by one set of files per worker pid; a restart with the
  same directory must empty it first, or old values are served again;
* each scrape reads every file: exposition cost grows with workers x series.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PCounter
from prometheus_client import Gauge as PGauge
from prometheus_client import Histogram as PHistogram
from prometheus_client import multiprocess as _mp

from exporters.catalog import Metric as CatalogMetric
from exporters.catalog import model as cat
from exporters.instrument.buckets import ModelBuckets
from exporters.instrument.core import (
    Clock,
    ErrorReason,
    GaugeChild,
    HistogramChild,
    ModelKey,
    ModelRecorder,
    Outcome,
)
from exporters.instrument.errors import MultiprocessError

ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir(environ: dict[str, str] | None = None) -> str | None:
    """The directory multiprocess mode writes to, or ``None`` when it is off."""
    env = os.environ if environ is None else environ
    return env.get(ENV) or None


def multiprocess_registry(path: str | None = None) -> CollectorRegistry:
    """A registry that reads every worker's files: serve this on ``/metrics``."""
    path = path or multiprocess_dir()
    if path is None or not os.path.isdir(path):
        raise MultiprocessError(f"{ENV} must name an existing directory, got {path!r}")
    registry = CollectorRegistry()
    _mp.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """Drop a dead worker's live-gauge files (gunicorn ``child_exit`` hook)."""
    _mp.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


class MultiprocessStore:
    """prometheus_client's mmap-backed values; one unregistered family object per model.

    Families are created with ``registry=None``: the values live in the worker's
    files, and the serving registry reads them all through ``MultiProcessCollector``.
    """

    def add(self, key: ModelKey, b: ModelBuckets, clock: Clock) -> ModelRecorder:
        names = list(cat.MODEL_LABELS)
        lv = key.labels

        def counter(m: CatalogMetric, extra: str | None = None) -> PCounter:
            return PCounter(m.name, m.help, names + ([extra] if extra else []), registry=None)

        def gauge(m: CatalogMetric) -> GaugeChild:
            # livesum: the sum over workers that are alive; a dead worker's
            # in-flight requests are gone with it.
            g = PGauge(m.name, m.help, names, registry=None, multiprocess_mode="livesum")
            return g.labels(*lv)

        def hist(m: CatalogMetric, bounds: tuple[float, ...]) -> HistogramChild:
            return PHistogram(m.name, m.help, names, registry=None, buckets=bounds).labels(*lv)

        req = counter(cat.MODEL_REQUESTS, "outcome")
        err = counter(cat.MODEL_ERRORS, "reason")
        return ModelRecorder(
            key,
            clock,
            requests={o: req.labels(*lv, o.value) for o in Outcome},
            errors={r: err.labels(*lv, r.value) for r in ErrorReason},
            duration=hist(cat.MODEL_REQUEST_DURATION, b.request_duration),
            queue_wait=hist(cat.MODEL_QUEUE_WAIT, b.queue_wait),
            in_flight=gauge(cat.MODEL_IN_FLIGHT),
            batch_size=hist(cat.MODEL_BATCH_SIZE, b.batch_size),
            time_to_first_token=hist(cat.MODEL_TIME_TO_FIRST_TOKEN, b.time_to_first_token),
            inter_token_latency=hist(cat.MODEL_INTER_TOKEN_LATENCY, b.inter_token_latency),
            prompt_tokens=counter(cat.MODEL_PROMPT_TOKENS).labels(*lv),
            generation_tokens=counter(cat.MODEL_GENERATION_TOKENS).labels(*lv),
            running=gauge(cat.MODEL_REQUESTS_RUNNING),
            waiting=gauge(cat.MODEL_REQUESTS_WAITING),
        )
