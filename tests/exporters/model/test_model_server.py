"""``novabrain model-server``: serve() on a port, pool GPU counts from the scheduler's API."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from deploy.procs import free_port
from deploy.stack import Stack
from exporters.catalog.model import MODEL_REQUESTS
from exporters.modelserver.errors import PoolsUnavailable
from exporters.modelserver.server import PoolGpus, parse_pools, serve
from scheduler.runtime import SchedulerRuntime
from scheduler.service.endpoint import json_response
from scheduler.sim.workload import demo_workload


def test_parse_pools() -> None:
    body = [
        {"name": "p0-risk", "serving_gpus": 16, "team": "risk"},
        {"name": "p2-batch", "serving_gpus": 0},
    ]
    assert parse_pools(body) == {"p0-risk": 16, "p2-batch": 0}
    for bad in (
        {"pools": []},
        [{"serving_gpus": 3}],
        [{"name": "p0-risk"}],
        [{"name": "x", "serving_gpus": -1}],
        [{"name": "x", "serving_gpus": True}],
        [{"name": "x", "gpus": 3}],
    ):
        with pytest.raises(PoolsUnavailable):
            parse_pools(bad)


def test_parse_pools_reads_the_scheduler_runtime(stack: Stack, tmp_path: Path) -> None:
    # What GET /api/v1/pools serves is the runtime's pools(): the parser must read
    # the same count the demo passes straight in as gpus_for_pool.
    rt = SchedulerRuntime.from_stack(stack, db_path=tmp_path / "s.db", registry=CollectorRegistry())
    try:
        rt.seed(demo_workload(stack))
        counts = parse_pools(json.loads(json_response(rt.pools()).text or "null"))
        assert counts == {p.name: rt.serving_gpus(p.name) for p in stack.pools}
    finally:
        rt.close()
    assert any(counts.values())


async def test_follows_the_scheduler_with_the_token_from_file(stack: Stack, tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    seen: list[str] = []

    async def pools(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        if len(seen) == 1:
            return web.json_response([{"name": "p0-risk", "serving_gpus": 16}])
        return web.Response(status=503)  # then the scheduler is down

    app = web.Application()
    app.router.add_get("/api/v1/pools", pools)
    gpus = PoolGpus(stack)
    assert gpus("p0-risk") == stack.pool("p0-risk").nominal_gpus  # before any answer
    assert gpus("no-such-pool") == 0
    async with TestServer(app) as server:
        stop = asyncio.Event()
        task = asyncio.create_task(gpus.follow(str(server.make_url("/")), token, 0.01, stop))
        for _ in range(1000):
            if len(seen) >= 3:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 10)
    assert seen[0] == "Bearer s3cret"
    # A failed poll (503) keeps the last known count.
    assert gpus("p0-risk") == 16


async def test_serve_until_cancelled(stack: Stack) -> None:
    port = free_port()
    reg = CollectorRegistry()
    task = asyncio.create_task(
        serve(stack, "127.0.0.1", port, gpus_for_pool=lambda p: 8, registry=reg)
    )
    url = f"http://127.0.0.1:{port}"
    async with aiohttp.ClientSession() as s:
        for _ in range(500):
            with contextlib.suppress(aiohttp.ClientConnectionError):
                async with s.get(url + "/healthz") as r:
                    if r.status == 200:
                        break
            await asyncio.sleep(0.01)
        async with s.post(url + "/v1/models/risk-scorer/infer") as r:
            assert r.status == 200
        async with s.get(url + "/metrics") as r:
            assert MODEL_REQUESTS.series in await r.text()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    labels = {"model": "risk-scorer", "version": "v3", "pool": "p0-risk", "outcome": "ok"}
    assert reg.get_sample_value(MODEL_REQUESTS.series, labels) == 1
