"""An open-loop load generator: Poisson arrivals at a settable rate, client-side latencies.

Open loop means arrivals do not wait for answers: when the server slows down,
requests pile up, as with real clients, instead of the generator politely
slowing down with it (which would hide the latency it is meant to show).
It is bounded all the same: at most ``max_outstanding`` requests in flight
(arrivals beyond are counted in ``dropped``, not sent) and at most
``max_samples`` latencies kept (the most recent).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import deque
from dataclasses import dataclass

import aiohttp

# Arrivals overdue by more than this (an event loop stalled by something else)
# are skipped rather than sent as one burst.
MAX_CATCH_UP_SECONDS = 1.0
# How often a generator at rate 0 looks whether it has been given a rate.
IDLE_POLL_SECONDS = 0.1


@dataclass(frozen=True)
class LoadSummary:
    """What a run measured on the client side (latencies in seconds; None without answers)."""

    sent: int
    errors: int
    dropped: int
    p50: float | None
    p99: float | None

    def __str__(self) -> str:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v * 1000:.1f} ms"

        return (
            f"sent {self.sent}, errors {self.errors}, dropped {self.dropped}, "
            f"p50 {ms(self.p50)}, p99 {ms(self.p99)}"
        )


class LoadGenerator:
    """POSTs ``/v1/models/{model}/infer`` at ``rate_qps`` (settable while running)."""

    def __init__(
        self,
        base_url: str,
        model: str,
        rate_qps: float,
        *,
        seed: int = 0,
        max_outstanding: int = 512,
        max_samples: int = 1_000_000,
        timeout_seconds: float = 10.0,
    ) -> None:
        self.url = f"{base_url.rstrip('/')}/v1/models/{model}/infer"
        self.model = model
        self.rate_qps = rate_qps
        self.max_outstanding = max_outstanding
        self.timeout_seconds = timeout_seconds
        self._rng = random.Random(seed)
        self._latencies: deque[float] = deque(maxlen=max_samples)
        self.statuses: dict[int, int] = {}
        self.sent = 0
        self.errors = 0  # non-2xx answers and transport failures
        self.dropped = 0
        self._outstanding: set[asyncio.Task[None]] = set()

    @property
    def latencies(self) -> list[float]:
        """Client-side latencies (seconds) of answered requests, oldest first."""
        return list(self._latencies)

    def summary(self) -> LoadSummary:
        lat = sorted(self._latencies)

        def q(x: float) -> float | None:
            return lat[max(0, math.ceil(x * len(lat)) - 1)] if lat else None

        return LoadSummary(self.sent, self.errors, self.dropped, q(0.5), q(0.99))

    @property
    def outstanding(self) -> int:
        return len(self._outstanding)

    async def run(self, stop: asyncio.Event) -> None:
        """Send until ``stop`` is set, then wait for the answers still due (up to the request timeout)."""
        timeout = aiohttp.ClientTimeout(total=self.timeout_seconds)
        connector = aiohttp.TCPConnector(limit=self.max_outstanding)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
            try:
                await self._arrivals(session, stop)
            finally:
                if self._outstanding:
                    _, pending = await asyncio.wait(
                        list(self._outstanding), timeout=self.timeout_seconds
                    )
                    for t in pending:
                        t.cancel()
                    for t in pending:
                        with contextlib.suppress(asyncio.CancelledError):
                            await t

    async def _arrivals(self, session: aiohttp.ClientSession, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while not stop.is_set():
            rate = self.rate_qps
            if rate <= 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), IDLE_POLL_SECONDS)
                next_at = loop.time()
                continue
            next_at += self._rng.expovariate(rate)
            now = loop.time()
            if next_at - now < -MAX_CATCH_UP_SECONDS:
                next_at = now
            if next_at > now:
                await asyncio.sleep(next_at - now)
            if stop.is_set():
                break
            if len(self._outstanding) >= self.max_outstanding:
                self.dropped += 1
                continue
            task = asyncio.create_task(self._one(session))
            self._outstanding.add(task)
            task.add_done_callback(self._outstanding.discard)

    async def _one(self, session: aiohttp.ClientSession) -> None:
        self.sent += 1
        started = time.perf_counter()
        try:
            async with session.post(self.url) as r:
                await r.read()
                status = r.status
        except (aiohttp.ClientError, TimeoutError):
            self.errors += 1
            return
        self._latencies.append(time.perf_counter() - started)
        self.statuses[status] = self.statuses.get(status, 0) + 1
        if status >= 300:
            self.errors += 1


async def run_for(
    base_url: str, model: str, rate_qps: float, seconds: float, *, seed: int = 0
) -> LoadSummary:
    """Send load for ``seconds`` and summarise: what ``novabrain loadgen`` runs."""
    gen = LoadGenerator(base_url, model, rate_qps, seed=seed)
    stop = asyncio.Event()
    task = asyncio.create_task(gen.run(stop))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.shield(task), seconds)
    stop.set()
    await task
    return gen.summary()
