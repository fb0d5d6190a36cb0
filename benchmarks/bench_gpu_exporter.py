"""GPU exporter: collection time on simulated GPUs, and NVML calls side by side with nvitop.

1. Collection time (fast tier, slow tier, a scrape's serialisation) for 8 and
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

The metric sets differ: nvitop's covers utilisation, memory, clocks, power,
temperature, fan, PCIe and NVLink throughput and per-process values; this
exporter covers those (no fan) plus energy, ECC, remapped rows, PCIe replays,
throttle reasons, XIDs and MIG. The call counts below are for each exporter's
full set, and "same metrics" restates this exporter's count for nvitop's set.

Runs without nvitop-exporter installed (the peer columns then say so).
Exits 0; numbers only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest

from exporters.gpu.exporter import GpuExporter
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
        for label, fn in (
            ("fast", exp.collect_fast),
            ("slow", exp.collect_slow),
            ("scrape", lambda r=registry: generate_latest(r)),
        ):
            xs = timed(fn, rounds)
            print(f"{n:>5} {label:<12} {statistics.median(xs):>8.3f} {pct(xs, 0.99):>8.3f}")
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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=300)
    args = ap.parse_args()
    collection_times(args.rounds)
    calls_side_by_side(min(args.rounds, 50))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
