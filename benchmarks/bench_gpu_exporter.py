"""GPU exporter: collection time, NVML calls beside nvitop, and HTTP scrapes beside prometheus_client.

1. Collection time (fast tier, slow tier, a snapshot's render) for 8 and
   64 simulated GPUs, on the simulated backend. Goal (issue 5): a fast 8-GPU
   collection under 2 ms.
2. NVML calls per GPU per collection, this exporter against nvitop-exporter,
   in one run on the same counting fake bindings (exporters.nvml.fakepynvml:
   a stand-in for the ``pynvml`` module over the simulated GPUs). Both run
   through ``pynvml``: this exporter through its real backend
   (exporters.nvml.real), nvitop through its own libnvml layer. nvitop's
   exporter refreshes every metric every interval; this exporter splits a
   fast tier from a slow one, so both per-cycle counts and the average over
   one slow period are printed. Goal: at most a quarter of nvitop's calls.

3. HTTP ``GET /metrics`` at 8, 64 and 256 GPUs, side by side with a plain
   prometheus_client exporter of the same samples: its families built once per
   collection (the cheapest a custom collector can be) and served by
   prometheus_client's own server (``generate_latest``; gzip at level 9; the
   OpenMetrics writer when asked). Each exporter runs in its own process; a
   collection runs before every scrape, so every scrape renders a new snapshot
   and no cached body is timed. Time at the client and the server's CPU, plain
   text, gzip, and what Prometheus 2 asks for (OpenMetrics, gzip); bytes plain
   and gzip. Then four concurrent scrapes of one collection. Goals (issue 17):
   scrape time at 256 GPUs <= 0.25x the plain exporter; gzip bytes <= 0.1x plain.

The metric sets differ in part 2: nvitop's covers utilisation, memory, clocks, power,
temperature, fan, PCIe and NVLink throughput and per-process values; this
exporter covers those (no fan) plus energy, ECC, remapped rows, PCIe replays,
throttle reasons, XIDs and MIG. The call counts below are for each exporter's
full set, and "same metrics" restates this exporter's count for nvitop's set.

Runs without nvitop-exporter installed (the peer columns then say so).
Exits 0; numbers only.
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpload
from aiohttp import web
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from deploy.procs import free_port
from exporters.exposition import Format
from exporters.gpu.exporter import GpuExporter
from exporters.gpu.server import build_app
from exporters.nvml.fakepynvml import FakePynvml, fake_pynvml
from exporters.nvml.real import NvmlBackend
from exporters.nvml.sim import SimBackend

SLOW_EVERY = 5  # the default fast (1 s) and slow (5 s) intervals


def busy(sim: SimBackend) -> None:
    """Every GPU loaded, with two processes (the benchmark's own pid: nvitop looks it up)."""
    pid = os.getpid()
    for i, g in enumerate(sim.gpus):
        sim.set(
            g.uuid,
            utilization=0.9,
            memory_used_bytes=40 * 1024**3,
            power_watts=550.0,
            pcie_tx_bytes_per_second=2e9,
            nvlink_tx_bytes_per_second=1e11,
        )
        sim.set_processes(g.uuid, [(pid, 20 * 1024**3), (pid + 1 + i, 20 * 1024**3)])


def timed(fn: Callable[[], object], rounds: int) -> list[float]:
    out = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return out


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def collection_times(rounds: int) -> None:
    print("collection time on the simulated backend (ms)")
    print(f"{'gpus':>5} {'tier':<12} {'median':>8} {'p99':>8}")
    for n in (8, 64):
        sim = SimBackend.cluster(n // 8, 8)
        busy(sim)
        registry = CollectorRegistry()
        exp = GpuExporter(sim, registry)
        exp.collect_once()

        for label, fn in (("fast", exp.collect_fast), ("slow", exp.collect_slow)):
            xs = timed(fn, rounds)
            print(f"{n:>5} {label:<12} {statistics.median(xs):>8.3f} {pct(xs, 0.99):>8.3f}")
        xs = []
        for _ in range(rounds):
            exp.collect_fast()  # a new snapshot each time: no cached body is timed
            snap = exp.snapshot()
            t0 = time.perf_counter()
            snap.body(Format.TEXT)
            xs.append((time.perf_counter() - t0) * 1e3)
        print(f"{n:>5} {'render':<12} {statistics.median(xs):>8.3f} {pct(xs, 0.99):>8.3f}")
    print()


def ours(gpus: int) -> tuple[FakePynvml, dict[str, float]]:
    sim = SimBackend.cluster(1, gpus)
    busy(sim)
    fake = fake_pynvml(sim)
    exp = GpuExporter(NvmlBackend("bench", pynvml=fake), CollectorRegistry())
    exp.collect_once()  # init and first cycle are not what a steady state costs
    counts = {}
    for label, fn in (("fast", exp.collect_fast), ("slow", exp.collect_slow)):
        fake.calls.clear()
        fn()
        counts[label] = sum(fake.calls.values()) / gpus
    # nvitop's set on this exporter: everything but ECC, remapped rows, replays,
    # energy (all in the one field-value call anyway), throttle reasons, XIDs, MIG.
    counts["fast, same metrics"] = counts["fast"] - 1 - 1 / gpus  # throttle, xid drain
    counts["slow, same metrics"] = counts["slow"] - 1  # MIG mode
    return fake, counts


def nvitop(gpus: int, rounds: int) -> tuple[float, float, dict[str, int]] | str:
    """nvitop-exporter's per-GPU update on the same fake; (calls/GPU, ms/collection, by call)."""
    sim = SimBackend.cluster(1, gpus)
    busy(sim)
    fake = fake_pynvml(sim)
    saved = sys.modules.get("pynvml")
    sys.modules["pynvml"] = fake  # nvitop binds the module at import time
    try:
        import io
        from contextlib import redirect_stderr

        with redirect_stderr(io.StringIO()):  # it warns that this pynvml has no ctypes layer
            from nvitop import Device
            from nvitop_exporter.exporter import PrometheusExporter
    except ImportError:
        return "nvitop-exporter not installed (pip install nvitop-exporter)"
    finally:
        if saved is not None:
            sys.modules["pynvml"] = saved
    devices = Device.all()
    exp = PrometheusExporter(devices, "bench", registry=CollectorRegistry(), interval=1.0)

    def collect() -> None:
        # One iteration of its collect() loop, without the host metrics and the sleep.
        for d in devices:
            exp.update_device(d)

    collect()  # warm: its first NVLink read samples twice, 20 ms apart
    fake.calls.clear()
    collect()
    per_gpu = sum(fake.calls.values()) / gpus
    by_call = dict(fake.calls.most_common())
    ms = statistics.median(timed(collect, rounds))
    return per_gpu, ms, by_call


def calls_side_by_side(rounds: int) -> None:
    gpus = 8
    _, mine = ours(gpus)
    peer = nvitop(gpus, rounds)
    avg = mine["fast"] + mine["slow"] / SLOW_EVERY
    avg_same = mine["fast, same metrics"] + mine["slow, same metrics"] / SLOW_EVERY
    print(f"NVML calls per GPU per collection, {gpus} GPUs, same fake bindings")
    print(f"{'':<52} {'novabrain':>10} {'nvitop':>10} {'ratio':>7}")
    if isinstance(peer, str):
        print(f"  {peer}")
        for k, v in mine.items():
            print(f"{k:<52} {v:>10.2f}")
        return
    per_gpu, ms, by_call = peer
    rows = (
        ("fast cycle (every 1 s), full set", mine["fast"]),
        ("fast cycle, nvitop's metric set", mine["fast, same metrics"]),
        (f"average over a slow period (1/{SLOW_EVERY} slow), full set", avg),
        ("average over a slow period, nvitop's metric set", avg_same),
        ("slow cycle alone (every 5 s), full set", mine["slow"]),
    )
    for label, v in rows:
        print(f"{label:<52} {v:>10.2f} {per_gpu:>10.2f} {v / per_gpu:>7.2f}")
    print(f"nvitop's calls per collection, all {gpus} GPUs: {by_call}")
    fake = fake_pynvml(SimBackend.cluster(1, gpus))
    busy(fake.sim)
    exp = GpuExporter(NvmlBackend("bench", pynvml=fake), CollectorRegistry())
    exp.collect_once()
    fast = statistics.median(timed(exp.collect_fast, rounds))
    slow = statistics.median(timed(exp.collect_slow, rounds))
    print(
        f"ms per {gpus}-GPU collection on the same fake bindings: nvitop {ms:.3f}; "
        f"novabrain fast tier {fast:.3f}, slow tier {slow:.3f}"
    )


# ----------------------------------------------------------------------------- 3. HTTP scrapes

ACCEPT = {
    "text": {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "identity"},
    "gzip": {"Accept": "text/plain;version=0.0.4", "Accept-Encoding": "gzip"},
    "prometheus": {
        "Accept": "application/openmetrics-text;version=1.0.0,application/openmetrics-text;"
        "version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        "Accept-Encoding": "gzip",
    },
}
EXPORTERS = ("novabrain", "plain")


def loaded_exporter(gpus: int) -> GpuExporter:
    sim = SimBackend.cluster(gpus // 8, 8)
    busy(sim)
    exp = GpuExporter(sim, CollectorRegistry())
    exp.collect_once()
    return exp


class SameSamples(Collector):
    """A plain prometheus_client collector serving the novabrain exporter's samples: families
    rebuilt once per collection as prometheus_client's own objects, yielded per scrape."""

    def __init__(self, exp: GpuExporter) -> None:
        self._exp = exp
        self._families: tuple[Metric, ...] = ()
        self.refresh()

    def refresh(self) -> None:
        out = []
        for f in self._exp.snapshot().families:
            m = Metric(f.name, f.documentation, f.type)
            for s in f.samples:
                m.add_sample(s.name, s.labels, s.value)
            out.append(m)
        self._families = tuple(out)

    def collect(self) -> Iterator[Metric]:
        yield from self._families


def serve(kind: str, gpus: int, port: int) -> None:
    """One exporter of part 3, until killed. ``POST /collect`` runs a fast collection (and,
    for the plain exporter, rebuilds its families); ``GET /cpu`` answers the CPU seconds."""
    exp = loaded_exporter(gpus)
    if kind == "novabrain":

        async def collect(_: web.Request) -> web.Response:
            exp.collect_fast()
            return web.Response(text="ok")

        async def cpu(_: web.Request) -> web.Response:
            return web.Response(text=repr(time.process_time()))

        app = build_app(exp)
        app.router.add_post("/collect", collect)
        app.router.add_get("/cpu", cpu)
        web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)
        return
    registry = CollectorRegistry()
    same = SameSamples(exp)
    registry.register(same)
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, object], start_response: Callable[..., object]) -> list[bytes]:
        path = environ["PATH_INFO"]
        if path in ("/collect", "/cpu"):
            if path == "/collect":
                exp.collect_fast()
                same.refresh()
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [repr(time.process_time()).encode()]
        return metrics(environ, start_response)  # type: ignore[no-any-return]

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    make_server("127.0.0.1", port, app, ThreadingWSGIServer, handler_class=Quiet).serve_forever()


