"""The decision fingerprint: replay a job trace through ``novabrain simulate``'s replay and digest every decision.

Each decision is serialised exactly as the store writes it (``json.dumps(d.to_dict())``),
one line per decision, in order; the SHA-256 of those lines is the fingerprint, one
per policy (the built-in ``static``, ``naive`` and ``novabrain`` by default, each on
its own ``Scheduler``). Two versions of the scheduler core that print the same
fingerprints for the same trace made the same decisions, byte for byte: ids, times,
victims, GPUs, reasons. The replay is the event-driven one of ``novabrain simulate``
(``scheduler/sim/replay.py``) with the stack's world: P0's daily load and its latency
alert, the market-bell reservations, checkpoints, acknowledgements and autoscaling.

Used to show that a refactoring of the policy core (or of the replay's hot paths)
changed no decision: run it on the old and on the new checkout (``--out`` writes the
lines, so that ``diff`` shows the first decision that differs).

    python benchmarks/decision_fingerprint.py                        # the vendored sample
    python benchmarks/decision_fingerprint.py --trace cluster04.csv --hours 48 --out d.jsonl

Prints numbers and exits 0; a missing or unreadable trace, or a bad policy, is one
line and exit 2.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The checkout this script lies in, not whatever is installed: the fingerprint of
# another checkout is taken by running that checkout's copy of this script.
sys.path.insert(0, str(ROOT))

from deploy.stack import load_stack  # noqa: E402
from scheduler.config import cluster_spec, policy_spec  # noqa: E402
from scheduler.core.model import Decision  # noqa: E402
from scheduler.sim.errors import SimError  # noqa: E402
from scheduler.sim.policies import BUILTIN, policy_runs  # noqa: E402
from scheduler.sim.reader import Trace, read  # noqa: E402
from scheduler.sim.replay import Replay  # noqa: E402
from scheduler.sim.scenario import map_jobs, p0_demand, start_of, world  # noqa: E402

SAMPLE = ROOT / "scheduler" / "sim" / "traces" / "elasticflow-sample.csv"


def time_slice(trace: Trace, start_hours: float, hours: float | None, limit: int | None) -> Trace:
    """Jobs submitted in [first + start_hours, first + start_hours + hours), at most ``limit``."""
    if not trace.jobs:
        return trace
    lo = trace.jobs[0].submit + 3600.0 * start_hours
    hi = float("inf") if hours is None else lo + 3600.0 * hours
    jobs = [j for j in trace.jobs if lo <= j.submit < hi][:limit]
    return replace(trace, jobs=jobs, rows=len(jobs))


class _Fingerprint:
    """One policy's digest of every decision, in order (and the lines, when kept)."""

    def __init__(self, policy: str, lines: list[str] | None) -> None:
        self.policy = policy
        self.lines = lines
        self.digest = hashlib.sha256()
        self.actions: Counter[str] = Counter()

    def record(self, ds: Sequence[Decision]) -> None:
        for d in ds:
            line = json.dumps(d.to_dict())
            self.digest.update(line.encode())
            self.digest.update(b"\n")
            self.actions[f"{d.action}/{d.result}"] += 1
            if self.lines is not None:
                self.lines.append(f"{self.policy} {line}")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--trace", type=Path, default=SAMPLE, help="ElasticFlow-style CSV trace")
    ap.add_argument("--stack", type=Path, default=ROOT / "deploy" / "stack.yaml")
    ap.add_argument("--start-hours", type=float, default=0.0, help="skip jobs before this")
    ap.add_argument("--hours", type=float, default=None, help="keep this many hours of jobs")
    ap.add_argument("--limit", type=int, default=None, help="at most this many jobs")
    ap.add_argument("--policies", default=",".join(BUILTIN), help="built-in policies, in order")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:KEY=VALUE,...",
        help="novabrain with policy fields changed, e.g. dry:dry_run=true (repeatable)",
    )
    ap.add_argument("--out", type=Path, default=None, help="write every decision, one per line")
    args = ap.parse_args(argv)

    stack = load_stack(args.stack)
    try:
        trace = time_slice(
            read(args.trace, timezone=stack.alerting.timezone),
            args.start_hours,
            args.hours,
            args.limit,
        )
        names = [n for n in args.policies.split(",") if n]
        runs = policy_runs(names, args.variant, cluster_spec(stack), policy_spec(stack))
        start = start_of([trace], stack, None)
        jobs, _ = map_jobs([trace], stack, start)
    except SimError as e:
        print(f"decision_fingerprint: {e}", file=sys.stderr)
        return 2
    w = world(stack)
    print(f"trace:       {args.trace} ({len(jobs)} jobs)")
    lines: list[str] | None = [] if args.out is not None else None
    overall = hashlib.sha256()
    for run in runs:
        fp = _Fingerprint(run.name, lines)
        t0 = time.perf_counter()
        rec = Replay(
            run, jobs, w, start=start, p0=p0_demand(stack, start), on_decisions=fp.record
        ).run()
        wall = time.perf_counter() - t0
        overall.update(f"{run.name} {fp.digest.hexdigest()}\n".encode())
        done = sum(1 for j in rec.jobs.values() if j.end is not None)
        print(f"{run.name}:")
        print(f"  decisions:   {sum(fp.actions.values())}")
        print(f"  fingerprint: sha256:{fp.digest.hexdigest()}")
        print("  by action:   " + ", ".join(f"{k} {n}" for k, n in sorted(fp.actions.items())))
        print(
            f"  replay:      {done} of {len(rec.jobs)} jobs completed, {rec.ticks} ticks, "
            f"{sum(rec.preemptions.values())} preemptions, "
            f"{sum(rec.lost_by_pool.values()) / 3600:.2f} GPU-h lost; {wall:.2f}s"
        )
    print(f"all policies: sha256:{overall.hexdigest()}")
    if args.out is not None and lines is not None:
        args.out.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
