"""HTTP: /metrics from the snapshot (format and gzip as asked, rendered once per snapshot,
never waiting for a collection nor holding one up), /healthz, serve()."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import threading
from collections import Counter
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from gpu_testlib import parse, scrape, value_of
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse

from deploy.procs import free_port
from deploy.stack import Stack
from exporters.catalog import gpu as cat
from exporters.exposition import Format
from exporters.exposition import snapshot as snapshot_module
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


# What Prometheus 2 sends on every scrape.
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
AS_PROMETHEUS = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
TEXT_GZIP = {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "gzip"}
TEXT_PLAIN = {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "identity"}
OPENMETRICS_PLAIN = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "identity"}


async def raw(
    session: aiohttp.ClientSession, url: str, headers: dict[str, str]
) -> tuple[str, str, bytes]:
    """(content type, content encoding, body as sent): the session must not decompress."""
    async with session.get(url, headers=headers) as r:
        assert r.status == 200
        return r.headers["Content-Type"], r.headers.get("Content-Encoding", ""), await r.read()


def samples_of(families: object) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families  # type: ignore[attr-defined]
        for s in f.samples
    }


async def test_scrapes_get_the_format_and_encoding_they_ask_for(stack: Stack) -> None:
    exp = GpuExporter(SimBackend.from_stack(stack), CollectorRegistry())
    exp.collect_once()
    async with running(build_app(exp)) as url, aiohttp.ClientSession(auto_decompress=False) as s:
        metrics = url + "/metrics"
        ctype, enc, plain = await raw(s, metrics, TEXT_PLAIN)
        assert (ctype, enc) == ("text/plain; version=0.0.4; charset=utf-8", "")
        ctype, enc, body = await raw(s, metrics, TEXT_GZIP)
        assert (ctype, enc) == ("text/plain; version=0.0.4; charset=utf-8", "gzip")
        assert gzip.decompress(body) == plain
        ctype, enc, body = await raw(s, metrics, AS_PROMETHEUS)
        assert ctype.startswith("application/openmetrics-text; version=1.0.0")
        assert enc == "gzip"
        om = gzip.decompress(body).decode()
        assert om.endswith("# EOF\n")
        # The same samples in either format.
        assert samples_of(om_parse(om)) == samples_of(text_parse(plain.decode()))


async def test_concurrent_scrapes_share_one_snapshot(stack: Stack) -> None:
    sim = SimBackend.from_stack(stack)
    registry = CollectorRegistry()
    # Intervals far beyond the test: only start()'s first cycle touches NVML.
    exp = GpuExporter(sim, registry, fast_interval=3600, slow_interval=3600)
    await exp.start()
    try:
        calls = sum(sim.calls.values())
        async with running(build_app(exp)) as url, aiohttp.ClientSession() as s:
            results = await asyncio.gather(*(get(s, url + "/metrics") for _ in range(20)))
        assert sum(sim.calls.values()) == calls
        assert {status for status, _ in results} == {200}
        bodies = {body for _, body in results}
        assert len(bodies) == 1  # every scraper saw the same snapshot
        series = parse(bodies.pop())
        assert len(series[cat.GPU_UP.series]) == len(stack.gpus())
    finally:
        await exp.stop()


async def test_concurrent_scrapes_at_256_gpus_render_each_body_once() -> None:
    """Scrapers of one snapshot share its bodies: one render per format, one compression."""
    sim = SimBackend.cluster(32, 8)
    exp = GpuExporter(sim, CollectorRegistry())
    exp.collect_once()
    snap = exp.snapshot()
    calls = sum(sim.calls.values())
    kinds = [AS_PROMETHEUS, OPENMETRICS_PLAIN, TEXT_GZIP, TEXT_PLAIN] * 8
    async with running(build_app(exp)) as url, aiohttp.ClientSession(auto_decompress=False) as s:
        bodies = await asyncio.gather(*(raw(s, url + "/metrics", h) for h in kinds))
    assert snap.renders == Counter(
        {(f, gz): 1 for f in (Format.OPENMETRICS, Format.TEXT) for gz in (False, True)}
    )
    assert len({b for _, _, b in bodies}) == 4  # four variants, each served identically
    assert sum(sim.calls.values()) == calls  # and no NVML work
    assert len(parse(gzip.decompress(bodies[2][2]).decode())[cat.GPU_UP.series]) == 256


@pytest.fixture
def held_render(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Every render waits until ``release`` is set; ``entered`` is set when one starts."""
    entered, release = threading.Event(), threading.Event()
    real = snapshot_module.render

    def held(*args: object) -> str:
        entered.set()
        release.wait(30)
        return real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(snapshot_module, "render", held)
    return entered, release


