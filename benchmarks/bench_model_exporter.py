"""Model exporter cost: the hot path, the aiohttp middleware, and /metrics exposition.

Side by side in one run:

1. Hot path, per request, against naive prometheus_client use
   (``h.labels(...).observe(d); c.labels(...).inc()``). Goal: <= 0.5x naive.
   Also the whole tracked request (in-flight gauge up and down, two clock
   readings, duration and outcome) against its naive equivalent.
2. aiohttp: a trivial inference handler with no middleware, an empty
   middleware, our middleware, and our handler decorator (no middleware), each
   in its own server process, loaded by httpload from this process; rounds
   interleaved so drift hits all alike. Throughput and the server's CPU per
   request, with the overhead against no middleware paired per round. Goal:
   our instrumentation under 5%. Then the same four on a mocked request.
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
import os
import statistics
import subprocess
import sys
import time
import timeit
import urllib.request
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from aiohttp.typedefs import Handler, Middleware
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpload

from deploy.procs import free_port
from deploy.stack import Stack, load_stack
from exporters.catalog.model import (
    MODEL_IN_FLIGHT,
    MODEL_REQUEST_DURATION,
    MODEL_REQUESTS,
)
from exporters.instrument import (
    ModelInstruments,
    Outcome,
    buckets_for,
    instrument_handler,
    instrument_middleware,
)
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


# ----------------------------------------------------------------------------- 2. aiohttp

VARIANTS = {
    "none": "no middleware",
    "empty": "an empty middleware",
    "middleware": "our middleware",
    "handler": "our handler decorator",
}
INFER_PATH = "/v1/models/risk-scorer/infer"


async def _infer(_: web.Request) -> web.Response:
    return web.json_response({"score": 0.5})


async def _cpu(_: web.Request) -> web.Response:
    # This process's CPU seconds (user + system), to the nanosecond (/proc's ticks are 10 ms).
    return web.Response(text=repr(time.process_time()))


@web.middleware
async def _noop(request: web.Request, handler: Handler) -> web.StreamResponse:
    return await handler(request)


# One process, two routes each (see bench_same_process): (label, path) per side.
PAIRS = {
    "both": (("no middleware", "/plain/risk-scorer/infer"), ("our decorator", INFER_PATH)),
    "subapps": (
        ("an empty middleware", "/empty" + INFER_PATH),
        ("our middleware", "/ours" + INFER_PATH),
    ),
}


def variant_app(stack: Stack, variant: str) -> web.Application:
    """One variant's app. ``both`` serves the bare handler and the decorated one side by
    side (no middleware); ``subapps`` two sub-applications, one with the empty middleware
    and one with ours (the same aiohttp machinery on both)."""
    ins = ModelInstruments(stack, CollectorRegistry())
    if variant == "subapps":
        app = web.Application()
        for prefix, mw in (("/empty", _noop), ("/ours", instrument_middleware(ins))):
            sub = web.Application(middlewares=[mw])
            sub.router.add_post("/v1/models/{model}/infer", _infer)
            app.add_subapp(prefix, sub)
        app.router.add_get("/cpu", _cpu)
        return app
    middlewares: list[Middleware] = {
        "empty": [_noop],
        "middleware": [instrument_middleware(ins)],
    }.get(variant, [])
    app = web.Application(middlewares=middlewares)
    decorated = variant in ("handler", "both")
    infer = instrument_handler(ins)(_infer) if decorated else _infer
    app.router.add_post("/v1/models/{model}/infer", infer)
    if variant == "both":
        app.router.add_post("/plain/{model}/infer", _infer)
    app.router.add_get("/cpu", _cpu)
    return app


def _cpu_of(port: int) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/cpu", timeout=10) as r:
        return float(r.read())


def _start(variant: str, stack_path: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [sys.executable, __file__, "--serve", variant, "--port", str(port)]
    proc = httpload.spawn([*argv, "--stack", stack_path], lambda: _cpu_of(port), variant)
    return proc, port


async def _round(
    port: int, total: int, connections: int, path: str = INFER_PATH
) -> tuple[float, float]:
    """(requests per second, server CPU microseconds per request) for one round."""
    requests = [httpload.post("127.0.0.1", port, path, b"", {})] * total
    cpu = await asyncio.to_thread(_cpu_of, port)
    res = await httpload.closed("127.0.0.1", port, requests, connections)
    cpu = await asyncio.to_thread(_cpu_of, port) - cpu
    if res.codes != {200: total}:
        raise RuntimeError(f"unexpected answers {res.codes}")
    return total / res.wall_seconds, cpu / total * 1e6


def _spread(xs: list[float], fmt: str) -> str:
    return f"{statistics.median(xs):{fmt}} ({min(xs):{fmt}}..{max(xs):{fmt}})"


def _paired(a: list[float], b: list[float], f: Callable[[float, float], float]) -> list[float]:
    return [f(x, y) for x, y in zip(a, b, strict=True)]


def bench_servers(stack_path: str, total: int, rounds: int, connections: int) -> None:
    """Each variant in its own server process; this process is the client (httpload).

    Rounds are interleaved (the order rotates each round) so drift and other
    sessions' load hit every variant alike; overheads are paired within a round.
    """
    servers = {v: _start(v, stack_path) for v in VARIANTS}
    rps: dict[str, list[float]] = {v: [] for v in VARIANTS}
    cpu: dict[str, list[float]] = {v: [] for v in VARIANTS}

    async def run() -> None:
        names = list(VARIANTS)
        for v in names:  # warm-up: connections, caches, the allocator
            await _round(servers[v][1], total // 4, connections)
        for r in range(rounds):
            for v in names[r % len(names) :] + names[: r % len(names)]:
                a, b = await _round(servers[v][1], total, connections)
                rps[v].append(a)
                cpu[v].append(b)

    try:
        asyncio.run(run())
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(10)
    print(
        f"2. aiohttp, a trivial inference handler (json_response): each variant in its own "
        f"server process, {total} requests x {rounds} rounds interleaved, {connections} "
        f"connections, load from httpload in this process; {os.cpu_count()} CPUs shared with "
        "other sessions"
    )
    print(
        f"   {'':<22} {'req/s median (range)':>25} {'server CPU us/req':>25}"
        "   overhead vs none, paired per round: CPU | req/s"
    )
    for v, label in VARIANTS.items():
        extra = ""
        if v != "none":
            c = _paired(cpu[v], cpu["none"], lambda x, n: 100 * (x / n - 1))
            t = _paired(rps[v], rps["none"], lambda x, n: 100 * (1 - x / n))
            extra = f"{_spread(c, '+5.1f')} % | {_spread(t, '+5.1f')} %"
        print(
            f"   {label:<22} {_spread(rps[v], '6.0f'):>25} {_spread(cpu[v], '5.1f'):>25}   {extra}"
        )


def bench_same_process(stack_path: str, total: int, rounds: int, connections: int) -> None:
    """Two routes in one server process, batches alternating, overhead paired per batch:
    what differs between processes (placement, caches, hash seeds) is out of the comparison.
    One pair is the bare handler against our decorator; the other the empty middleware
    against ours, each on its own sub-application (aiohttp's chain alike on both)."""
    print(
        f"   one process, two routes, batches alternating ({2 * rounds} each), server CPU us/req:"
    )
    for variant, ((base_label, base_path), (label, path)) in PAIRS.items():
        proc, port = _start(variant, stack_path)
        base: list[float] = []
        ours: list[float] = []

        async def run(port: int, base_path: str, path: str, out: dict[str, list[float]]) -> None:
            for p in (base_path, path):
                await _round(port, total // 4, connections, p)
            for r in range(2 * rounds):
                for p in (base_path, path) if r % 2 == 0 else (path, base_path):
                    out[p].append((await _round(port, total, connections, p))[1])

        try:
            asyncio.run(run(port, base_path, path, {base_path: base, path: ours}))
        finally:
            proc.terminate()
            proc.wait(10)
        over = _paired(ours, base, lambda x, n: 100 * (x / n - 1))
        print(
            f"     {base_label} {_spread(base, '.1f')}, {label} {_spread(ours, '.1f')}: "
            f"{label} costs {_spread(over, '+.1f')} % more"
        )


def bench_in_process(stack: Stack, calls: int, rounds: int) -> None:
    """``app._handle`` on one mocked request: routing, the middleware chain, the handler and its
    response, without sockets or HTTP parsing, so the per-request differences stand out of the
    noise a shared machine puts on the servers above. Everything stays in the CPU's caches
    here: these are each cost's lower bound; in a server (above) the same code costs more."""
    apps = {v: variant_app(stack, v) for v in VARIANTS}
    us: dict[str, list[float]] = {v: [] for v in VARIANTS}

    async def run() -> None:
        requests = {}
        for v, app in apps.items():
            app.freeze()
            requests[v] = make_mocked_request("POST", INFER_PATH, app=app)
        for _ in range(rounds):
            for v, app in apps.items():
                handle, req = app._handle, requests[v]
                t0 = time.process_time()
                for _ in range(calls):
                    await handle(req)
                us[v].append((time.process_time() - t0) / calls * 1e6)

    asyncio.run(run())
    med = {v: statistics.median(x) for v, x in us.items()}
    print(
        f"   in process, app._handle on a mocked request ({rounds} x {calls} calls, CPU us per "
        "call, median (range)):"
    )
    for v, label in VARIANTS.items():
        added = "" if v == "none" else f"  added {med[v] - med['none']:+.2f} us"
        print(f"     {label:<22} {_spread(us[v], '5.2f')}{added}")


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
    p.add_argument("--requests", type=int, default=4000)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--expo-runs", type=int, default=30)
    p.add_argument("--scenario-seconds", type=float, default=5.0)
    p.add_argument("--only-aiohttp", action="store_true", help="run part 2 alone")
    p.add_argument("--serve", choices=[*VARIANTS, *PAIRS], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    stack = load_stack(args.stack)
    if args.serve:
        web.run_app(
            variant_app(stack, args.serve),
            host="127.0.0.1",
            port=args.port,
            access_log=None,
            print=None,
        )
        return 0
    if not args.only_aiohttp:
        bench_hot_path(stack, args.calls)
    bench_servers(args.stack, args.requests, args.rounds, args.concurrency)
    bench_same_process(args.stack, args.requests, args.rounds, args.concurrency)
    bench_in_process(stack, 20_000, args.rounds)
    if args.only_aiohttp:
        return 0
    bench_exposition(stack, 50, 3, args.expo_runs)
    bench_latency_model(stack, args.scenario_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
