"""Trace replay speed: event-driven (``Scheduler.next_wakeup``) beside the tick-stepping loop.

Both loops replay the same trace through the same core with the same world; the
tick-stepping one ticks every ``--tick`` seconds (60) instead of jumping from event to
event. It is a fair baseline, not the old simulator's loop: arrivals, the world's
events (acknowledgements, checkpoints, nodes joining, P0's load and alert) and the end
of each job's run happen at their own times within a step, and it ticks at each run's
end (the world knows when the work it started is done). It never asks the core's
``next_wakeup``: every other instant the core keeps time for (a grace period's end, a
guard letting a victim go, a window edge, a pool's bursts going back, a scale-up
wait, a pass left unsettled) waits for the next grid point.

Printed per policy: jobs replayed per second (wall and process CPU time, one core),
the core's ticks and calls, and how far the two loops' results lie apart: every job's
first start and its end, compared job by job (share within one tick, and the largest
gap), the headline figures side by side, and the first decision where the two loops
part (which timer the tick loop took late, and what it changed). Once they part, the
state differs (another victim, another node), so gaps can add up along a queue.
``--aligned`` rounds every time of the replay (submissions, durations, the world's
delays, the policy's timers) up to a multiple of the tick: then no timer falls between
grid points and the two loops take the very same decisions under every policy, at the
very same instants (tests/scheduler/sim/test_tick_baseline.py and, for the core alone,
tests/scheduler/core/test_next_wakeup.py check that).

    python benchmarks/bench_simulate.py                      # the sample, repeated to 10,000 jobs
    python benchmarks/bench_simulate.py --trace cluster04.csv --policies novabrain
    python benchmarks/bench_simulate.py --jobs 2000 --aligned  # the loops on a common grid

The machine is shared: run it twice and compare within one run. Exit 2 on a bad trace.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.stack import load_stack  # noqa: E402
from scheduler.config import cluster_spec, policy_spec  # noqa: E402
from scheduler.core.model import Decision  # noqa: E402
from scheduler.sim import metrics  # noqa: E402
from scheduler.sim.errors import SimError  # noqa: E402
from scheduler.sim.policies import BUILTIN, policy_runs  # noqa: E402
from scheduler.sim.reader import Trace, TraceJob, read  # noqa: E402
from scheduler.sim.replay import Recorder, Replay  # noqa: E402
from scheduler.sim.scenario import aligned, map_jobs, p0_demand, start_of, world  # noqa: E402

SAMPLE = ROOT / "scheduler" / "sim" / "traces" / "elasticflow-sample.csv"


def repeated(trace: Trace, jobs: int) -> Trace:
    """The trace again and again, each copy after the last (ids suffixed), to ``jobs`` jobs."""
    if not trace.jobs or len(trace.jobs) >= jobs:
        return trace
    first = trace.jobs[0].submit
    span = trace.jobs[-1].submit - first + 3600.0
    out: list[TraceJob] = []
    k = 0
    while len(out) < jobs:
        out += [
            replace(j, id=f"{j.id}~{k}", submit=j.submit + k * span)
            for j in trace.jobs[: jobs - len(out)]
        ]
        k += 1
    return Trace(out, trace.epoch, f"{trace.source} x{k}", rows=len(out))


def replay(stack, run, jobs, start, w, decisions=None):  # type: ignore[no-untyped-def]
    keep = None if decisions is None else decisions.extend
    r = Replay(run, jobs, w, start=start, p0=p0_demand(stack, start), on_decisions=keep)
    c0 = time.process_time()
    rec = r.run()
    return rec, time.process_time() - c0


def _same(x: Decision, y: Decision) -> bool:
    return (x.action, x.job, x.pool, x.gpus, x.result) == (
        y.action,
        y.job,
        y.pool,
        y.gpus,
        y.result,
    )


def _said(d: Decision, t0: float) -> str:
    return f"{d.action} at {d.at - t0:,.0f}s ({d.reason[:80]})"


def parting(
    a: Sequence[Decision], b: Sequence[Decision], tick: float
) -> tuple[list[str], float | None]:
    """Where the tick loop first took a decision late, and where the two loops first part.

    Late: the same decision at a later instant (a timer the core kept, seen at the grid).
    Parted: another action, job or size, or a tick or more apart. Also returns the
    instant they parted at (None: never).
    """
    t0 = a[0].at if a else 0.0
    out: list[str] = []
    for x, y in zip(a, b, strict=False):
        if not out and _same(x, y) and y.at > x.at:
            out.append(f"first late: {_said(x, t0)}; the tick loop {y.at - x.at:.0f}s later")
        if not _same(x, y) or abs(x.at - y.at) > tick:
            out.append(f"first parted: event loop {_said(x, t0)}; tick loop {_said(y, t0)}")
            return out, min(x.at, y.at)
    if len(a) != len(b):
        out.append(f"the same decisions, but one loop took {abs(len(a) - len(b))} more")
    elif all(x.at == y.at for x, y in zip(a, b, strict=True)):
        out.append("never parted: the very same decisions at the very same instants")
    else:
        out.append("never parted: the same decisions, each within one tick")
    return out, None


def agreement(
    a: Recorder, b: Recorder, tick: float, before: float = math.inf
) -> tuple[float, float, float, int]:
    """(share of jobs whose start and end agree within one tick, largest start gap, end gap,
    jobs compared): of the jobs that ended in ``a`` before ``before``."""
    within = n = 0
    start_gap = end_gap = 0.0
    for job_id, ra in a.jobs.items():
        if (ra.end if ra.end is not None else math.inf) >= before:
            continue
        n += 1
        rb = b.jobs[job_id]
        sa = ra.runs[0][0] if ra.runs else 0.0
        sb = rb.runs[0][0] if rb.runs else 0.0
        ds, de = abs(sa - sb), abs((ra.end or 0.0) - (rb.end or 0.0))
        start_gap, end_gap = max(start_gap, ds), max(end_gap, de)
        within += ds <= tick and de <= tick
    return within / max(1, n), start_gap, end_gap, n


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--trace", type=Path, default=SAMPLE)
    ap.add_argument("--jobs", type=int, default=10_000, help="repeat a smaller trace to this many")
    ap.add_argument("--policies", default=",".join(BUILTIN))
    ap.add_argument("--tick", type=float, default=60.0, help="the tick-stepping loop's tick")
    ap.add_argument("--stack", type=Path, default=ROOT / "deploy" / "stack.yaml")
    ap.add_argument(
        "--aligned",
        action="store_true",
        help="round every time (jobs, world, policy timers) up to a multiple of the tick: "
        "the loops must then agree on every job",
    )
    ap.add_argument(
        "--no-parting",
        dest="parting",
        action="store_false",
        help="skip the untimed replays that find the first decision where the loops part",
    )
    args = ap.parse_args(argv)
    stack = load_stack(args.stack)
    try:
        trace = repeated(read(args.trace, timezone=stack.alerting.timezone), args.jobs)
    except SimError as e:
        print(f"bench_simulate: {e}", file=sys.stderr)
        return 2
    start = start_of([trace], stack, None)
    jobs, _ = map_jobs([trace], stack, start)
    days = (jobs[-1].submit - jobs[0].submit) / 86400 if jobs else 0.0
    print(f"trace: {trace.source}: {len(jobs):,} jobs over {days:.1f} days of submissions")
    if args.aligned:
        print(f"aligned: every time rounded up to a multiple of {args.tick:.0f}s")
    print(
        f"{'policy':<10} {'loop':<12} {'jobs/s':>9} {'jobs/s cpu':>10} {'wall s':>7} "
        f"{'ticks':>9} {'calls':>9} {'preempt':>8} {'lost GPU-h':>10} {'P1 p50':>8} "
        f"{'P2 p95':>8} {'longest':>8}"
    )
    runs = policy_runs(args.policies.split(","), [], cluster_spec(stack), policy_spec(stack))
    timings = world(stack)
    if args.aligned:
        jobs, timings, runs = aligned(jobs, start, timings, runs, args.tick)
    for run in runs:
        recs = {}
        streams: list[list[Decision]] = []
        for loop, tick in (("event", None), (f"tick {args.tick:.0f}s", args.tick)):
            wl = replace(timings, tick_seconds=tick)
            # The speed is measured without keeping decisions; they are kept in a second,
            # untimed replay (each loop is deterministic) when --parting asks for them.
            t0 = time.perf_counter()
            rec, cpu = replay(stack, run, jobs, start, wl)
            wall = time.perf_counter() - t0
            if args.parting:
                streams.append([])
                replay(stack, run, jobs, start, wl, streams[-1])
            recs[loop] = rec
            s = metrics.summarise(rec, stack.alerting.timezone)
            w = s["waits"]
            print(
                f"{run.name:<10} {loop:<12} {len(jobs) / wall:>9,.0f} {len(jobs) / cpu:>10,.0f} "
                f"{wall:>7.2f} {rec.ticks:>9,} {len(rec.call_seconds):>9,} "
                f"{s['preemptions']['count']:>8,} {s['preemptions']['gpu_hours_lost']:>10,.1f} "
                f"{w.get('p1-train', {}).get('p50', 0) / 60:>7.0f}m "
                f"{w.get('p2-batch', {}).get('p95', 0) / 60:>7.0f}m "
                f"{s['longest_wait_seconds'] / 3600:>7.1f}h"
            )
        a, b = recs.values()
        share, sgap, egap, _ = agreement(a, b, args.tick)
        print(
            f"{'':<10} {'agreement':<12} {100 * share:.1f}% of jobs start and end within one "
            f"tick of each other; largest gap: start {sgap:,.0f}s, end {egap:,.0f}s"
        )
        if streams:
            lines, parted = parting(*streams, args.tick)
            for line in lines:
                print(f"{'':<10} {'':<12} {line}")
            if parted is not None:
                share, sgap, egap, n = agreement(a, b, args.tick, parted)
            if parted is not None and n:
                print(
                    f"{'':<10} {'':<12} of the {n:,} jobs that ended before: {100 * share:.1f}% "
                    f"within one tick; largest gap: start {sgap:,.0f}s, end {egap:,.0f}s"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