def test_concurrent_renders_of_a_snapshot_in_threads_build_it_once(
    stack: Stack, held_render: tuple[threading.Event, threading.Event]
) -> None:
    exp = GpuExporter(SimBackend.from_stack(stack), CollectorRegistry())
    exp.collect_once()
    snap = exp.snapshot()
    entered, release = held_render
    out: list[bytes] = []
    threads = [threading.Thread(target=lambda: out.append(snap.body())) for _ in range(8)]
    for t in threads:
        t.start()
    assert entered.wait(30)
    release.set()
    for t in threads:
        t.join(30)
    assert len(out) == 8 and len(set(out)) == 1
    assert snap.renders == Counter({(Format.TEXT, False): 1})


async def test_a_scrape_never_waits_for_a_collection(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cycle stuck inside NVML: scrapes are answered, from the last complete snapshot."""
    sim = SimBackend.from_stack(stack)
    exp = GpuExporter(sim, CollectorRegistry())
    exp.collect_once()
    u = sim.gpus[0].uuid
    sim.set(u, utilization=0.99)
    entered, release = threading.Event(), threading.Event()
    real = sim.temperature

    def stuck(dev: int) -> float:
        if dev == 0:
            entered.set()
            release.wait(30)
        return real(dev)

    monkeypatch.setattr(sim, "temperature", stuck)
    collector = threading.Thread(target=exp.collect_fast)
    collector.start()
    try:
        assert entered.wait(30)
        async with running(build_app(exp)) as url, aiohttp.ClientSession() as s:
            status, body = await get(s, url + "/metrics")
        assert status == 200
        assert collector.is_alive()  # the cycle is still inside NVML
        assert value_of(parse(body), cat.GPU_UTILIZATION.series, uuid=u) == 0.0  # the last one
    finally:
        release.set()
        collector.join(30)
    after = parse(exp.snapshot().body().decode())
    assert value_of(after, cat.GPU_UTILIZATION.series, uuid=u) == pytest.approx(0.99)


def test_a_collection_never_waits_for_a_scrape(
    stack: Stack,
    held_render: tuple[threading.Event, threading.Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A scrape stuck mid-render: cycles go on publishing; the scrape gets what it started with."""
    sim = SimBackend.from_stack(stack)
    exp = GpuExporter(sim, CollectorRegistry())
    exp.collect_once()
    snap = exp.snapshot()
    u = sim.gpus[0].uuid
    entered, release = held_render
    out: list[bytes] = []
    scraper = threading.Thread(target=lambda: out.append(snap.body()))
    scraper.start()
    try:
        assert entered.wait(30)
        sim.set(u, utilization=0.42)
        published = []
        for _ in range(3):
            assert exp.collect_fast()
            published.append(exp.snapshot())
        assert scraper.is_alive()  # three cycles completed while the render was held
        assert len({id(p) for p in published}) == 3 and snap not in published
    finally:
        release.set()
        scraper.join(30)
    assert value_of(parse(out[0].decode()), cat.GPU_UTILIZATION.series, uuid=u) == 0.0
    monkeypatch.undo()
    fresh = parse(exp.snapshot().body().decode())
    assert value_of(fresh, cat.GPU_UTILIZATION.series, uuid=u) == pytest.approx(0.42)


async def test_scrapes_are_served_while_nvml_is_down(stack: Stack) -> None:
    sim = SimBackend.from_stack(stack)
    sim.inject("DRIVER_NOT_LOADED")
    registry = CollectorRegistry()
    exp = GpuExporter(sim, registry, fast_interval=3600, slow_interval=3600)
    await exp.start()
    try:
        async with running(build_app(exp)) as url, aiohttp.ClientSession() as s:
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
