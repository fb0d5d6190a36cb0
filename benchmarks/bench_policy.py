"""Issue 15's figures, side by side for static, naive and novabrain, on each trace given.

Each trace is replayed (``scheduler.sim``: the real policy core on a simulated clock,
with P0's market-bell demand from the stack) under the three policies, and printed:

- GPU-hours lost to preemption, and the ratio to naive (goal <= 0.5);
- the most preemptions of any job, beside its lifetime cap (jobs over it: should be 0,
  but for floor reclaims, which the cap yields to);
- the longest wait of a job that fits its pool, and the jobs whose wait exceeds
  "4 h beyond the longest remaining run of the jobs in its way" (the jobs of its pool
  running when it was submitted), each with why (a heuristic: preempted, large for
  its pool, or queued behind others);
- P2's p95 wait beside naive's; utilisation beside static's (goal >= 1.25x);
- P0's wait at the bell (the longest, from a spike's start until P0 served it in full;
  goal 0), and after the first grant of a spike the shortfall episodes that begin (goal
  0) and the minutes P0 is short in all (a shortfall the grant did not end counts here);
- the GPUs P0's alert grants took beside what P0 lacked when they were decided.

    python benchmarks/bench_policy.py scheduler/sim/traces/elasticflow-sample.csv
    python benchmarks/bench_policy.py TRACE... [--days N] [--json OUT]

``--days N`` replays each trace's first N days (slow traces). No timings are asserted;
the wall time of each replay is printed. Exit 2 on a bad trace or stack.
"""

from __future__ import annotations

import argparse
import heapq
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.stack import load_stack  # noqa: E402
from deploy.stack_fields import StackError  # noqa: E402
from scheduler.config import policy_spec  # noqa: E402
from scheduler.sim.errors import SimError  # noqa: E402
from scheduler.sim.metrics import LONG_WAIT_SECONDS  # noqa: E402
from scheduler.sim.reader import Trace, read  # noqa: E402
from scheduler.sim.replay import JobRecord, Recorder  # noqa: E402
from scheduler.sim.run import Options, compare  # noqa: E402

POLICIES = ("static", "naive", "novabrain")


def first_days(trace: Trace, days: float | None) -> Trace:
    if days is None or not trace.jobs:
        return trace
    end = trace.jobs[0].submit + days * 86400.0
    jobs = [j for j in trace.jobs if j.submit < end]
    return Trace(jobs, trace.epoch, f"{trace.source} (first {days:g} days)", rows=len(jobs))


def in_the_way(rec: Recorder) -> dict[str, float]:
    """Per job: the longest remaining run, at its submission, of its pool's running jobs."""
    by_pool: dict[str, list[tuple[float, float]]] = {}
    for r in rec.jobs.values():
        for s, e in r.runs:
            by_pool.setdefault(r.job.pool, []).append((s, e))
    out: dict[str, float] = {}
    for pool, runs in by_pool.items():
        runs.sort()
        subs = sorted((r.job.submit, r.job.id) for r in rec.jobs.values() if r.job.pool == pool)
        heap: list[float] = []  # -end of runs started so far (max-heap)
        i = 0
        for t, jid in subs:
            while i < len(runs) and runs[i][0] <= t:
                heapq.heappush(heap, -runs[i][1])
                i += 1
            # The longest run still going at t (ends are pruned lazily: a max-heap's top).
            out[jid] = max(0.0, -heap[0] - t) if heap and -heap[0] > t else 0.0
    return out


def wait_of(r: JobRecord, end: float) -> float:
    w = r.waited
    if r.end is None and r.start is None:
        w += end - (r.runs[-1][1] if r.runs else r.job.submit)
    return w


def why(r: JobRecord, nominal: dict[str, int]) -> str:
    if r.end is None and not r.runs:
        return "never started"
    if r.preemptions:
        return f"preempted {r.preemptions}x"
    if r.job.gpus * 2 > nominal.get(r.job.pool, 0):
        return f"needs {r.job.gpus} of its pool's {nominal.get(r.job.pool, 0)} GPUs"
    return "queued behind earlier jobs"


