"""The ``novabrain simulate`` command's arguments and their checking (the CLI adds the subparser).

Values are checked here, not by argparse types, so that every mistake is one line
naming the flag, and exit 2 (the project's rule for user mistakes).
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime
from pathlib import Path

from deploy.stack import Stack
from scheduler.sim.errors import SimError
from scheduler.sim.policies import BUILTIN
from scheduler.sim.reader import Columns, TimeFormat
from scheduler.sim.run import Options, simulate

EXIT_USAGE = 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--trace",
        action="append",
        required=True,
        type=Path,
        metavar="FILE",
        help="a job trace (CSV; repeatable). ElasticFlow's layout unless --columns says otherwise",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="write report.md, summary.json and the figures here",
    )
    p.add_argument(
        "--policies",
        default=",".join(BUILTIN),
        help=f"policies to compare, comma-separated (default: {','.join(BUILTIN)})",
    )
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME:key=value,...",
        help="the stack's policy with fields changed, e.g. patient:min_runtime_seconds=900 "
        "(repeatable; also autoscale=false, reservations=false)",
    )
    p.add_argument(
        "--columns",
        default=None,
        metavar="submit=COL,duration=COL,gpus=COL[,id=COL][,pool=COL][,priority=COL]"
        "[,gpus_per_pod=COL]",
        help="which CSV columns hold each field (default: ElasticFlow's); gpus_per_pod: "
        "each job's pod size (without it, one pod up to the node size, node-sized pods above)",
    )
    p.add_argument(
        "--time-format",
        default=None,
        choices=[f.value for f in TimeFormat],
        help="submit times: seconds from the start (relative, ElasticFlow's), Unix seconds "
        "(epoch), or ISO dates (iso; naive ones in the stack's timezone). Default: relative",
    )
    p.add_argument(
        "--start",
        default=None,
        metavar="YYYY-MM-DD[ HH:MM]",
        help="local date the replay starts at (default: the trace's own dates, else the "
        "stack's simulation.start)",
    )
    p.add_argument(
        "--gpus",
        default=None,
        metavar="N",
        help="scale the cluster to N GPUs, keeping the pools' ratios",
    )


def _options(args: argparse.Namespace) -> Options:
    try:
        columns = Columns.parse(args.columns) if args.columns else None
    except ValueError as e:
        raise SimError(f"--columns: {e}") from None
    policies = [p.strip() for p in args.policies.split(",") if p.strip()]
    start = None
    if args.start is not None:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError:
            raise SimError(
                f"--start {args.start!r}: expected a date like 2025-03-03 or 2025-03-03 09:00"
            ) from None
    gpus = None
    if args.gpus is not None:
        try:
            gpus = int(args.gpus)
        except ValueError:
            raise SimError(f"--gpus {args.gpus!r}: expected a whole number of GPUs") from None
        if not 1 <= gpus <= 1_000_000:
            raise SimError(f"--gpus {gpus}: expected 1 to 1,000,000")
    fmt = TimeFormat(args.time_format) if args.time_format else TimeFormat.RELATIVE
    return Options(
        traces=args.trace,
        out=args.out,
        policies=policies or list(BUILTIN),
        variants=args.variant,
        columns=columns,
        time_format=fmt,
        start=start,
        gpus=gpus,
    )


def run_simulate(args: argparse.Namespace, stack: Stack) -> int:
    try:
        return simulate(stack, _options(args))
    except SimError as e:
        print(f"novabrain: {e}", file=sys.stderr)
        return EXIT_USAGE
