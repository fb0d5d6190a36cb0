"""A real Prometheus scrapes the exporter, in both text formats, gzip-compressed.

Prometheus 2 asks every target for OpenMetrics first and for gzip; a second
job reaches the same exporter through a proxy that asks for the classic text
format instead (as Prometheus 3 does when told to, or any other scraper), so
both of the exporter's formats go through Prometheus's own parsers. Every
family must reach Prometheus through both.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from gpu_testlib import FakeClock
from prometheus_client import CollectorRegistry

from deploy.procs import PrometheusProcess, free_port
from deploy.stack import Stack
from exporters.catalog import MetricKind
from exporters.catalog import gpu as cat
from exporters.gpu.exporter import GpuExporter
from exporters.gpu.server import build_app
from exporters.nvml.sim import SimBackend

pytestmark = pytest.mark.e2e

CLASSIC = "text/plain;version=0.0.4"


def classic_proxy(upstream: str) -> web.Application:
    """Forwards a scrape with ``Accept`` set to the classic format; the body passes untouched."""

    async def metrics(request: web.Request) -> web.Response:
        headers = {"Accept": CLASSIC, "Accept-Encoding": request.headers["Accept-Encoding"]}
        async with (
            aiohttp.ClientSession(auto_decompress=False) as s,
            s.get(upstream, headers=headers) as r,
        ):
            keep = ("Content-Type", "Content-Encoding")
            return web.Response(
                body=await r.read(), headers={k: r.headers[k] for k in keep if k in r.headers}
            )

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, port


async def test_prometheus_reads_every_family_in_both_formats_gzipped(
    stack: Stack, tmp_path: Path
) -> None:
    clock = FakeClock()
    sim = SimBackend.from_stack(stack, timer=clock)
    u = sim.gpus[0].uuid
    sim.set(u, utilization=0.9, pcie_tx_bytes_per_second=1e6, nvlink_tx_bytes_per_second=1e6)
    clock.advance(5)
    sim.add_errors(u, ecc_corrected=1, remapped_correctable=1, pcie_replays=1)
    sim.xid(u, 79)
    sim.set_mig(u, [(1, "7g.80gb")])
    sim.set_processes(u, [(4242, 1 << 30)])
    exp = GpuExporter(sim, CollectorRegistry(), fast_interval=0.5, slow_interval=1.0)
    await exp.start()

    served: list[
        tuple[str, str, str]
    ] = []  # (Accept-Encoding asked, Content-Type, Content-Encoding)

    @web.middleware
    async def record(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        response = await handler(request)
        served.append(
            (
                request.headers.get("Accept-Encoding", ""),
                response.headers["Content-Type"].split(";")[0],
                response.headers.get("Content-Encoding", ""),
            )
        )
        return response

    app = build_app(exp)
    app.middlewares.append(record)
    runners = []
    runner, port = await serve(app)
    runners.append(runner)
    runner, proxy_port = await serve(classic_proxy(f"http://127.0.0.1:{port}/metrics"))
    runners.append(runner)
    jobs = {"gpu": port, "gpu-classic": proxy_port}
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [f"127.0.0.1:{p}"]}]}
            for job, p in jobs.items()
        ],
    }
    prom = PrometheusProcess(config, tmp_path)
    try:
        # Started in a thread: the exporter must keep answering on this loop meanwhile.
        await asyncio.to_thread(prom.start)
        for job in jobs:
            await prom.await_for(f'up{{job="{job}"}} == 1', timeout=60)
        for m in cat.GPU_METRICS:
            name = m.count if m.kind is MetricKind.HISTOGRAM else m.series
            for job in jobs:
                assert await prom.await_for(f'{name}{{job="{job}"}}', timeout=30), (name, job)
        # The same series through either format.
        by_name = 'count by (__name__) ({{__name__=~"novabrain_.+", job="{}"}})'
        counts = {
            job: {
                r["metric"]["__name__"]: r["value"][1]
                for r in await prom.aquery(by_name.format(job))
            }
            for job in jobs
        }
        assert counts["gpu"] == counts["gpu-classic"]
        # Prometheus asked for gzip and OpenMetrics and got them; the proxy got the classic format.
        assert all("gzip" in asked for asked, _, _ in served)
        assert {(t, e) for _, t, e in served} == {
            ("application/openmetrics-text", "gzip"),
            ("text/plain", "gzip"),
        }

        lost = await prom.aquery(f'{cat.GPU_UP.series}{{uuid="{u}", job="gpu"}}')
        assert lost[0]["value"][1] == "1"
        # The lost GPU reads 0 in Prometheus too, while the others still read 1.
        sim.inject("GPU_IS_LOST", uuid=u)
        await prom.await_for(f'{cat.GPU_UP.series}{{uuid="{u}", job="gpu"}} == 0', timeout=30)
        others = await prom.aquery(f'sum({cat.GPU_UP.series}{{job="gpu"}})')
        assert float(others[0]["value"][1]) == len(stack.gpus()) - 1
    finally:
        await asyncio.to_thread(prom.stop)
        for r in runners:
            await r.cleanup()
        await exp.stop()
