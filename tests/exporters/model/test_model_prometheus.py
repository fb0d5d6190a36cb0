"""A real Prometheus scrapes the simulator under load: ``histogram_quantile`` over what it
scraped agrees with the latencies the load generator measured, to within a bucket."""

from __future__ import annotations

import asyncio
import math
import shutil
from bisect import bisect_left
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from deploy.procs import PrometheusProcess, free_port
from deploy.stack import Stack
from exporters.catalog.model import MODEL_REQUEST_DURATION, MODEL_REQUESTS
from exporters.instrument import buckets_for
from exporters.modelserver.load import LoadGenerator
from exporters.modelserver.sim import ModelServerSim

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus not installed"
)

MODEL = "risk-scorer"
REQUESTS = 600


def _bucket_index(bounds: tuple[float, ...], value: float) -> int:
    """Index of the bucket ``(bounds[i-1], bounds[i]]`` holding ``value``; len(bounds) for +Inf."""
    return bisect_left(bounds, value)


async def test_scraped_quantiles_match_client_latencies(stack: Stack, tmp_path: Path) -> None:
    model = next(m for m in stack.models if m.name == MODEL)
    reg = CollectorRegistry()
    sim = ModelServerSim(stack, reg, lambda pool: 8, seed=7)
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {"job_name": "model", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        ],
    }
    prom = PrometheusProcess(config, tmp_path / "prom")
    try:
        await asyncio.to_thread(prom.start)
        # 0.7 of capacity: queueing spreads the latencies over many buckets.
        gen = LoadGenerator(
            f"http://127.0.0.1:{port}", MODEL, 0.7 * sim.capacity_qps(MODEL, 8), seed=3
        )
        stop = asyncio.Event()
        task = asyncio.create_task(gen.run(stop))
        while gen.sent < REQUESTS and not task.done():
            await asyncio.sleep(0.05)
        stop.set()
        await task
        assert gen.errors == 0, gen.statuses
        n = gen.sent

        sel = f'{{model="{MODEL}"}}'
        await prom.await_for(f"sum({MODEL_REQUESTS.series}{sel}) == {n}", timeout=60)
        await prom.await_for(f"sum({MODEL_REQUEST_DURATION.count}{sel}) == {n}", timeout=60)

        bounds = buckets_for(model).request_duration
        measured = sorted(gen.latencies)
        for q in (0.5, 0.9, 0.99):
            res = await prom.aquery(
                f"histogram_quantile({q}, sum by (le) ({MODEL_REQUEST_DURATION.bucket}{sel}))"
            )
            estimate = float(res[0]["value"][1])
            client = measured[math.ceil(q * n) - 1]
            # The estimate interpolates inside one bucket; the client's latency
            # adds the HTTP round trip to the server's, which can push it into
            # the next bucket up, never further.
            i, j = _bucket_index(bounds, estimate), _bucket_index(bounds, client)
            assert j - i in (0, 1), (q, estimate, client, bounds)
    finally:
        await asyncio.to_thread(prom.stop)
        await runner.cleanup()
