"""Scheduler core benchmarks: rebalance decision latency and submission+placement throughput.

Pure core, fake clock, one process (one core). Prints numbers and exits 0.

Rebalance latency: a full cluster (P0 replicas on its own GPUs, P1 and P2 full
of 1-8 GPU jobs started hours ago with assorted checkpoints) with the rest of
the jobs queued in P2. Each sample is one P0 ``rebalance`` alert end to end on
the core: plan (idle GPUs, victims in checkpoint-aware order), hold, signal,
record. Between samples (untimed) the burst is cancelled and its victims ack,
so the freed GPUs go to the queue and the cluster stays full. Side by side, the
same victim choice done the naive way (build every candidate, sort with the
same ``victim_key``) shows what the per-pool victim index saves.

Throughput: jobs submitted into a cluster whose jobs keep finishing, so that
every submission is placed (or queued and placed later); jobs placed per second
of wall time.

Queue costs (``--queues``): what a queue's dead entries cost, if it keeps any.
The time to build the 16,000-GPU state with 160,000 jobs (seeded running, the
rest submitted one by one into a full cluster); the cost of one submission into a
full cluster after seeding 1k, 4k and 16k jobs; and a thrashing workload on 16,000
GPUs: short jobs finish every second and the ones behind a blocked queue head (a
job as large as its pool) take their GPUs, ticks per second over a few minutes of
simulated time. The new policy rules are off where the checkout has them (the
queues are what is measured, so both sides make the same decisions).

Before and after: ``--against DIR`` runs this same script, in alternation, on the
scheduler package of this checkout and of the checkout in DIR (each round one child
process per checkout, ``PYTHONPATH`` pointing at it), ``--rounds`` times, and prints
every round and the median of each number side by side. Alternating spreads the
noise of a shared machine over both sides; the ``cpu_`` latencies count the thread's
CPU time instead of wall time, so that other processes' load inflates them less.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

from scheduler.core import (
    Action,
    ClusterSpec,
    GpuSpec,
    JobKind,
    JobRequest,
    JobState,
    JobView,
    PolicySpec,
    PoolSpec,
    Scheduler,
    order_victims,
)
from scheduler.core.ordering import Candidate, work_lost

T0 = 1_800_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def policy(**fields: float) -> PolicySpec:
    """A policy with the fields this checkout knows: ``--against`` runs older ones too."""
    known = {f.name for f in dataclasses.fields(PolicySpec)}
    return PolicySpec(**{k: v for k, v in fields.items() if k in known})  # type: ignore[arg-type]


# The rules that would make the two sides decide differently, off: lifetime caps,
# draining, the boost, cost before class.
SAME_DECISIONS: dict[str, float] = {
    "max_preemptions_checkpointing": 0,
    "max_preemptions_non_checkpointing": 0,
    "drain_after_seconds": 0.0,
    "preemption_priority_boost": 0.0,
    "cost_before_class": False,
}


def make_cluster(gpus: int) -> ClusterSpec:
    p0, p1 = gpus // 10, gpus // 2
    p2 = gpus - p0 - p1
    pools = (
        PoolSpec("p0", "P0", 1000, p0, p0, 0, gpus, False, 0, 10_000),
        PoolSpec("p1", "P1", 500, p1, p1 // 4, p1 - p1 // 4, p1 // 4, True, 0, 10_000),
        PoolSpec("p2", "P2", 100, p2, 0, p2, p2, True, 0, 10_000),
    )
    homes = ["p0"] * p0 + ["p1"] * p1 + ["p2"] * p2
    specs = tuple(GpuSpec(f"GPU-{i:06d}", f"node-{i // 8}", homes[i]) for i in range(gpus))
    return ClusterSpec(pools, specs, gpus_per_new_node=8)


def build(
    gpus: int, jobs: int, seed: int = 7, rules: dict[str, float] | None = None
) -> tuple[Scheduler, Clock]:
    rnd = random.Random(seed)
    clock = Clock()
    # A budget large enough not to run out over hundreds of samples, no lifetime
    # cap: the benchmark measures the data structures, not the guards protecting jobs.
    core = Scheduler(
        make_cluster(gpus),
        policy(
            **{
                **(rules or {}),
                "min_runtime_seconds": 300.0,
                "preemption_budget": 1_000_000,
                "max_preemptions_checkpointing": 0,
                "max_preemptions_non_checkpointing": 0,
            }
        ),
        clock=clock,
    )
    reqs: list[JobRequest] = []
    p0 = gpus // 10
    reqs += [
        JobRequest(f"r{i}", "p0", 1, JobKind.INFERENCE, started_at=T0 - 7200) for i in range(p0)
    ]
    for pool, cap in (("p1", gpus // 2), ("p2", gpus - p0 - gpus // 2)):
        used = 0
        n = 0
        while True:
            size = rnd.choice((1, 1, 2, 4, 8))
            if used + size > cap:
                break
            started = T0 - rnd.uniform(600, 6 * 3600)
            ckpt = rnd.random() < 0.7
            reqs.append(
                JobRequest(
                    f"{pool}-{n}",
                    pool,
                    size,
                    JobKind.TRAINING if pool == "p1" else JobKind.BATCH,
                    checkpointable=ckpt,
                    started_at=started,
                    last_checkpoint=rnd.uniform(started, T0) if ckpt else None,
                )
            )
            used += size
            n += 1
    core.seed(reqs)
    queued = jobs - len(reqs)
    for i in range(max(0, queued)):
        core.submit(JobRequest(f"q{i}", "p2", rnd.choice((1, 2, 4)), JobKind.BATCH))
    return core, clock


def naive_victims(running: list[JobView], need: int, now: float) -> list[Candidate]:
    """The baseline: every running lower-priority job built into a candidate and sorted."""
    cands = [
        Candidate(
            j.id,
            False,
            100 if j.pool == "p2" else 500,
            work_lost(
                gpus=j.gpus,
                stateless=False,
                started_at=j.started_at or now,
                last_checkpoint=j.last_checkpoint,
                now=now,
            ),
            j.gpus,
            j.started_at or now,
        )
        for j in running
    ]
    return order_victims(cands, need)[:need]


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def bench_rebalance(gpus: int, jobs: int, samples: int) -> dict[str, float]:
    core, clock = build(gpus, jobs)
    lat: list[float] = []
    cpu: list[float] = []  # the thread's CPU time: what other sessions' load does not inflate
    naive: list[float] = []
    moved = 0
    gc.collect()  # the build's garbage is not the decision's cost
    for i in range(samples):
        clock.now += 5.0
        c0 = time.thread_time()
        t0 = time.perf_counter()
        ds = core.alert(pool="p0", action="rebalance", firing=True, correlation_id=f"a{i}")
        lat.append(time.perf_counter() - t0)
        cpu.append(time.thread_time() - c0)
        # Literals, not Action members: this also runs on checkouts from before the
        # enums (--against), and Action is a StrEnum, equal to its value.
        # The grant's decision (jobs the pass after it places may follow it).
        grant = next((d for d in reversed(ds) if d.action == Action.REBALANCE), None)
        assert grant is not None, ds
        moved += grant.gpus
        # Untimed: give the GPUs back so the next sample sees a full cluster again.
        burst = grant.job
        assert burst is not None
        victims = [d.job for d in ds if d.action == Action.PREEMPT and d.job]
        core.cancel(burst)
        for v in victims:
            core.ack_preemption(v)
    # The baseline on the final state, in its own loop so that its garbage does
    # not land in the timed rebalances; building the job list is not timed.
    running = [j for j in core.iter_jobs() if j.pool != "p0" and j.state is JobState.RUNNING]
    for _ in range(50):
        t0 = time.perf_counter()
        naive_victims(running, 8, clock.now)
        naive.append(time.perf_counter() - t0)
    return {
        "p50_ms": 1e3 * statistics.median(lat),
        "p99_ms": 1e3 * pct(lat, 0.99),
        "max_ms": 1e3 * max(lat),
        "cpu_p50_ms": 1e3 * statistics.median(cpu),
        "cpu_p99_ms": 1e3 * pct(cpu, 0.99),
        "naive_p50_ms": 1e3 * statistics.median(naive),
        "naive_p99_ms": 1e3 * pct(naive, 0.99),
        "gpus_per_rebalance": moved / samples,
    }


def bench_throughput(gpus: int, jobs: int) -> tuple[float, float]:
    """Jobs placed per second of wall time, and per second of the thread's CPU time."""
    clock = Clock()
    core = Scheduler(make_cluster(gpus), PolicySpec(), clock=clock)
    rnd = random.Random(3)
    pools = ("p1", "p2")
    placed = 0
    per_step = gpus // 4
    c0 = time.thread_time()
    t0 = time.perf_counter()
    n = 0
    while n < jobs:
        for _ in range(per_step):
            ds = core.submit(
                JobRequest(
                    f"j{n}",
                    pools[n % 2],
                    rnd.choice((1, 1, 2)),
                    JobKind.BATCH,
                    duration_seconds=rnd.uniform(1, 4),
                )
            )
            placed += sum(1 for d in ds if d.action == Action.PLACE)
            n += 1
        clock.now += 1.0
        placed += sum(1 for d in core.tick() if d.action == Action.PLACE)
    wall = time.perf_counter() - t0
    return placed / wall, placed / (time.thread_time() - c0)


