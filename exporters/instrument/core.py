"""Per-model request metrics with pre-bound children: the hot path of every integration.

``ModelInstruments`` builds, once at start-up, one ``ModelRecorder`` per model
(and version) of the stack, with every child it will ever touch already bound:
one requests counter per outcome, one errors counter per reason, the
histograms with the model's own buckets, the gauges. Recording a request is
then a few attribute loads, a bisect and additions under one lock; no label
tuple is built and no dictionary is searched per request.

Label values come only from the stack (model, version, pool) and from the
closed ``Outcome``/``ErrorReason`` enums, never from a request. A request for a
model the stack does not declare is counted in one unlabelled counter and
creates no series.

Two value stores:

* in-process (default): a custom collector registered in the registry passed
  in. prometheus_client's own ``Histogram`` fixes buckets per family; ours fixes
  them per model, which the stack-derived buckets need.
* multiprocess (gunicorn/uvicorn workers): prometheus_client's mmap-backed
  values, one unregistered family object per model (each with its buckets);
  ``MultiProcessCollector`` merges the workers' files by name at scrape time.
  See ``exporters.instrument.multiprocess``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import threading
import time
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PCounter
from prometheus_client import Gauge as PGauge
from prometheus_client import Histogram as PHistogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from deploy.stack import Model, Stack
from exporters.catalog import model as cat
from exporters.catalog._metric import Metric as CatalogMetric
from exporters.exposition import Snapshot
from exporters.instrument.buckets import ModelBuckets, buckets_for
from exporters.instrument.errors import MultiprocessError, RequestRejected, UnknownModelError
from exporters.instrument.families import ModelFamilies

P = ParamSpec("P")
R = TypeVar("R")

Clock = Callable[[], float]


class Outcome(StrEnum):
    """How a request ended. Closed set: the ``outcome`` label takes no other value."""

    OK = "ok"
    ERROR = "error"  # the server failed it; also counted in errors by reason
    INVALID = "invalid"  # the client's fault (4xx): not held against the SLO
    CANCELLED = "cancelled"  # the client went away or the task was cancelled


class ErrorReason(StrEnum):
    """Why a request failed. Closed set: the ``reason`` label takes no other value."""

    REJECTED = "rejected"  # load shed: queue full, 429/503
    TIMEOUT = "timeout"  # deadline passed: 504/408, TimeoutError
    BACKEND = "backend"  # the model failed: 500/502, an exception
    OTHER = "other"  # any other 5xx or non-Exception exit


def classify_exception(exc: BaseException) -> tuple[Outcome, ErrorReason | None]:
    """The default mapping of an exception that left a tracked block."""
    if isinstance(exc, asyncio.CancelledError):
        return Outcome.CANCELLED, None
    if isinstance(exc, RequestRejected):
        return Outcome.ERROR, ErrorReason.REJECTED
    if isinstance(exc, TimeoutError):
        return Outcome.ERROR, ErrorReason.TIMEOUT
    if isinstance(exc, Exception):
        return Outcome.ERROR, ErrorReason.BACKEND
    return Outcome.ERROR, ErrorReason.OTHER


# ----------------------------------------------------------------------------- values


class _CounterChild(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class _GaugeChild(Protocol):
    def inc(self, amount: float = 1) -> None: ...
    def dec(self, amount: float = 1) -> None: ...


class _HistogramChild(Protocol):
    def observe(self, amount: float) -> None: ...


class _Value:
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


class _Hist:
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


@dataclass(frozen=True)
class ModelKey:
    """One served model version, with the pool it runs in (the label values of its series)."""

    model: str
    version: str
    pool: str
    llm: bool

    @property
    def labels(self) -> tuple[str, str, str]:
        return (self.model, self.version, self.pool)


class ModelRecorder:
    """Every metric of one model version, bound once: the plain API.

    ``observe`` records a finished request; ``track`` (a context manager, sync or
    async) and ``timed`` (a decorator) call it for you. Each call of these
    records exactly one request.
    """

    __slots__ = (
        "_clock",
        "_outcome_children",
        "batch_size",
        "duration",
        "errors",
        "generation_tokens",
        "in_flight",
        "inter_token_latency",
        "key",
        "prompt_tokens",
        "queue_wait",
        "requests",
        "running",
        "time_to_first_token",
        "waiting",
    )

    def __init__(
        self,
        key: ModelKey,
        clock: Clock,
        *,
        requests: dict[Outcome, _CounterChild],
        errors: dict[ErrorReason, _CounterChild],
        duration: _HistogramChild,
        queue_wait: _HistogramChild,
        in_flight: _GaugeChild,
        batch_size: _HistogramChild,
        time_to_first_token: _HistogramChild,
        inter_token_latency: _HistogramChild,
        prompt_tokens: _CounterChild,
        generation_tokens: _CounterChild,
        running: _GaugeChild,
        waiting: _GaugeChild,
    ) -> None:
        self.key = key
        self._clock = clock
        self.requests = requests
        self.errors = errors
        self.duration = duration
        self.queue_wait = queue_wait
        self.in_flight = in_flight
        self.batch_size = batch_size
        self.time_to_first_token = time_to_first_token
        self.inter_token_latency = inter_token_latency
        self.prompt_tokens = prompt_tokens
        self.generation_tokens = generation_tokens
        self.running = running
        self.waiting = waiting
        # Enum members are hashable, but a list index by a precomputed int is the
        # cheapest lookup there is; the hot path reads this list.
        self._outcome_children = [requests[o] for o in Outcome]

    # -- the plain API

    def observe(
        self,
        duration_seconds: float,
        outcome: Outcome = Outcome.OK,
        reason: ErrorReason | None = None,
        *,
        queue_wait_seconds: float | None = None,
    ) -> None:
        """Record one finished request. An ``ERROR`` without a reason counts as ``OTHER``."""
        self.duration.observe(duration_seconds)
        self.requests[outcome].inc()
        if outcome is Outcome.ERROR:
            self.errors[reason or ErrorReason.OTHER].inc()
        if queue_wait_seconds is not None:
            self.queue_wait.observe(queue_wait_seconds)

    def observe_ok(self, duration_seconds: float) -> None:
        """The common case, with nothing to decide: one histogram and one counter update."""
        self.duration.observe(duration_seconds)
        self._outcome_children[0].inc()

    def finish_ok(self, duration_seconds: float) -> None:
        """A request that was counted in flight ended well: ``in_flight.dec()`` and ``observe_ok``."""
        self.in_flight.dec()
        self.observe_ok(duration_seconds)

    def observe_batch(self, size: int) -> None:
        self.batch_size.observe(size)

    def observe_tokens(self, *, prompt: int = 0, generated: int = 0) -> None:
        if prompt:
            self.prompt_tokens.inc(prompt)
        if generated:
            self.generation_tokens.inc(generated)

    def observe_first_token(self, seconds: float) -> None:
        self.time_to_first_token.observe(seconds)

    def observe_inter_token(self, seconds: float) -> None:
        self.inter_token_latency.observe(seconds)

    def now(self) -> float:
        return self._clock()

    # -- integrations

    def track(
        self, classify: Callable[[BaseException], tuple[Outcome, ErrorReason | None]] | None = None
    ) -> Tracked:
        """A context manager (``with`` or ``async with``) that records the block as one request."""
        return Tracked(self, classify or classify_exception)

    def timed(self, fn: Callable[P, R]) -> Callable[P, R]:
        """Decorate a function or coroutine function: every call is one request."""
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[P, Awaitable[Any]], fn)

            @functools.wraps(fn)
            async def awrapper(*args: P.args, **kwargs: P.kwargs) -> Any:
                async with Tracked(self, classify_exception):
                    return await afn(*args, **kwargs)

            return cast(Callable[P, R], awrapper)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            with Tracked(self, classify_exception):
                return fn(*args, **kwargs)

        return wrapper


class Tracked:
    """One request in progress: in flight from enter to exit, recorded once at exit.

    The outcome is ``OK`` unless the block raised (classified by ``classify``) or
    the code inside called ``fail``/``invalid`` (for a failure that is answered,
    not raised, such as an HTTP 503 response). ``queued`` marks the end of the
    wait before service, giving the queue-wait observation.
    """

    __slots__ = ("_classify", "_queue_wait", "_rec", "_started", "outcome", "reason")

    def __init__(
        self,
        rec: ModelRecorder,
        classify: Callable[[BaseException], tuple[Outcome, ErrorReason | None]],
    ) -> None:
        self._rec = rec
        self._classify = classify
        self._started = 0.0
        self._queue_wait: float | None = None
        self.outcome = Outcome.OK
        self.reason: ErrorReason | None = None

    def queued(self) -> None:
        """Call when service starts: the time since enter is the queue wait."""
        self._queue_wait = self._rec.now() - self._started

    def fail(self, reason: ErrorReason) -> None:
        self.outcome, self.reason = Outcome.ERROR, reason

    def invalid(self) -> None:
        self.outcome, self.reason = Outcome.INVALID, None

    def __enter__(self) -> Tracked:
        self._rec.in_flight.inc()
        self._started = self._rec.now()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        rec = self._rec
        elapsed = rec.now() - self._started
        if e is not None:
            self.outcome, self.reason = self._classify(e)
        if self.outcome is Outcome.OK and self._queue_wait is None:
            rec.finish_ok(elapsed)
            return
        rec.in_flight.dec()
        rec.observe(elapsed, self.outcome, self.reason, queue_wait_seconds=self._queue_wait)

    async def __aenter__(self) -> Tracked:
        return self.__enter__()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(et, e, tb)


# ----------------------------------------------------------------------------- stores


class _InProcessRecorder(ModelRecorder):
    """The in-process store's recorder: the common paths update all their values
    under one acquisition of the model's lock instead of one per value."""

    __slots__ = ("_dur", "_flight", "_lock", "_ok")

    def __init__(self, key: ModelKey, clock: Clock, lock: threading.Lock, **parts: Any) -> None:
        super().__init__(key, clock, **parts)
        self._lock = lock
        self._dur: _Hist = parts["duration"]
        self._ok: _Value = parts["requests"][Outcome.OK]
        self._flight: _Value = parts["in_flight"]

    def observe_ok(self, duration_seconds: float) -> None:
        h = self._dur
        i = bisect_left(h.bounds, duration_seconds)
        with self._lock:
            h.counts[i] += 1
            h.sum += duration_seconds
            self._ok.value += 1

    def finish_ok(self, duration_seconds: float) -> None:
        h = self._dur
        i = bisect_left(h.bounds, duration_seconds)
        with self._lock:
            self._flight.value -= 1
            h.counts[i] += 1
            h.sum += duration_seconds
            self._ok.value += 1


