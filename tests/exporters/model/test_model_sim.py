"""The model-server simulator: GPUs make slots, capacity follows the pool at once,
faults and overload are answered with bounded reasons, LLM metrics flow."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse

from deploy.stack import Stack
from exporters.catalog.model import (
    MODEL_BATCH_SIZE,
    MODEL_ERRORS,
    MODEL_GENERATION_TOKENS,
    MODEL_IN_FLIGHT,
    MODEL_INTER_TOKEN_LATENCY,
    MODEL_PROMPT_TOKENS,
    MODEL_QUEUE_WAIT,
    MODEL_REQUEST_DURATION,
    MODEL_REQUESTS,
    MODEL_REQUESTS_RUNNING,
    MODEL_REQUESTS_WAITING,
    MODEL_TIME_TO_FIRST_TOKEN,
    MODEL_UNKNOWN_REQUESTS,
)
from exporters.modelserver.errors import UnknownModel
from exporters.modelserver.load import LoadGenerator, run_for
from exporters.modelserver.sim import ModelServerSim, ServingPool

RISK = {"model": "risk-scorer", "version": "v3", "pool": "p0-risk"}
LLM = {"model": "chat-llm", "version": "v1", "pool": "p2-batch"}
INFER = "/v1/models/risk-scorer/infer"


@dataclass
class Env:
    sim: ModelServerSim
    client: TestClient[web.Request, web.Application]
    reg: CollectorRegistry
    gpus: dict[str, int] = field(default_factory=dict)

    def value(self, name: str, labels: dict[str, str]) -> float:
        v = self.reg.get_sample_value(name, labels)
        assert v is not None, (name, labels)
        return v


async def _env(stack: Stack, gpus: dict[str, int], **kw: float) -> AsyncIterator[Env]:
    reg = CollectorRegistry()
    counts = dict(gpus)
    sim = ModelServerSim(stack, reg, lambda p: counts.get(p, 0), **kw)
    async with TestClient(TestServer(sim.app())) as client:
        yield Env(sim, client, reg, counts)


@pytest.fixture
async def env(rich_stack: Stack) -> AsyncIterator[Env]:
    # Fast service so tests finish quickly; long queue timeout so nothing times out by accident.
    async for e in _env(
        rich_stack,
        {"p0-risk": 8, "p2-batch": 8},
        service_time_seconds=0.001,
        token_time_seconds=0.0005,
        queue_timeout_seconds=30.0,
    ):
        yield e


def test_capacity_from_gpus(rich_stack: Stack) -> None:
    sim = ModelServerSim(rich_stack, CollectorRegistry(), lambda p: 8)
    # 4 GPUs per replica, one request at a time, 8 ms per request.
    assert sim.slots(0) == 0 and sim.slots(1) == 1 and sim.slots(8) == 2 and sim.slots(16) == 4
    assert sim.capacity_qps("risk-scorer", 8) == pytest.approx(250.0)
    assert sim.capacity_qps("risk-scorer", 16) == pytest.approx(500.0)
    sim.inject("risk-scorer", slowdown=2.0)
    assert sim.capacity_qps("risk-scorer", 8) == pytest.approx(125.0)
    # LLM requests also hold the slot while decoding.
    assert sim.capacity_qps("chat-llm", 8) < sim.capacity_qps("risk-scorer", 8)
    with pytest.raises(UnknownModel):
        sim.capacity_qps("nope", 8)
    with pytest.raises(ValueError):
        sim.inject("risk-scorer", error_ratio=1.5)
    assert sim.busy_ratio("p1-train") == 0.0  # serves no model


async def test_success_records_one_request_with_queue_wait_and_batch(env: Env) -> None:
    r = await env.client.post(INFER)
    assert r.status == 200
    body = await r.json()
    assert body["model"] == "risk-scorer" and body["version"] == "v3"
    assert env.value(MODEL_REQUESTS.series, {**RISK, "outcome": "ok"}) == 1
    assert env.value(MODEL_REQUEST_DURATION.count, RISK) == 1
    assert env.value(MODEL_QUEUE_WAIT.count, RISK) == 1
    assert env.value(MODEL_BATCH_SIZE.count, RISK) == 1
    assert env.value(MODEL_IN_FLIGHT.series, RISK) == 0


async def test_unknown_model_is_404_and_creates_no_series(env: Env) -> None:
    before = {s.name for f in env.reg.collect() for s in f.samples}
    r = await env.client.post("/v1/models/evil-{x}/infer")
    assert r.status == 404
    assert env.value(MODEL_UNKNOWN_REQUESTS.series, {}) == 1
    assert {s.name for f in env.reg.collect() for s in f.samples} == before
    assert (await env.client.get("/healthz")).status == 200
    metrics = await (await env.client.get("/metrics")).text()
    assert MODEL_REQUESTS.series in metrics


async def test_injected_errors_are_backend_failures(env: Env) -> None:
    env.sim.inject("risk-scorer", error_ratio=1.0)
    for _ in range(3):
        assert (await env.client.post(INFER)).status == 500
    assert env.value(MODEL_REQUESTS.series, {**RISK, "outcome": "error"}) == 3
    assert env.value(MODEL_ERRORS.series, {**RISK, "reason": "backend"}) == 3
    env.sim.inject("risk-scorer")  # cleared
    assert (await env.client.post(INFER)).status == 200


async def test_capacity_change_takes_effect_at_once(env: Env) -> None:
    env.gpus["p0-risk"] = 0  # the scheduler took every GPU away
    tasks = [asyncio.create_task(env.client.post(INFER)) for _ in range(3)]
    pool = env.sim.pools["p0-risk"]
    for _ in range(1000):
        if pool.waiting == 3:
            break
        await asyncio.sleep(0.005)
    assert pool.waiting == 3 and pool.busy == 0
    assert env.value(MODEL_IN_FLIGHT.series, RISK) == 3
    env.gpus["p0-risk"] = 4  # ... and gave one replica back: no arrival or release needed
    statuses = [r.status for r in await asyncio.wait_for(asyncio.gather(*tasks), 20)]
    assert statuses == [200, 200, 200]
    assert pool.waiting == 0 and pool.busy == 0


async def test_overload_is_answered_with_timeout_and_rejection(rich_stack: Stack) -> None:
    async for env in _env(rich_stack, {"p0-risk": 0}, queue_timeout_seconds=0.05, max_queue=1):
        first = asyncio.create_task(env.client.post(INFER))
        pool = env.sim.pools["p0-risk"]
        for _ in range(1000):
            if pool.waiting == 1:
                break
            await asyncio.sleep(0.001)
        second = await env.client.post(INFER)  # the queue holds one: shed
        assert second.status == 503
        assert (await first).status == 504  # waited its timeout for a GPU
        assert env.value(MODEL_ERRORS.series, {**RISK, "reason": "rejected"}) == 1
        assert env.value(MODEL_ERRORS.series, {**RISK, "reason": "timeout"}) == 1
        assert env.value(MODEL_REQUESTS.series, {**RISK, "outcome": "error"}) == 2
        assert pool.waiting == 0 and pool.busy == 0


async def test_llm_metrics(env: Env) -> None:
    r = await env.client.post("/v1/models/chat-llm/infer")
    assert r.status == 200
    body = await r.json()
    assert env.value(MODEL_PROMPT_TOKENS.series, LLM) == body["prompt_tokens"]
    assert env.value(MODEL_GENERATION_TOKENS.series, LLM) == body["tokens"]
    assert env.value(MODEL_TIME_TO_FIRST_TOKEN.count, LLM) == 1
    assert env.value(MODEL_INTER_TOKEN_LATENCY.count, LLM) == body["tokens"] - 1
    assert env.value(MODEL_REQUESTS_RUNNING.series, LLM) == 0
    assert env.value(MODEL_REQUESTS_WAITING.series, LLM) == 0
    assert env.value(MODEL_REQUESTS.series, {**LLM, "outcome": "ok"}) == 1


async def test_client_going_away_mid_wait_frees_its_place(env: Env) -> None:
    env.gpus["p0-risk"] = 0
    pool = env.sim.pools["p0-risk"]
    timeout = aiohttp.ClientTimeout(total=0.2)
    with pytest.raises(TimeoutError):
        await env.client.post(INFER, timeout=timeout)
    for _ in range(1000):  # the server notices the disconnect on its side
        if pool.waiting == 0 and env.value(MODEL_IN_FLIGHT.series, RISK) == 0:
            break
        await asyncio.sleep(0.005)
    # Whether aiohttp cancels the handler or the wait ends on its own, one
    # request is recorded and no slot is leaked.
    env.gpus["p0-risk"] = 8
    assert (await env.client.post(INFER)).status == 200
    assert pool.busy == 0


def test_busy_ratio_is_a_smoothed_fraction_of_slots() -> None:
    now = [0.0]
    pool = ServingPool(lambda: 2, lambda: now[0])

    async def fill() -> None:
        assert await pool.acquire(1.0, 10) is True
        assert await pool.acquire(1.0, 10) is True

    asyncio.run(fill())
    assert pool.busy_ratio() == 0.0  # no time has passed
    now[0] = 1000.0
    assert pool.busy_ratio() == pytest.approx(1.0)
    pool.release()
    now[0] = 2000.0
    assert pool.busy_ratio() == pytest.approx(0.5)
    pool.release()
    now[0] = 3000.0
    assert pool.busy_ratio() == pytest.approx(0.0)


async def test_load_generator_counts_and_retargets(env: Env) -> None:
    base = str(env.client.make_url("/"))
    gen = LoadGenerator(base, "risk-scorer", 200.0, seed=1)
    stop = asyncio.Event()
    task = asyncio.create_task(gen.run(stop))
    for _ in range(2000):
        if gen.sent >= 20:
            break
        await asyncio.sleep(0.005)
    gen.rate_qps = 0.0  # settable while running: arrivals stop
    stop.set()
    await asyncio.wait_for(task, 20)
    assert gen.sent >= 20
    assert gen.errors == 0 and gen.statuses == {200: gen.sent}
    assert len(gen.latencies) == gen.sent and all(x > 0 for x in gen.latencies)
    assert env.value(MODEL_REQUESTS.series, {**RISK, "outcome": "ok"}) == gen.sent


async def test_load_generator_is_bounded(env: Env) -> None:
    env.gpus["p0-risk"] = 0  # nothing is answered until the end
    gen = LoadGenerator(
        str(env.client.make_url("/")), "risk-scorer", 500.0, max_outstanding=3, timeout_seconds=30
    )
    stop = asyncio.Event()
    task = asyncio.create_task(gen.run(stop))
    for _ in range(2000):
        if gen.dropped >= 5:
            break
        await asyncio.sleep(0.005)
    assert gen.outstanding == 3 and gen.sent == 3 and gen.dropped >= 5
    stop.set()
    env.gpus["p0-risk"] = 8
    await asyncio.wait_for(task, 20)  # stopping waits for the answers still due
    assert gen.statuses == {200: 3} and gen.errors == 0 and gen.outstanding == 0


async def test_run_for_summarises(env: Env) -> None:
    summary = await run_for(str(env.client.make_url("/")), "risk-scorer", 200.0, 0.3, seed=2)
    assert summary.sent > 0 and summary.errors == 0 and summary.dropped == 0
    assert summary.p50 is not None and summary.p99 is not None and summary.p50 <= summary.p99
    assert f"sent {summary.sent}" in str(summary)
    env.sim.inject("risk-scorer", error_ratio=1.0)
    failing = await run_for(str(env.client.make_url("/")), "risk-scorer", 200.0, 0.3)
    assert failing.errors == failing.sent > 0


async def test_metrics_answer_prometheus_with_gzipped_openmetrics(env: Env) -> None:
    """The model server's /metrics negotiates like every exporter of the project."""
    assert (await env.client.post(INFER)).status == 200
    prometheus = {
        "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
        "Accept-Encoding": "gzip",
    }
    r = await env.client.get("/metrics", headers=prometheus, auto_decompress=False)
    assert r.headers["Content-Encoding"] == "gzip"
    assert r.headers["Content-Type"].startswith("application/openmetrics-text; version=1.0.0")
    om = gzip.decompress(await r.read()).decode()
    classic = await (await env.client.get("/metrics", headers={"Accept": "text/plain"})).text()

    def samples(fams: Iterable[Metric]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for f in fams for s in f.samples}

    assert samples(om_parse(om)) == samples(text_parse(classic))
    assert (
        samples(om_parse(om))[
            (MODEL_REQUESTS.series, tuple(sorted({**RISK, "outcome": "ok"}.items())))
        ]
        == 1
    )


def test_the_simulator_serves_with_the_stacks_serving_spec(stack: Stack) -> None:
    import dataclasses

    from deploy.stack import Serving

    m = stack.models[0]
    slow = dataclasses.replace(m, serving=Serving(0.02, 2, 3))
    other = dataclasses.replace(stack, models=(slow, *stack.models[1:]))
    sim = ModelServerSim(other, CollectorRegistry(), lambda p: 8)
    assert (sim.service_time_seconds, sim.gpus_per_replica, sim.replica_concurrency) == (0.02, 2, 3)
    assert sim.slots(8) == 12 and sim.capacity_qps(m.name, 8) == pytest.approx(600.0)
    # Explicit arguments still win (the tests' fast servers).
    assert ModelServerSim(other, CollectorRegistry(), lambda p: 8, gpus_per_replica=4).slots(8) == 6
