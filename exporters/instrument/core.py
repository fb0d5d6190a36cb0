"""Per-model request recording with pre-bound children: the hot path of every integration.

A ``ModelRecorder`` holds, for one model version, every child it will ever
touch, bound once at start-up (``exporters.instrument.instruments`` builds
them): one requests counter per outcome, one errors counter per reason, the
histograms with the model's own buckets, the gauges. Recording a request is
then a few attribute loads and additions; no label tuple is built and no
dictionary is searched per request.

Label values come only from the stack (model, version, pool) and from the
closed ``Outcome``/``ErrorReason`` enums, never from a request.

The children come from a store: in-process (``exporters.instrument.inprocess``,
the default) or prometheus_client's multiprocess files
(``exporters.instrument.multiprocess``). This module imports neither.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any, ParamSpec, Protocol, TypeVar, cast

from exporters.instrument.errors import RequestRejected

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


# ----------------------------------------------------------------------------- children


class CounterChild(Protocol):
    def inc(self, amount: float = 1) -> None: ...


class GaugeChild(Protocol):
    def inc(self, amount: float = 1) -> None: ...
    def dec(self, amount: float = 1) -> None: ...


class HistogramChild(Protocol):
    def observe(self, amount: float) -> None: ...


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
        "begin",
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
        requests: dict[Outcome, CounterChild],
        errors: dict[ErrorReason, CounterChild],
        duration: HistogramChild,
        queue_wait: HistogramChild,
        in_flight: GaugeChild,
        batch_size: HistogramChild,
        time_to_first_token: HistogramChild,
        inter_token_latency: HistogramChild,
        prompt_tokens: CounterChild,
        generation_tokens: CounterChild,
        running: GaugeChild,
        waiting: GaugeChild,
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
        # A request starts: counted in flight. A store may bind something cheaper.
        self.begin: Callable[[], object] = in_flight.inc

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
        """A request started with ``begin`` ended well: ``in_flight.dec()`` and ``observe_ok``."""
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
        self._rec.begin()
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
