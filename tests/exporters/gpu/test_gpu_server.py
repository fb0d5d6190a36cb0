"""HTTP: /metrics from the snapshot, concurrent scrapes cost no NVML work, /healthz, serve()."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from gpu_testlib import parse, scrape, value_of
from prometheus_client import CollectorRegistry

from deploy.procs import free_port
from deploy.stack import Stack
from exporters.catalog import gpu as cat
from exporters.gpu.errors import ConfigError
from exporters.gpu.exporter import GpuExporter
from exporters.gpu.server import build_app, make_backend, serve
from exporters.nvml.sim import SimBackend


@contextlib.asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def get(session: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with session.get(url) as r:
        return r.status, await r.text()


async def test_concurrent_scrapes_share_one_snapshot(stack: Stack) -> None:
    sim = SimBackend.from_stack(stack)
    registry = CollectorRegistry()
    # Intervals far beyond the test: only start()'s first cycle touches NVML.
    exp = GpuExporter(sim, registry, fast_interval=3600, slow_interval=3600)
    await exp.start()
    try:
        calls = sum(sim.calls.values())
        async with running(build_app(exp, registry)) as url, aiohttp.ClientSession() as s:
            results = await asyncio.gather(*(get(s, url + "/metrics") for _ in range(20)))
        assert sum(sim.calls.values()) == calls
        assert {status for status, _ in results} == {200}
        bodies = {body for _, body in results}
        assert len(bodies) == 1  # every scraper saw the same snapshot
        series = parse(bodies.pop())
        assert len(series[cat.GPU_UP.series]) == len(stack.gpus())
    finally:
        await exp.stop()


async def test_scrapes_are_served_while_nvml_is_down(stack: Stack) -> None:
    sim = SimBackend.from_stack(stack)
    sim.inject("DRIVER_NOT_LOADED")
    registry = CollectorRegistry()
    exp = GpuExporter(sim, registry, fast_interval=3600, slow_interval=3600)
    await exp.start()
    try:
        async with running(build_app(exp, registry)) as url, aiohttp.ClientSession() as s:
            status, body = await get(s, url + "/metrics")
            assert status == 200
            assert value_of(parse(body), cat.EXPORTER_COLLECT_SUCCESS.series) == 0
            async with s.get(url + "/healthz") as r:
                assert r.status == 200
                assert await r.json() == {"nvml": "down", "gpus": 0, "gpus_up": 0}
    finally:
        await exp.stop()


async def test_background_loop_refreshes_the_snapshot(stack: Stack) -> None:
    sim = SimBackend.from_stack(stack)
    u = sim.gpus[0].uuid
    registry = CollectorRegistry()
    exp = GpuExporter(sim, registry, fast_interval=0.05, slow_interval=0.05)
    await exp.start()
    try:
        sim.set(u, utilization=0.73)
        for _ in range(200):  # bounded: up to 10 s on a loaded machine
            util = value_of(scrape(registry), cat.GPU_UTILIZATION.series, uuid=u)
            if util == pytest.approx(0.73):
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("the background loop never picked up the new utilisation")
    finally:
        await exp.stop()
    calls = sum(sim.calls.values())
    await asyncio.sleep(0.2)
    assert sum(sim.calls.values()) == calls  # stopped means stopped


async def test_serve_runs_the_sim_backend_until_cancelled(stack: Stack) -> None:
    port = free_port()
    task = asyncio.create_task(serve(stack, "127.0.0.1", port, backend="sim"))
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(100):  # bounded wait for the listener
                try:
                    status, body = await get(s, f"http://127.0.0.1:{port}/metrics")
                    break
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("serve() never listened")
        assert status == 200
        ups = parse(body)[cat.GPU_UP.series]
        assert len(ups) == len(stack.gpus())
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_unknown_backend_is_a_config_error(stack: Stack) -> None:
    with pytest.raises(ConfigError, match="dcgm"):
        make_backend(stack, "dcgm")