def bench_build(gpus: int, jobs: int) -> float:
    """Seconds to build the state: running jobs seeded, the rest submitted one by one."""
    gc.collect()
    t0 = time.perf_counter()
    build(gpus, jobs, rules=SAME_DECISIONS)
    return time.perf_counter() - t0


def bench_submit_after_seed(seeded: int, submits: int = 300) -> float:
    """Microseconds per submission into a full cluster of ``seeded`` 1-GPU jobs just seeded."""
    clock = Clock()
    core = Scheduler(make_cluster(seeded), policy(**SAME_DECISIONS), clock=clock)
    view = {p: core.pool_view(p) for p in ("p0", "p1", "p2")}
    reqs = [
        JobRequest(f"s{p}{i}", p, 1, JobKind.BATCH, started_at=T0 - 600)
        for p in ("p0", "p1", "p2")
        for i in range(view[p].nominal_gpus)
    ]
    core.seed(reqs)
    gc.collect()
    c0 = time.thread_time()
    for i in range(submits):
        core.submit(JobRequest(f"q{i}", "p2", 1, JobKind.BATCH))
    return 1e6 * (time.thread_time() - c0) / submits


def bench_thrash(gpus: int, jobs: int, ticks: int) -> tuple[float, float]:
    """Ticks per second (CPU time) and the p99 tick in ms: short jobs finish every second
    and the jobs behind a blocked head take their GPUs, leaving its queue as they go."""
    rnd = random.Random(11)
    clock = Clock()
    core = Scheduler(make_cluster(gpus), policy(**SAME_DECISIONS), clock=clock)
    p2 = core.pool_view("p2").nominal_gpus
    running = [
        JobRequest(
            f"r{p}{i}", p, 1, JobKind.BATCH, duration_seconds=rnd.uniform(1, 600), started_at=T0
        )
        for p in ("p1", "p2")
        for i in range(core.pool_view(p).nominal_gpus)
    ]
    core.seed(running)
    # The head wants all of P2: while small jobs keep finishing and starting it never fits.
    # Queued in one call (seeds without a start are queued as if submitted): building the
    # queue is not what is measured, and one by one it takes minutes with dead entries.
    queue = [JobRequest("head", "p2", p2, JobKind.BATCH)] + [
        JobRequest(f"q{i}", "p2", 1, JobKind.BATCH, duration_seconds=rnd.uniform(30, 600))
        for i in range(jobs - len(running) - 1)
    ]
    core.seed(queue)
    gc.collect()
    lat: list[float] = []
    c0 = time.thread_time()
    for _ in range(ticks):
        clock.now += 1.0
        t0 = time.thread_time()
        core.tick()
        lat.append(time.thread_time() - t0)
    return ticks / (time.thread_time() - c0), 1e3 * pct(lat, 0.99)


