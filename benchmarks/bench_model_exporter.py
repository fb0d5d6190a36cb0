"""Model exporter cost: the hot path, the aiohttp middleware, and /metrics exposition.

Side by side in one run:

1. Hot path, per request, against naive prometheus_client use
   (``h.labels(...).observe(d); c.labels(...).inc()``). Goal: <= 0.5x naive.
   Also the whole tracked request (in-flight gauge up and down, two clock
   readings, duration and outcome) against its naive equivalent.
2. aiohttp throughput of a trivial inference handler with and without the
   middleware, in-process client at fixed concurrency, rounds interleaved
   (A B A B ...) so drift hits both alike; best round of each. Goal: < 5%.
3. ``/metrics`` exposition for 50 models x 3 versions: ``generate_latest`` over
   the registry, and the instruments' own renderer the simulator serves.
4. The simulator's latency model as the demo uses it (client-side p50/p99 for
   the P0 model): base rate 0.5x and spike 1.4x the capacity of its own 8 GPUs,
   then the spike on 16 GPUs (after the scheduler lent it 8).

Prints numbers and exits 0; it asserts nothing (machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import timeit
from collections.abc import Callable
from dataclasses import replace

import aiohttp
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from deploy.stack import Stack, load_stack
from exporters.catalog.model import MODEL_IN_FLIGHT, MODEL_REQUEST_DURATION, MODEL_REQUESTS
from exporters.instrument import ModelInstruments, Outcome, buckets_for, instrument_middleware
from exporters.modelserver.load import LoadGenerator
from exporters.modelserver.sim import ModelServerSim


def _ns_per_call(fn: Callable[[], None], number: int, repeat: int = 7) -> float:
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e9


def bench_hot_path(stack: Stack, number: int) -> None:
    model = stack.models[0]
    mv = (model.name, model.version, model.pool)
    buckets = buckets_for(model).request_duration
    reg = CollectorRegistry()
    h = Histogram(
        MODEL_REQUEST_DURATION.name,
        "naive",
        ["model", "version", "pool"],
        buckets=buckets,
        registry=reg,
    )
    c = Counter(MODEL_REQUESTS.name, "naive", ["model", "version", "pool", "outcome"], registry=reg)
    g = Gauge(MODEL_IN_FLIGHT.name, "naive", ["model", "version", "pool"], registry=reg)
    rec = ModelInstruments(stack, CollectorRegistry()).recorder(model.name, model.version)
    d = 0.0123

    def naive() -> None:
        h.labels(*mv).observe(d)
        c.labels(*mv, "ok").inc()

    def ours_ok() -> None:
        rec.observe_ok(d)

    def ours_observe() -> None:
        rec.observe(d, Outcome.OK)

    clock = time.perf_counter

    def naive_tracked() -> None:
        g.labels(*mv).inc()
        t0 = clock()
        h.labels(*mv).observe(clock() - t0)
        c.labels(*mv, "ok").inc()
        g.labels(*mv).dec()

    def ours_tracked() -> None:
        with rec.track():
            pass

    base = _ns_per_call(naive, number)
    base_tracked = _ns_per_call(naive_tracked, number)
    print(f"1. hot path per request (best of 7 x {number} calls)")
    print(f"   naive  h.labels().observe() + c.labels().inc()      {base:8.0f} ns   1.00x")
    for name, fn in (
        ("ours   rec.observe_ok(d)", ours_ok),
        ("ours   rec.observe(d, Outcome.OK)", ours_observe),
    ):
        ns = _ns_per_call(fn, number)
        print(f"   {name:<50} {ns:8.0f} ns   {ns / base:.2f}x")
    ns = _ns_per_call(ours_tracked, number)
    print(f"   naive  tracked (gauge +-, 2 clocks, observe, inc)   {base_tracked:8.0f} ns   1.00x")
    print(
        f"   ours   with rec.track(): pass                      {ns:8.0f} ns   {ns / base_tracked:.2f}x"
    )


async def _throughput(app: web.Application, total: int, concurrency: int) -> float:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    url = f"http://127.0.0.1:{port}/v1/models/risk-scorer/infer"
    remaining = total
    try:
        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency)
        ) as session:

            async def worker() -> None:
                nonlocal remaining
                while remaining > 0:
                    remaining -= 1
                    async with session.post(url) as r:
                        await r.read()

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return total / (time.perf_counter() - t0)
    finally:
        await runner.cleanup()


async def _infer(_: web.Request) -> web.Response:
    return web.json_response({"score": 0.5})


@web.middleware
async def _noop(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await handler(request)


async def _per_call_ns(mw: Middleware | None, n: int) -> float:
    """One middleware call around the trivial handler, on a mocked request (no network)."""
    req = make_mocked_request(
        "POST", "/v1/models/risk-scorer/infer", match_info={"model": "risk-scorer"}
    )
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        if mw is None:
            for _ in range(n):
                await _infer(req)
        else:
            for _ in range(n):
                await mw(req, _infer)
        best = min(best, time.perf_counter() - t0)
    return best / n * 1e9


def bench_aiohttp(stack: Stack, total: int, rounds: int, concurrency: int) -> None:
    def app(kind: str) -> web.Application:
        mws: list[Middleware] = []
        if kind == "noop":
            mws = [_noop]
        elif kind == "ours":
            mws = [instrument_middleware(ModelInstruments(stack, CollectorRegistry()))]
        a = web.Application(middlewares=mws)
        a.router.add_post("/v1/models/{model}/infer", _infer)
        return a

    kinds = ("none", "noop", "ours")

    async def run() -> dict[str, list[float]]:
        res: dict[str, list[float]] = {k: [] for k in kinds}
        await _throughput(app("none"), total // 4, concurrency)  # warm-up
        for _ in range(rounds):
            for k in kinds:
                res[k].append(await _throughput(app(k), total, concurrency))
        return res

    res = asyncio.run(run())
    ours_mw = instrument_middleware(ModelInstruments(stack, CollectorRegistry()))
    calls = 20_000
    bare = asyncio.run(_per_call_ns(None, calls))
    noop = asyncio.run(_per_call_ns(_noop, calls))
    ours = asyncio.run(_per_call_ns(ours_mw, calls))
    print(
        f"2. aiohttp throughput, {total} requests x {rounds} rounds interleaved, "
        f"concurrency {concurrency}, client in-process"
    )
    labels = {
        "none": "without middleware",
        "noop": "an empty middleware",
        "ours": "with our middleware",
    }
    best_none, med_none = max(res["none"]), statistics.median(res["none"])
    for k in kinds:
        best, med = max(res[k]), statistics.median(res[k])
        print(
            f"   {labels[k]:<20} best {best:7.0f} req/s ({100 * (1 - best / best_none):+5.1f} %)"
            f"   median {med:7.0f} req/s ({100 * (1 - med / med_none):+5.1f} %)"
        )
    per_request_ns = 1e9 / med_none
    print(
        f"   per call, mocked request: handler {bare:6.0f} ns, + empty middleware "
        f"{noop - bare:6.0f} ns, + ours {ours - bare:6.0f} ns"
    )
    print(
        f"   ours = {100 * (ours - bare) / per_request_ns:.1f} % of a request's "
        f"{per_request_ns / 1000:.0f} us here (aiohttp's middleware mechanism itself: "
        f"{100 * (noop - bare) / per_request_ns:.1f} %)"
    )


def bench_exposition(stack: Stack, models: int, versions: int, repeat: int) -> None:
    base = stack.models[0]
    many = tuple(
        replace(base, name=f"model-{i:02d}", version=f"v{v}")
        for i in range(models)
        for v in range(1, versions + 1)
    )
    reg = CollectorRegistry()
    ins = ModelInstruments(many, reg)
    for rec in ins.recorders():  # every series has a value, as in production
        for d in (0.001, 0.01, 0.04, 0.3):
            rec.observe(d, Outcome.OK, queue_wait_seconds=d / 4)
        rec.observe_batch(4)
    body = generate_latest(reg)
    samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))

    def timed(fn: Callable[[], object]) -> list[float]:
        out = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t0)
        return out

    print(f"3. /metrics exposition, {models} models x {versions} versions ({len(many)} recorders)")
    print(f"   {samples} samples, {len(body) / 1024:.0f} KiB")
    for name, fn in (
        ("generate_latest(registry)", lambda: generate_latest(reg)),
        ("instruments.render()", ins.render),
    ):
        t = timed(fn)
        print(
            f"   {name:<26} median {statistics.median(t) * 1000:6.1f} ms   "
            f"min {min(t) * 1000:6.1f} ms   {statistics.median(t) / samples * 1e9:5.0f} ns/sample"
        )


async def _scenario(stack: Stack, gpus: int, factor: float, seconds: float) -> str:
    model = next(m for m in stack.models if m.action == "rebalance")
    sim = ModelServerSim(stack, CollectorRegistry(), lambda pool: gpus)
    runner = web.AppRunner(sim.app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    rate = factor * sim.capacity_qps(model.name, stack.pool(model.pool).nominal_gpus)
    gen = LoadGenerator(f"http://127.0.0.1:{port}", model.name, rate, seed=1)
    stop = asyncio.Event()
    task = asyncio.create_task(gen.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    await runner.cleanup()
    lat = sorted(gen.latencies)
    p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(0.99 * len(lat)))]
    thr = model.slo.latency_threshold_seconds
    return (
        f"   {gpus:2d} GPUs at {rate:4.0f} req/s ({factor:.1f}x own capacity): "
        f"p50 {p50 * 1000:6.1f} ms  p99 {p99 * 1000:7.1f} ms "
        f"({'over' if p99 > thr else 'under'} {thr * 1000:.0f} ms)  "
        f"sent {gen.sent}, errors {gen.errors}"
    )


def bench_latency_model(stack: Stack, seconds: float) -> None:
    print(f"4. simulator latency model, {seconds:.0f} s per scenario, client-side latencies")
    own = next(stack.pool(m.pool).nominal_gpus for m in stack.models if m.action == "rebalance")
    for gpus, factor in ((own, 0.5), (own, 1.4), (2 * own, 1.4)):
        print(asyncio.run(_scenario(stack, gpus, factor, seconds)))


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--stack", default="deploy/stack.yaml")
    p.add_argument("--calls", type=int, default=100_000)
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--expo-runs", type=int, default=30)
    p.add_argument("--scenario-seconds", type=float, default=5.0)
    args = p.parse_args()
    stack = load_stack(args.stack)
    bench_hot_path(stack, args.calls)
    bench_aiohttp(stack, args.requests, args.rounds, args.concurrency)
    bench_exposition(stack, 50, 3, args.expo_runs)
    bench_latency_model(stack, args.scenario_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
