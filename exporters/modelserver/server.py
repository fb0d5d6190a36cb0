"""``novabrain model-server``: the simulator on a port, its pools' GPU counts from the scheduler.

In the demo the GPU counts come straight from the scheduler runtime
(``gpus_for_pool``). Standalone, each pool starts at its nominal GPUs from the
stack and, when a scheduler URL is given, follows the scheduler's
``GET /api/v1/pools`` (bearer token read from a file at each poll, so a
rotated token is picked up). A failed poll keeps the last known counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry

from deploy.stack import Stack
from exporters.modelserver.errors import PoolsUnavailable
from exporters.modelserver.sim import ModelServerSim

log = logging.getLogger(__name__)

# The field of a pool entry of the scheduler's API that counts the GPUs its jobs run on.
SERVING_GPUS = "serving_gpus"


def parse_pools(body: Any) -> dict[str, int]:
    """``{pool: gpus}`` from the scheduler's pool list (a list of objects with ``name``)."""
    if not isinstance(body, list):
        raise PoolsUnavailable(f"expected a list of pools, got {type(body).__name__}")
    out: dict[str, int] = {}
    for entry in body:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise PoolsUnavailable(f"pool entry without a name: {entry!r:.200}")
        v = entry.get(SERVING_GPUS)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise PoolsUnavailable(f"pool {entry['name']!r}: {SERVING_GPUS} is {v!r}")
        out[entry["name"]] = v
    return out


class PoolGpus:
    """The GPU count of each pool as last known: the stack's nominal counts until the scheduler says otherwise."""

    def __init__(self, stack: Stack) -> None:
        self.counts: dict[str, int] = {p.name: p.nominal_gpus for p in stack.pools}

    def __call__(self, pool: str) -> int:
        return self.counts.get(pool, 0)

    def update(self, counts: Mapping[str, int]) -> None:
        self.counts.update(counts)

    async def follow(
        self, scheduler_url: str, token_file: Path | None, interval: float, stop: asyncio.Event
    ) -> None:
        """Poll the scheduler until ``stop``; failures are logged and the last counts kept."""
        timeout = aiohttp.ClientTimeout(total=max(1.0, interval))
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not stop.is_set():
                try:
                    headers = {}
                    if token_file is not None:
                        headers["Authorization"] = f"Bearer {token_file.read_text().strip()}"
                    async with session.get(
                        scheduler_url.rstrip("/") + "/api/v1/pools", headers=headers
                    ) as r:
                        if r.status != 200:
                            raise PoolsUnavailable(f"scheduler answered {r.status}")
                        self.update(parse_pools(await r.json()))
                except (OSError, aiohttp.ClientError, TimeoutError, PoolsUnavailable) as e:
                    log.warning("pool GPU counts not updated: %s", e)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), interval)


async def serve(
    stack: Stack,
    host: str,
    port: int,
    *,
    gpus_for_pool: Callable[[str], int] | None = None,
    scheduler_url: str | None = None,
    token_file: Path | None = None,
    poll_interval: float = 5.0,
    registry: CollectorRegistry | None = None,
) -> None:
    """Serve until cancelled: what ``novabrain model-server`` runs."""
    stop = asyncio.Event()
    follow: asyncio.Task[None] | None = None
    if gpus_for_pool is None:
        pool_gpus = PoolGpus(stack)
        gpus_for_pool = pool_gpus
        if scheduler_url is not None:
            follow = asyncio.create_task(
                pool_gpus.follow(scheduler_url, token_file, poll_interval, stop)
            )
    sim = ModelServerSim(stack, registry or CollectorRegistry(), gpus_for_pool)
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    log.info("model server listening on http://%s:%d", host, port)
    try:
        await asyncio.Event().wait()  # until cancelled
    finally:
        stop.set()
        if follow is not None:
            follow.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await follow
        await runner.cleanup()