class _InProcessStore(Collector):
    """The default store: our children, exposed by ``collect`` as catalog families.

    ``generate_latest`` builds a sample object per bucket and re-validates and
    re-escapes every label of every sample at every scrape; here each
    recorder's series are built once, with the recorder
    (``exporters.instrument.families``), and a scrape reads the values and
    renders them directly (``exporters.exposition``).
    """

    def __init__(self) -> None:
        self._families = ModelFamilies()
        self.unknown = _Value(threading.Lock())

    def add(self, key: ModelKey, b: ModelBuckets, clock: Clock) -> ModelRecorder:
        lock = threading.Lock()

        def v() -> _Value:
            return _Value(lock)

        parts: dict[str, Any] = {
            "requests": {o: v() for o in Outcome},
            "errors": {r: v() for r in ErrorReason},
            "duration": _Hist(b.request_duration, lock),
            "queue_wait": _Hist(b.queue_wait, lock),
            "in_flight": v(),
            "batch_size": _Hist(b.batch_size, lock),
            "time_to_first_token": _Hist(b.time_to_first_token, lock),
            "inter_token_latency": _Hist(b.inter_token_latency, lock),
            "prompt_tokens": v(),
            "generation_tokens": v(),
            "running": v(),
            "waiting": v(),
        }
        self._families.add(key.labels, key.llm, parts)
        return _InProcessRecorder(key, clock, lock, **parts)

    def collect(self) -> Iterable[Metric]:
        return self._families.build(self.unknown.value)