def measure_queues() -> dict[str, float]:
    """The queue costs of one run (``--queues``)."""
    out: dict[str, float] = {"build_16k_gpus_160k_jobs_s": bench_build(16_000, 160_000)}
    for n in (1000, 4000, 16_000):
        out[f"submit_after_seeding_{n // 1000}k_us"] = bench_submit_after_seed(n)
    out["thrash_ticks_per_s"], out["thrash_tick_p99_ms"] = bench_thrash(16_000, 160_000, 600)
    return out


def measure() -> dict[str, float]:
    """Every number of one run, for ``--json`` and the side-by-side rounds."""
    out: dict[str, float] = {}
    for gpus, jobs, samples in ((1000, 10_000, 400), (4000, 40_000, 400)):
        r = bench_rebalance(gpus, jobs, samples)
        for k in ("p50_ms", "p99_ms", "max_ms", "cpu_p50_ms", "cpu_p99_ms"):
            out[f"{gpus}_{k}"] = r[k]
    out["throughput_jobs_per_s"], out["cpu_throughput_jobs_per_s"] = bench_throughput(4000, 40_000)
    return out


def side_by_side(other: Path, rounds: int, queues: bool) -> int:
    here = Path(__file__).resolve().parents[1]
    sides = {"this": here, "against": other.resolve()}
    runs: dict[str, list[dict[str, float]]] = {k: [] for k in sides}
    print(f"this:    {sides['this']}\nagainst: {sides['against']}")
    for i in range(rounds):
        # Alternate which side goes first, so that neither always runs warmer.
        for name in sorted(sides, reverse=bool(i % 2)):
            env = {**os.environ, "PYTHONPATH": str(sides[name])}
            child = subprocess.run(
                [sys.executable, __file__, "--json", *(["--queues"] if queues else [])],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            )
            runs[name].append(json.loads(child.stdout))
            r = runs[name][-1]
            print(
                f"round {i + 1} {name:>7}: "
                + "  ".join(f"{k} {v:,.3f}" for k, v in r.items() if "max" not in k)
            )
    print(f"\nmedian of {rounds} rounds       this    against   change")
    for k in runs["this"][0]:
        a = statistics.median(r[k] for r in runs["this"])
        b = statistics.median(r[k] for r in runs["against"])
        print(f"{k:>24} {a:10.3f} {b:10.3f} {100 * (a - b) / b:+7.1f}%")
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--json", action="store_true", help="one run, its numbers as JSON")
    ap.add_argument("--against", type=Path, help="another checkout to compare with, side by side")
    ap.add_argument("--rounds", type=int, default=5, help="alternating rounds with --against")
    ap.add_argument("--queues", action="store_true", help="the queue costs instead")
    args = ap.parse_args()
    if args.json:
        print(json.dumps(measure_queues() if args.queues else measure()))
        return 0
    if args.against is not None:
        return side_by_side(args.against, args.rounds, args.queues)
    if args.queues:
        print("queue costs (thread CPU time; the new policy rules off, queues measured)")
        for k, v in measure_queues().items():
            print(f"{k:>32} {v:12,.3f}")
        return 0
    print("rebalance decision latency on the pure core (one P0 alert, 8 GPUs, full cluster)")
    print(f"{'size':>23} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} | naive full sort p50/p99 ms")
    results = {}
    for gpus, jobs, samples in ((1000, 10_000, 400), (4000, 40_000, 400)):
        r = bench_rebalance(gpus, jobs, samples)
        results[gpus] = r
        print(
            f"{gpus:>6} GPUs {jobs:>6} jobs {r['p50_ms']:8.3f} {r['p99_ms']:8.3f} {r['max_ms']:8.3f}"
            f" | {r['naive_p50_ms']:.3f} / {r['naive_p99_ms']:.3f}"
            f"   ({r['gpus_per_rebalance']:.1f} GPUs moved per rebalance)"
        )
    growth = results[4000]["p99_ms"] / results[1000]["p99_ms"]
    print(
        f"p99 growth from 1,000 to 4,000 GPUs (4x): {growth:.2f}x  (goals: p99 <= 1 ms and <= 5 ms)"
    )
    tput, _ = bench_throughput(4000, 40_000)
    print(f"submission + placement throughput: {tput:,.0f} jobs/s on one core (goal >= 5,000)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
