"""The decision fingerprint: replay a job trace through the trace simulator and digest every decision.

Each decision is serialised exactly as the store writes it (``json.dumps(d.to_dict())``),
one line per decision, in order; the SHA-256 of those lines is the fingerprint. Two
versions of the scheduler core that print the same fingerprint for the same trace
made the same decisions, byte for byte: ids, times, victims, GPUs, reasons.

Used to show that a refactoring of the policy core changed no decision: run it on
the old and on the new checkout (``--out`` writes the lines, so that ``diff`` shows
the first decision that differs).

    python benchmarks/decision_fingerprint.py                        # the vendored sample
    python benchmarks/decision_fingerprint.py --trace cluster04.csv --hours 48 --out d.jsonl

Prints numbers and exits 0; a missing or unreadable trace is one line and exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The checkout this script lies in, not whatever is installed: the fingerprint of
# another checkout is taken by running that checkout's copy of this script.
sys.path.insert(0, str(ROOT))

from deploy.stack import load_stack  # noqa: E402
from scheduler.config import cluster_spec, policy_spec  # noqa: E402
from scheduler.core.model import Decision, PolicySpec  # noqa: E402
from scheduler.sim.trace import SimConfig, TraceJob, read_trace, simulate  # noqa: E402

SAMPLE = ROOT / "scheduler" / "sim" / "traces" / "elasticflow-sample.csv"
# A P0 breach in the thick of the load, resolved an hour later (as the simulator's test).
DEFAULT_ALERTS = ((3 * 3600.0, True), (4 * 3600.0, False))


def parse_alert(text: str) -> tuple[float, bool]:
    at, _, state = text.partition(":")
    if state not in ("firing", "resolved"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected SECONDS:firing or SECONDS:resolved")
    try:
        seconds = float(at)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: {at!r} is not a number of seconds") from None
    return seconds, state == "firing"


def parse_setting(text: str) -> tuple[str, float | bool]:
    key, _, value = text.partition("=")
    known = {f.name: f.type for f in dataclasses.fields(PolicySpec)}
    if key not in known:
        raise argparse.ArgumentTypeError(f"{key!r} is not a policy field ({', '.join(known)})")
    if value in ("true", "false"):
        return key, value == "true"
    try:
        return key, int(value) if value.lstrip("-").isdigit() else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected KEY=NUMBER or KEY=true|false"
        ) from None


def time_slice(trace: list[TraceJob], start_hours: float, hours: float | None) -> list[TraceJob]:
    """Jobs submitted in [first + start_hours, first + start_hours + hours)."""
    if not trace:
        return trace
    lo = trace[0].submission_time + 3600.0 * start_hours
    hi = float("inf") if hours is None else lo + 3600.0 * hours
    return [j for j in trace if lo <= j.submission_time < hi]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--trace", type=Path, default=SAMPLE, help="ElasticFlow-style CSV trace")
    ap.add_argument("--stack", type=Path, default=ROOT / "deploy" / "stack.yaml")
    ap.add_argument("--start-hours", type=float, default=0.0, help="skip jobs before this")
    ap.add_argument("--hours", type=float, default=None, help="keep this many hours of jobs")
    ap.add_argument("--limit", type=int, default=None, help="at most this many jobs")
    ap.add_argument(
        "--alert",
        type=parse_alert,
        action="append",
        metavar="SECONDS:firing|resolved",
        help="a P0 rebalance alert (repeatable; default: firing at 3h, resolved at 4h)",
    )
    ap.add_argument(
        "--policy",
        type=parse_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a policy field of the stack, e.g. dry_run=true (repeatable)",
    )
    ap.add_argument("--out", type=Path, default=None, help="write every decision, one per line")
    args = ap.parse_args(argv)

    try:
        trace = time_slice(read_trace(args.trace), args.start_hours, args.hours)
    except (OSError, ValueError, KeyError) as e:
        print(f"decision_fingerprint: cannot read trace {args.trace}: {e}", file=sys.stderr)
        return 2
    if args.limit is not None:
        trace = trace[: args.limit]
    stack = load_stack(args.stack)
    config = SimConfig(training_pool="p1-train", batch_pool="p2-batch", p0_pool="p0-risk")

    digest = hashlib.sha256()
    actions: Counter[str] = Counter()
    lines: list[str] = []

    def record(ds: Sequence[Decision]) -> None:
        for d in ds:
            line = json.dumps(d.to_dict())
            digest.update(line.encode())
            digest.update(b"\n")
            actions[f"{d.action}/{d.result}"] += 1
            if args.out is not None:
                lines.append(line)

    t0 = time.perf_counter()
    report = simulate(
        trace,
        cluster_spec(stack),
        dataclasses.replace(policy_spec(stack), **dict(args.policy)),
        config,
        alerts=args.alert or DEFAULT_ALERTS,
        on_decisions=record,
    )
    wall = time.perf_counter() - t0
    if args.out is not None:
        args.out.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")
    print(f"trace:       {args.trace} ({len(trace)} jobs)")
    print(f"decisions:   {sum(actions.values())}")
    print(f"fingerprint: sha256:{digest.hexdigest()}")
    print("by action:   " + ", ".join(f"{k} {n}" for k, n in sorted(actions.items())))
    print(f"report:      {json.dumps(report.summary(), sort_keys=True)}")
    print(f"replayed in {wall:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