def figures(
    rec: Recorder, summary: dict[str, Any], caps: tuple[int, int], nominal: dict[str, int]
) -> dict[str, Any]:
    ckpt_cap, other_cap = caps
    over_cap = [
        r.job.id
        for r in rec.jobs.values()
        if (cap := ckpt_cap if r.job.checkpointable else other_cap) and r.preemptions > cap
    ]
    bound = in_the_way(rec)
    runnable = [r for r in rec.jobs.values() if not r.refused]
    waits = {r.job.id: wait_of(r, rec.end) for r in runnable}
    longest = max(runnable, key=lambda r: waits[r.job.id], default=None)
    over = [r for r in runnable if waits[r.job.id] > bound.get(r.job.id, 0.0) + LONG_WAIT_SECONDS]
    reasons: dict[str, int] = {}
    for r in over:
        k = why(r, nominal)
        k = k if not k.startswith("preempted") else "preempted"
        k = k if not k.startswith("needs") else "large for its pool"
        reasons[k] = reasons.get(k, 0) + 1
    p0 = next(iter(summary["p0"].values()), {})
    return {
        "lost_gpu_hours": summary["preemptions"]["gpu_hours_lost"],
        "max_preemptions": summary["preemptions"]["max_per_job"],
        "over_cap": len(over_cap),
        "longest_wait_h": (waits[longest.job.id] / 3600.0) if longest else 0.0,
        "longest_job": "" if longest is None else f"{longest.job.id} ({why(longest, nominal)})",
        "over_bound": len(over),
        "over_bound_why": reasons,
        "over_bound_worst": [
            f"{r.job.id}: waited {waits[r.job.id] / 3600:.1f} h, in its way "
            f"{bound.get(r.job.id, 0.0) / 3600:.1f} h; {r.job.gpus} GPUs in {r.job.pool}; "
            f"{why(r, nominal)}"
            for r in sorted(over, key=lambda r: -(waits[r.job.id] - bound.get(r.job.id, 0.0)))[:3]
        ],
        "p2_p95_h": summary["waits"].get("p2-batch", {}).get("p95", 0.0) / 3600.0,
        "util": summary["utilisation"]["overall"],
        "bell_wait_max_s": p0.get("bell_wait_max_seconds", 0.0),
        "bells": p0.get("bells", 0),
        "after_first_grant": p0.get("shortfalls_after_first_grant", 0),
        "short_after_grant_min": p0.get("short_minutes_after_first_grant", 0.0),
        "shortfalls": p0.get("shortfalls", 0),
        "granted": p0.get("gpus_granted", 0),
        "lacking": p0.get("gpus_lacking_at_grants", 0),
        "spike_served": p0.get("spike_served_share", 1.0),
        "to_capacity": p0.get("time_to_capacity", {}),
    }


def table(name: str, rows: dict[str, dict[str, Any]], caps: tuple[int, int]) -> str:
    naive, static = rows["naive"], rows["static"]
    lines = [f"## {name}", ""]
    head = (
        f"| policy | GPU-h lost (x naive) | max preempt/job (cap {caps[0]}/{caps[1]}; over) | longest wait h "
        "| > 4h beyond in-the-way | P2 p95 wait h (x naive) | util (x static) | P0 bell wait max s "
        "| P0 short after a spike's 1st grant: new episodes / min (all episodes) "
        "| P0 GPUs granted / lacking | spike served |"
    )
    lines += [head, "|" + "---|" * 11]
    for p, f in rows.items():
        ratio = f["lost_gpu_hours"] / naive["lost_gpu_hours"] if naive["lost_gpu_hours"] else 0.0
        p2 = f["p2_p95_h"] / naive["p2_p95_h"] if naive["p2_p95_h"] else 0.0
        util = f["util"] / static["util"] if static["util"] else 0.0
        lines.append(
            f"| {p} | {f['lost_gpu_hours']:.1f} ({ratio:.2f}) | {f['max_preemptions']} ({f['over_cap']}) "
            f"| {f['longest_wait_h']:.1f} | {f['over_bound']} | {f['p2_p95_h']:.2f} ({p2:.2f}) "
            f"| {100 * f['util']:.1f}% ({util:.2f}) | {f['bell_wait_max_s']:.0f} "
            f"| {f['after_first_grant']} / {f['short_after_grant_min']:.0f} ({f['shortfalls']}) "
            f"| {f['granted']} / {f['lacking']} "
            f"| {100 * f['spike_served']:.0f}% |"
        )
    nb = rows["novabrain"]
    lines.append("")
    ttc = nb["to_capacity"]
    lines.append(
        "novabrain's P0 grants, time to capacity (p50 / max s): "
        + (
            ", ".join(
                f"{stage} {v['p50_seconds']:.0f} / {v['max_seconds']:.0f}"
                for stage, v in ttc.items()
            )
            or "no grant"
        )
    )
    lines.append(f"novabrain's longest wait: {nb['longest_job']}")
    if nb["over_bound"]:
        lines.append(f"novabrain's jobs over the bound, by why: {nb['over_bound_why']}")
        lines += [f"- {w}" for w in nb["over_bound_worst"]]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("traces", nargs="+", type=Path, help="ElasticFlow-layout trace CSVs")
    ap.add_argument("--stack", type=Path, default=ROOT / "deploy" / "stack.yaml")
    ap.add_argument("--days", type=float, default=None, help="each trace's first N days only")
    ap.add_argument("--json", type=Path, default=None, help="also write every figure here")
    args = ap.parse_args(argv)
    try:
        stack = load_stack(args.stack)
        policy = policy_spec(stack)
        caps = (policy.max_preemptions_checkpointing, policy.max_preemptions_non_checkpointing)
        nominal = {p.name: p.nominal_gpus for p in stack.pools}
        out: dict[str, Any] = {}
        for path in args.traces:
            trace = first_days(read(path, timezone=stack.alerting.timezone), args.days)
            t = time.perf_counter()
            c = compare(stack, Options(traces=[path], policies=POLICIES), traces=[trace])
            rows = {p: figures(c.recorders[p], c.summaries[p], caps, nominal) for p in POLICIES}
            print(table(trace.source, rows, caps))
            print(
                f"({len(trace.jobs)} jobs, 3 replays in {time.perf_counter() - t:.0f} s wall)\n",
                flush=True,
            )
            out[trace.source] = rows
    except (SimError, StackError, OSError) as e:
        print(f"bench_policy: {e}", file=sys.stderr)
        return 2
    if args.json is not None:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