def _request(port: int, method: str, path: str, headers: dict[str, str]) -> tuple[bytes, float]:
    """(body as sent, seconds from request to the last byte)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        t0 = time.perf_counter()
        conn.request(method, path, headers=headers)
        body = conn.getresponse().read()
        return body, time.perf_counter() - t0
    finally:
        conn.close()


def _cpu(port: int) -> float:
    return float(_request(port, "GET", "/cpu", {})[0])


def _start(kind: str, gpus: int) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [sys.executable, __file__, "--serve", kind, "--gpus", str(gpus), "--port", str(port)]
    return httpload.spawn(argv, lambda: _cpu(port), f"the {kind} exporter"), port


def _scrape(port: int, accept: str) -> tuple[float, float, int]:
    """After a fresh collection: (ms at the client, server CPU ms, bytes) of one scrape."""
    _request(port, "POST", "/collect", {})
    cpu = _cpu(port)
    body, seconds = _request(port, "GET", "/metrics", ACCEPT[accept])
    return seconds * 1e3, (_cpu(port) - cpu) * 1e3, len(body)


def _concurrent(port: int, scrapers: int) -> float:
    """Server CPU ms for ``scrapers`` simultaneous Prometheus-style scrapes of one collection."""
    _request(port, "POST", "/collect", {})
    cpu = _cpu(port)
    threads = [
        threading.Thread(target=_request, args=(port, "GET", "/metrics", ACCEPT["prometheus"]))
        for _ in range(scrapers)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return (_cpu(port) - cpu) * 1e3


def _med(xs: list[float]) -> str:
    return f"{statistics.median(xs):7.2f} ({min(xs):6.2f}..{max(xs):6.2f})"


def scrapes_side_by_side(rounds: int, sizes: tuple[int, ...]) -> None:
    print(
        f"3. HTTP GET /metrics after a fresh collection, {rounds} rounds interleaved; each "
        f"exporter in its own process, the client in this one; {os.cpu_count()} CPUs shared "
        "with other sessions (noisy: medians and ranges)"
    )
    for gpus in sizes:
        servers = {k: _start(k, gpus) for k in EXPORTERS}
        ms = {(k, a): [] for k in EXPORTERS for a in ACCEPT}  # type: dict[tuple[str, str], list[float]]
        cpu = {(k, a): [] for k in EXPORTERS for a in ACCEPT}  # type: dict[tuple[str, str], list[float]]
        size: dict[tuple[str, str], int] = {}
        together: dict[str, list[float]] = {k: [] for k in EXPORTERS}
        try:
            for k in EXPORTERS:  # warm-up
                _scrape(servers[k][1], "gzip")
            for r in range(rounds):
                order = EXPORTERS if r % 2 == 0 else EXPORTERS[::-1]
                for a in ACCEPT:
                    for k in order:
                        t, c, n = _scrape(servers[k][1], a)
                        ms[(k, a)].append(t)
                        cpu[(k, a)].append(c)
                        size[(k, a)] = n
                for k in order:
                    together[k].append(_concurrent(servers[k][1], 4))
            body, _ = _request(servers["novabrain"][1], "GET", "/metrics", ACCEPT["text"])
        finally:
            for proc, _ in servers.values():
                proc.kill()
                proc.wait(10)
        samples = sum(1 for line in body.splitlines() if line and not line.startswith(b"#"))
        print(f"   {gpus} GPUs, {samples} samples")
        print(
            f"     {'':<42} {'novabrain ms':>26} {'plain ms':>26} {'ratio':>6}   server CPU ms, novabrain | plain"
        )
        for a, label in (
            ("text", "text format, plain"),
            ("gzip", "text format, gzip"),
            ("prometheus", "as Prometheus 2 asks (OpenMetrics, gzip)"),
        ):
            ratio = statistics.median(ms[("novabrain", a)]) / statistics.median(ms[("plain", a)])
            c_ratio = statistics.median(cpu[("novabrain", a)]) / statistics.median(
                cpu[("plain", a)]
            )
            print(
                f"     {label:<42} {_med(ms[('novabrain', a)]):>26} {_med(ms[('plain', a)]):>26} "
                f"{ratio:6.3f}   {statistics.median(cpu[('novabrain', a)]):6.2f} | "
                f"{statistics.median(cpu[('plain', a)]):6.2f} ({c_ratio:.3f})"
            )
        for k in EXPORTERS:
            plain, gz = size[(k, "text")], size[(k, "gzip")]
            print(
                f"     bytes, {k:<35} plain {plain:>9,}   gzip {gz:>8,} ({gz / plain:.3f} of plain)"
            )
        print(
            "     4 concurrent Prometheus-style scrapes of one collection, server CPU ms: "
            f"novabrain {_med(together['novabrain'])}, plain {_med(together['plain'])}"
        )
    print()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--scrape-rounds", type=int, default=15)
    ap.add_argument("--only-scrapes", action="store_true", help="run part 3 alone")
    ap.add_argument("--serve", choices=EXPORTERS, help=argparse.SUPPRESS)  # a part 3 exporter
    ap.add_argument("--gpus", type=int, default=8, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve, args.gpus, args.port)
        return 0
    if not args.only_scrapes:
        collection_times(args.rounds)
        calls_side_by_side(min(args.rounds, 50))
        print()
    scrapes_side_by_side(args.scrape_rounds, (8, 64, 256))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
