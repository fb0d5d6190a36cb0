"""A model server simulator whose latency comes from real queueing on its pool's GPUs.

Latency model
-------------
Each model is served by the GPUs its pool holds *now*: ``gpus_for_pool(pool)``
is re-read whenever a request arrives or finishes, so when the scheduler lends
the pool GPUs the extra capacity takes effect at once.

* The pool's GPUs form ``ceil(gpus / gpus_per_replica)`` replicas (a replica of
  a large model spans several GPUs); each replica serves
  ``replica_concurrency`` requests at a time. These are the pool's *slots*.
* A request waits (real asyncio waiting, first come first served) until a slot
  is free, then holds it for a service time drawn from a gamma distribution
  with mean ``service_time_seconds`` and shape ``service_time_shape`` (shape 16:
  coefficient of variation 0.25), multiplied by the model's injected slowdown.
* A request that waited ``queue_timeout_seconds`` is answered 504 (timeout);
  one that finds ``max_queue`` requests waiting is answered 503 (rejected).
  Both bound memory and latency under overload.
* LLM models hold the slot for a prefill (the service time) and then one
  ``token_time_seconds`` decode step per generated token, observing time to
  first token, inter-token latency and token counts.

The replica's numbers are the stack's ``models[].serving`` (what the scheduler sizes
P0's grants by, ``scheduler.core.capacity``), so what the scheduler predicts and what
the demo measures come from one description; arguments override them (tests).

The pool is thus an M/G/c queue with c = slots. With the stack's (8 ms, 4
GPUs per replica, concurrency 1), the demo's ``risk-scorer`` (p0-risk, 8 GPUs, so
2 slots) has a capacity of 250 req/s. At 125 req/s (0.5x) queueing theory gives
a p99 of 22 ms and the loopback HTTP path adds a few ms (about 30 ms measured);
at 350 req/s (1.4x) the queue grows without bound and p99 passes the 50 ms
threshold within a second, reaching the 2 s queue timeout; with 16 GPUs (4
slots, utilisation 0.7) p99 is back at about 30 ms. ``benchmarks/
bench_model_exporter.py`` measures these three points. The rates stay in the
low hundreds per second, which a 2-core machine serves next to Prometheus.

``busy_ratio(pool)`` is the fraction of the pool's slots busy, smoothed with a
2 s time constant (an instantaneous count of 2 slots would flicker between 0,
0.5 and 1); it drives the simulated GPU utilisation.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CollectorRegistry

from deploy.stack import Model, Stack
from exporters.exposition import metrics_handler
from exporters.instrument import ModelInstruments, ModelRecorder, instrument_middleware
from exporters.modelserver.errors import UnknownModel

UTILISATION_TIME_CONSTANT_SECONDS = 2.0
# How often a stalled pool (requests waiting, none running) re-reads its GPU count.
CAPACITY_POLL_SECONDS = 0.05
# An LLM request generates between half and 1.5x this many tokens, one decode step each.
_MEAN_GENERATED_TOKENS = 16


@dataclass(frozen=True)
class Fault:
    """Injected into one model: a share of requests fail (500), service takes ``slowdown`` times longer."""

    error_ratio: float = 0.0
    slowdown: float = 1.0


class ServingPool:
    """The slots of one pool: a FIFO semaphore whose size is re-read on every change."""

    def __init__(self, capacity: Callable[[], int], clock: Callable[[], float]) -> None:
        self._capacity = capacity
        self._clock = clock
        self.busy = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._ewma = 0.0
        self._last = clock()
        self._watcher: asyncio.Task[None] | None = None

    @property
    def waiting(self) -> int:
        return len(self._waiters)

    def capacity(self) -> int:
        return self._capacity()

    def _instant(self, cap: int) -> float:
        return min(1.0, self.busy / cap) if cap > 0 else 0.0

    def _advance(self) -> None:
        """Fold the busy fraction since the last change into the moving average."""
        now = self._clock()
        dt = now - self._last
        if dt > 0:
            inst = self._instant(self._capacity())
            self._ewma += (1.0 - math.exp(-dt / UTILISATION_TIME_CONSTANT_SECONDS)) * (
                inst - self._ewma
            )
            self._last = now

    def busy_ratio(self) -> float:
        dt = max(0.0, self._clock() - self._last)
        inst = self._instant(self._capacity())
        return self._ewma + (1.0 - math.exp(-dt / UTILISATION_TIME_CONSTANT_SECONDS)) * (
            inst - self._ewma
        )

    def _wake(self) -> None:
        cap = self._capacity()
        while self._waiters and self.busy < cap:
            # Abandoned waiters remove themselves at once: every future here is pending.
            fut = self._waiters.popleft()
            # The slot is handed over here, so a later arrival cannot overtake.
            self.busy += 1
            fut.set_result(None)

    async def acquire(self, timeout: float, max_queue: int) -> bool | None:
        """Take a slot: True, or False after ``timeout`` seconds, or None if the queue is full."""
        self._advance()
        self._wake()
        if not self._waiters and self.busy < self._capacity():
            self.busy += 1
            return True
        if len(self._waiters) >= max_queue:
            return None
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        self._waiters.append(fut)
        self._watch_if_stalled()
        try:
            await asyncio.wait((fut,), timeout=timeout)
        except asyncio.CancelledError:
            self._abandon(fut)
            raise
        if not fut.done():
            self._abandon(fut)
            return False
        return True

    def _watch_if_stalled(self) -> None:
        """With requests waiting and none running no release will come to re-read the
        capacity: poll it until one does, so GPUs given to an idle pool serve at once."""
        if self.busy == 0 and self._waiters and (self._watcher is None or self._watcher.done()):
            self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        # Ends when the waiters are served or have timed out, or a slot is busy.
        while self._waiters and self.busy == 0:
            await asyncio.sleep(CAPACITY_POLL_SECONDS)
            self._advance()
            self._wake()

    def _abandon(self, fut: asyncio.Future[None]) -> None:
        if fut.done():
            # Granted just as the wait ended: give the slot back.
            self.release()
            return
        fut.cancel()
        self._waiters.remove(fut)

    def release(self) -> None:
        self._advance()
        self.busy -= 1
        self._wake()
        self._watch_if_stalled()


class ModelServerSim:
    """Serves every model of the stack with simulated latency, instrumented with the library.

    The model metrics are registered in ``registry`` (read them there in tests);
    ``GET /metrics`` serves the instruments' own snapshot, so
    collectors registered there by someone else are not on this endpoint.
    """

    def __init__(
        self,
        stack: Stack,
        registry: CollectorRegistry,
        gpus_for_pool: Callable[[str], int],
        *,
        service_time_seconds: float | None = None,
        service_time_shape: float = 16.0,
        gpus_per_replica: int | None = None,
        replica_concurrency: int | None = None,
        queue_timeout_seconds: float = 2.0,
        max_queue: int = 2000,
        token_time_seconds: float = 0.002,
        seed: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # What one replica serves: the stack's ``models[].serving`` (the numbers the
        # scheduler sizes P0's grants by), unless given here; without either, 8 ms on
        # one replica of 4 GPUs serving one request at a time.
        serving = next((m.serving for m in stack.models if m.serving is not None), None)
        if service_time_seconds is None:
            service_time_seconds = serving.service_time_seconds if serving else 0.008
        if gpus_per_replica is None:
            gpus_per_replica = serving.gpus_per_replica if serving else 4
        if replica_concurrency is None:
            replica_concurrency = serving.replica_concurrency if serving else 1
        if service_time_seconds <= 0 or service_time_shape <= 0:
            raise ValueError("service time and shape must be > 0")
        if gpus_per_replica < 1 or replica_concurrency < 1:
            raise ValueError("gpus_per_replica and replica_concurrency must be >= 1")
        self.stack = stack
        self.registry = registry
        self.gpus_for_pool = gpus_for_pool
        self.service_time_seconds = service_time_seconds
        self.service_time_shape = service_time_shape
        self.gpus_per_replica = gpus_per_replica
        self.replica_concurrency = replica_concurrency
        self.queue_timeout_seconds = queue_timeout_seconds
        self.max_queue = max_queue
        self.token_time_seconds = token_time_seconds
        self._rng = random.Random(seed)
        self.instruments = ModelInstruments(stack, registry)
        self._models: dict[str, Model] = {m.name: m for m in stack.models}
        self._faults: dict[str, Fault] = {}
        self.pools: dict[str, ServingPool] = {
            p: ServingPool(self._slots_of(p), clock) for p in {m.pool for m in stack.models}
        }

    # -- model of the GPUs

    def slots(self, gpus: int) -> int:
        """Serving slots that ``gpus`` GPUs give."""
        if gpus <= 0:
            return 0
        return math.ceil(gpus / self.gpus_per_replica) * self.replica_concurrency

    def _slots_of(self, pool: str) -> Callable[[], int]:
        return lambda: self.slots(self.gpus_for_pool(pool))

    def _model(self, name: str) -> Model:
        m = self._models.get(name)
        if m is None:
            raise UnknownModel(name)
        return m

    def mean_service_seconds(self, model: str) -> float:
        m = self._model(model)
        base = self.service_time_seconds
        if m.llm:
            base += self.token_time_seconds * _MEAN_GENERATED_TOKENS
        return base * self._faults.get(model, Fault()).slowdown

    def capacity_qps(self, model: str, gpus: int) -> float:
        """The request rate ``gpus`` GPUs sustain for ``model`` (utilisation 1)."""
        return self.slots(gpus) / self.mean_service_seconds(model)

    def busy_ratio(self, pool: str) -> float:
        """Fraction of the pool's serving slots busy (smoothed); 0 for a pool that serves no model."""
        sp = self.pools.get(pool)
        return 0.0 if sp is None else sp.busy_ratio()

    def inject(self, model: str, *, error_ratio: float = 0.0, slowdown: float = 1.0) -> None:
        """From now on ``error_ratio`` of ``model``'s requests fail and service is ``slowdown`` x slower."""
        self._model(model)
        if not 0.0 <= error_ratio <= 1.0 or slowdown <= 0:
            raise ValueError("error_ratio must be in [0, 1] and slowdown > 0")
        self._faults[model] = Fault(error_ratio, slowdown)

    # -- HTTP

    def app(self) -> web.Application:
        app = web.Application(middlewares=[instrument_middleware(self.instruments)])
        app.router.add_post("/v1/models/{model}/infer", self._infer)
        # The instruments' own snapshot, rendered directly: the same text
        # generate_latest(registry) writes for them, many times faster.
        app.router.add_get("/metrics", metrics_handler(self.instruments))
        app.router.add_get("/healthz", self._healthz)
        return app

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "pools": {
                    p: {"slots": sp.capacity(), "busy": sp.busy, "waiting": sp.waiting}
                    for p, sp in self.pools.items()
                },
            }
        )

    async def _infer(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        model = self._models.get(name)
        if model is None:
            return web.json_response({"error": "unknown model"}, status=404)
        rec = self.instruments.recorder(model.name, model.version)
        fault = self._faults.get(name, Fault())
        pool = self.pools[model.pool]
        arrived = rec.now()
        if model.llm:
            rec.waiting.inc()
        try:
            got = await pool.acquire(self.queue_timeout_seconds, self.max_queue)
        finally:
            if model.llm:
                rec.waiting.dec()
        rec.queue_wait.observe(rec.now() - arrived)
        if got is None:
            return web.json_response({"error": "queue full"}, status=503)
        if not got:
            return web.json_response({"error": "timed out waiting for a GPU"}, status=504)
        try:
            rec.observe_batch(1)  # the simulator does not batch: every execution serves one request
            service = self._rng.gammavariate(
                self.service_time_shape, self.service_time_seconds / self.service_time_shape
            )
            await asyncio.sleep(service * fault.slowdown)
            if model.llm:
                return await self._decode(rec, arrived, fault)
            failed = fault.error_ratio > 0 and self._rng.random() < fault.error_ratio
        finally:
            pool.release()
        if failed:
            return web.json_response({"error": "injected backend failure"}, status=500)
        return web.json_response(
            {"model": model.name, "version": model.version, "score": self._rng.random()}
        )

    async def _decode(self, rec: ModelRecorder, arrived: float, fault: Fault) -> web.Response:
        prompt = self._rng.randint(16, 512)
        tokens = self._rng.randint(_MEAN_GENERATED_TOKENS // 2, _MEAN_GENERATED_TOKENS * 3 // 2)
        rec.running.inc()
        try:
            rec.observe_first_token(rec.now() - arrived)
            rec.observe_tokens(prompt=prompt)
            last = rec.now()
            for _ in range(tokens - 1):
                await asyncio.sleep(self.token_time_seconds * fault.slowdown)
                now = rec.now()
                rec.observe_inter_token(now - last)
                last = now
            rec.observe_tokens(generated=tokens)
        finally:
            rec.running.dec()
        if fault.error_ratio > 0 and self._rng.random() < fault.error_ratio:
            return web.json_response({"error": "injected backend failure"}, status=500)
        return web.json_response(
            {"model": rec.key.model, "prompt_tokens": prompt, "tokens": tokens}
        )
