"""A real Prometheus scrapes the exporter, and a query for every family returns data."""

from __future__ import annotations

import asyncio
from pathlib import Path

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


async def test_prometheus_sees_every_family(stack: Stack, tmp_path: Path) -> None:
    clock = FakeClock()
    sim = SimBackend.from_stack(stack, timer=clock)
    u = sim.gpus[0].uuid
    sim.set(u, utilization=0.9, pcie_tx_bytes_per_second=1e6, nvlink_tx_bytes_per_second=1e6)
    clock.advance(5)
    sim.add_errors(u, ecc_corrected=1, remapped_correctable=1, pcie_replays=1)
    sim.xid(u, 79)
    sim.set_mig(u, [(1, "7g.80gb")])
    sim.set_processes(u, [(4242, 1 << 30)])
    registry = CollectorRegistry()
    exp = GpuExporter(sim, registry, fast_interval=0.5, slow_interval=1.0)
    await exp.start()
    runner = web.AppRunner(build_app(exp, registry), access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "gpu", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}]}
        ],
    }
    prom = PrometheusProcess(config, tmp_path)
    try:
        # Started in a thread: the exporter must keep answering on this loop meanwhile.
        await asyncio.to_thread(prom.start)
        await prom.await_for('up{job="gpu"} == 1', timeout=60)
        for m in cat.GPU_METRICS:
            name = m.count if m.kind is MetricKind.HISTOGRAM else m.series
            result = await prom.await_for(name, timeout=30)
            assert result, name
        lost = await prom.aquery(f'{cat.GPU_UP.series}{{uuid="{u}"}}')
        assert lost[0]["value"][1] == "1"
        # The lost GPU reads 0 in Prometheus too, while the others still read 1.
        sim.inject("GPU_IS_LOST", uuid=u)
        await prom.await_for(f'{cat.GPU_UP.series}{{uuid="{u}"}} == 0', timeout=30)
        others = await prom.aquery(f"sum({cat.GPU_UP.series})")
        assert float(others[0]["value"][1]) == len(stack.gpus()) - 1
    finally:
        await asyncio.to_thread(prom.stop)
        await runner.cleanup()
        await exp.stop()