class _MultiprocessStore:
    """prometheus_client's mmap-backed values; one unregistered family object per model.

    Families are created with ``registry=None``: the values live in the worker's
    files, and the serving registry reads them all through ``MultiProcessCollector``.
    """

    def add(self, key: ModelKey, b: ModelBuckets, clock: Clock) -> ModelRecorder:
        names = list(cat.MODEL_LABELS)
        lv = key.labels

        def counter(m: CatalogMetric, extra: str | None = None) -> PCounter:
            return PCounter(m.name, m.help, names + ([extra] if extra else []), registry=None)

        def gauge(m: CatalogMetric) -> _GaugeChild:
            # livesum: the sum over workers that are alive; a dead worker's
            # in-flight requests are gone with it.
            g = PGauge(m.name, m.help, names, registry=None, multiprocess_mode="livesum")
            return g.labels(*lv)

        def hist(m: CatalogMetric, bounds: tuple[float, ...]) -> _HistogramChild:
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


# ----------------------------------------------------------------------------- the entry point


class ModelInstruments:
    """Recorders for every model of the stack, registered once.

    ``registry`` receives the collector (in-process mode). With
    ``multiprocess=True`` the values go to prometheus_client's multiprocess files
    instead (``PROMETHEUS_MULTIPROC_DIR`` must have been set before
    prometheus_client was imported) and ``registry`` is not written to; serve
    ``exporters.instrument.multiprocess.multiprocess_registry()`` instead.
    """

    def __init__(
        self,
        models: Stack | Iterable[Model],
        registry: CollectorRegistry | None,
        *,
        clock: Clock = time.perf_counter,
        multiprocess: bool = False,
    ) -> None:
        model_list = models.models if isinstance(models, Stack) else tuple(models)
        self.clock = clock
        self._by_key: dict[tuple[str, str], ModelRecorder] = {}
        self._latest: dict[str, ModelRecorder] = {}
        store: _InProcessStore | _MultiprocessStore
        store = _MultiprocessStore() if multiprocess else _InProcessStore()
        self._unknown: _CounterChild
        if isinstance(store, _MultiprocessStore):
            unknown = cat.MODEL_UNKNOWN_REQUESTS
            self._unknown = PCounter(unknown.name, unknown.help, registry=None)
        else:
            self._unknown = store.unknown
        self._store = store
        for m in model_list:
            key = ModelKey(m.name, m.version, m.pool, m.llm)
            rec = store.add(key, buckets_for(m), clock)
            self._by_key[(m.name, m.version)] = rec
            # Without a version, a request means the version the stack lists last.
            self._latest[m.name] = rec
        if isinstance(store, _InProcessStore) and registry is not None:
            registry.register(store)

    def snapshot(self) -> Snapshot:
        """This instance's metrics as they are now, for ``exporters.exposition.metrics_response``.
        In-process mode only: in multiprocess mode the values are in files, serve
        ``multiprocess_registry()``."""
        if not isinstance(self._store, _InProcessStore):
            raise MultiprocessError(
                "multiprocess values are read from files: serve multiprocess_registry()"
            )
        return Snapshot(self._store.collect())

    def render(self) -> bytes:
        """This instance's metrics in the classic Prometheus text format (what
        ``generate_latest`` would write for them, many times faster)."""
        return self.snapshot().body()

    def recorder(self, model: str, version: str | None = None) -> ModelRecorder:
        """The recorder of a declared model; raises ``UnknownModelError`` otherwise (start-up use)."""
        rec = self.get(model, version)
        if rec is None:
            raise UnknownModelError(model, version)
        return rec

    def get(self, model: str, version: str | None = None) -> ModelRecorder | None:
        """The recorder, or ``None`` for a model the stack does not declare (request-path use).

        ``None`` is counted once in the unlabelled unknown-requests counter: a
        hostile path can make the counter grow, never the series count.
        """
        rec = self._latest.get(model) if version is None else self._by_key.get((model, version))
        if rec is None:
            self._unknown.inc()
        return rec

    def recorders(self) -> Iterator[ModelRecorder]:
        return iter(self._by_key.values())

    def timed(
        self, model: str, version: str | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """``@instruments.timed("risk-scorer")``: every call of the function is one request."""
        rec = self.recorder(model, version)
        return rec.timed

    def track(self, model: str, version: str | None = None) -> Tracked:
        """``with instruments.track("risk-scorer"):`` — one request per block."""
        return self.recorder(model, version).track()
