"""``novabrain simulate``: replay traces under several policies, print the table, write the report.

``compare`` runs the replays and returns their numbers; ``simulate`` is the command:
it also draws the figures and writes ``DIR/report.md`` and ``DIR/summary.json``, with a
progress bar per policy on the terminal. Every user mistake is a ``SimError`` (one
line, exit 2 in the CLI).
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

from deploy.stack import Stack
from scheduler.config import cluster_spec, policy_spec
from scheduler.sim import metrics, plots, report
from scheduler.sim.errors import SettingsError
from scheduler.sim.policies import BUILTIN, PolicyRun, policy_runs, scale_cluster
from scheduler.sim.reader import Columns, TimeFormat, Trace, read
from scheduler.sim.replay import Recorder, Replay
from scheduler.sim.scenario import map_jobs, p0_demand, start_of, world


@dataclass(frozen=True)
class Options:
    traces: Sequence[Path]
    out: Path | None = None
    policies: Sequence[str] = BUILTIN
    variants: Sequence[str] = ()
    columns: Columns | None = None
    time_format: TimeFormat = TimeFormat.RELATIVE
    start: datetime | None = None  # local to the stack's timezone when naive
    gpus: int | None = None
    tick_seconds: float | None = None  # a fixed tick instead of event-driven (the baseline)


@dataclass
class Comparison:
    context: report.Context
    runs: list[PolicyRun]
    recorders: dict[str, Recorder] = field(default_factory=dict)
    summaries: dict[str, dict[str, Any]] = field(default_factory=dict)


class _Progress:
    """``policy [#####.....] 1,234/10,000 jobs`` on a terminal, one line at the end otherwise."""

    def __init__(self, stream: TextIO | None, name: str, total: int) -> None:
        self.stream = stream
        self.name = name
        self.total = total
        self.tty = stream is not None and stream.isatty()

    def __call__(self, done: int) -> None:
        if self.tty and self.stream is not None:
            width = 30
            filled = width * done // max(1, self.total)
            self.stream.write(
                f"\r{self.name:<12} [{'#' * filled}{'.' * (width - filled)}] "
                f"{done:,}/{self.total:,} jobs"
            )
            self.stream.flush()

    def done(self, wall: float) -> None:
        if self.stream is not None:
            self(self.total)
            end = "\n" if self.tty else ""
            self.stream.write(
                f"{end}{self.name}: {self.total:,} jobs replayed in {wall:.2f}s\n"
                if not self.tty
                else f"  {wall:.2f}s\n"
            )
            self.stream.flush()


def _assumptions(stack: Stack) -> list[tuple[str, str, str]]:
    sim = stack.simulation
    assert sim is not None
    a = stack.alerting
    p = stack.policy
    return [
        (
            "training jobs checkpoint every",
            f"{sim.checkpoint_interval_seconds:.0f} s",
            "lost work on a grace expiry (and naive's, which gives no grace) grows with the "
            "interval, at most one interval per preemption; batch jobs never checkpoint",
        ),
        (
            "a victim checkpoints and acknowledges within",
            f"{sim.ack_seconds:.0f} s (grace {p.default_grace_seconds:.0f} s)",
            "slower than the grace period: it is stopped at the grace expiry and loses work since "
            "its last periodic checkpoint; P0 waits longer for each freed GPU",
        ),
        (
            "P0 model's capacity",
            ", ".join(
                f"{m.name}: {m.serving.service_time_seconds * 1000:.0f} ms per request, "
                f"{m.serving.gpus_per_replica} GPUs per replica"
                for m in stack.models
                if m.serving is not None
            ),
            "a slower model needs more GPUs at the bell: more preemption, longer shortfalls; "
            "the queueing model (M/G/c, Erlang C) errs a few percent on the safe side",
        ),
        (
            "a minute above the SLO",
            "a minute in which the predicted latency quantile at the load and P0's GPUs "
            "exceeds the threshold",
            "measured latency also has network and batching noise: real breaches start a "
            "little earlier and end a little later",
        ),
        (
            "served in full",
            f"P0 holds what keeps its predicted quantile {100 * sim.slo_margin:.0f}% under the "
            "threshold",
            "a smaller margin needs fewer GPUs (fewer shortfalls) but leaves no room for load "
            "the profile does not show",
        ),
        (
            "the alert reaches the scheduler",
            f"{a.latency_alert_for_seconds:.0f} s (for:) + {a.group_wait_seconds:.0f} s "
            f"(group_wait) after the breach begins; resolved {a.group_interval_seconds:.0f} s "
            "after it ends",
            "scrape and rule intervals add up to another evaluation interval each way; every "
            "shortfall the alert closes lasts that much longer",
        ),
        (
            "P0's load",
            "the daily profile below, the same every weekday",
            "a taller or longer spike than the bell's reservation covers is served by alerts, "
            "each after the alert delay",
        ),
        (
            "a node asked of the autoscaler joins after",
            f"{sim.scale_up_delay_seconds:.0f} s",
            "slower provisioning delays queued work; an on-premises cluster that cannot grow "
            "is the 'autoscale=false' variant",
        ),
        (
            "job sizes and runtimes",
            "as in the trace; a job runs its duration wherever it runs",
            "the trace's cluster ran them; jobs that would have run faster or slower on these "
            "GPUs shift every wait alike",
        ),
    ]


def _p0_profile(stack: Stack) -> list[str]:
    sim = stack.simulation
    assert sim is not None
    out = []
    for prof in sim.p0_load:
        spikes = ", ".join(
            f"{s.start.strftime('%H:%M')} for {s.minutes:.0f} min at {s.rps:.0f} req/s"
            for s in prof.spikes
        )
        out.append(
            f"{prof.model}: {prof.base_rps:.0f} req/s base; spikes on {', '.join(prof.days)}: "
            f"{spikes or 'none'} ({stack.alerting.timezone})"
        )
    return out


def compare(
    stack: Stack, opts: Options, *, progress: TextIO | None = None, traces: Sequence[Trace] = ()
) -> Comparison:
    """Read the traces (unless given) and replay them under every policy asked."""
    if stack.simulation is None:
        raise SettingsError("the stack has no simulation section")
    tz = stack.alerting.timezone
    loaded = list(traces) or [
        read(p, opts.columns, opts.time_format, timezone=tz) for p in opts.traces
    ]
    start = opts.start
    if start is not None and start.tzinfo is None:
        start = start.replace(tzinfo=ZoneInfo(tz))
    t0 = start_of(loaded, stack, start)
    jobs, mapping = map_jobs(loaded, stack, t0)
    spec = cluster_spec(stack)
    scale = 1.0
    if opts.gpus is not None:
        scale = opts.gpus / len(spec.gpus)
        spec = scale_cluster(spec, opts.gpus)
    runs = policy_runs(opts.policies, opts.variants, spec, policy_spec(stack))
    skipped: Counter[str] = Counter()
    for t in loaded:
        skipped.update(t.skipped)
    skipped.update(mapping.unmapped)
    ctx = report.Context(
        traces=[t.source for t in loaded],
        rows=sum(t.rows for t in loaded),
        skipped=dict(skipped),
        start=datetime.fromtimestamp(t0, ZoneInfo(tz)).strftime("%Y-%m-%d %H:%M %Z (%a)"),
        gpus=len(spec.gpus),
        pools=[(p.name, p.priority_class, p.nominal_gpus) for p in spec.pools],
        mapping=mapping.rules,
        jobs_by_pool=dict(mapping.by_pool),
        descriptions={r.name: r.description for r in runs},
        assumptions=_assumptions(stack),
        p0_profile=_p0_profile(stack),
    )
    result = Comparison(ctx, runs)
    w = world(stack, tick_seconds=opts.tick_seconds)
    for run in runs:
        bar = _Progress(progress, run.name, len(jobs))
        nominal = {p.name: p.nominal_gpus for p in spec.pools}
        replay = Replay(
            run, jobs, w, start=t0, p0=p0_demand(stack, t0, scale, nominal), progress=bar
        )
        rec = replay.run()
        bar.done(rec.wall_seconds)
        result.recorders[run.name] = rec
        result.summaries[run.name] = metrics.summarise(rec, tz)
    return result


def write_outputs(
    stack: Stack, result: Comparison, out: Path, *, timings: bool = True, title: str | None = None
) -> list[Path]:
    """The figures, ``report.md`` and ``summary.json`` in ``out``."""
    tz = stack.alerting.timezone
    out.mkdir(parents=True, exist_ok=True)
    recs = result.recorders
    first = result.runs[0]
    # The market bell is shaded in every panel, whether or not the policy reserves for it.
    plots.held(recs, cluster_spec(stack).reservations, tz, out / "held.png")
    plots.waits(
        {
            name: {
                pool: [w for w in _waits(rec, pool)]
                for pool in sorted({j.job.pool for j in rec.jobs.values()})
            }
            for name, rec in recs.items()
        },
        out / "waits.png",
    )
    plots.utilisation(
        {n: s["utilisation"]["by_hour"] for n, s in result.summaries.items()},
        tz,
        out / "utilisation.png",
    )
    plots.lost(
        {n: s["preemptions"]["gpu_hours_lost_by_pool"] for n, s in result.summaries.items()},
        [p.name for p in first.cluster.pools],
        out / "lost.png",
    )
    md = report.markdown(
        result.context, result.summaries, timings=timings, **({"title": title} if title else {})
    )
    (out / "report.md").write_text(md, encoding="utf-8")
    summaries = result.summaries
    if not timings:
        summaries = {
            n: {k: v for k, v in s.items() if k not in ("decision_cost", "replay")}
            for n, s in summaries.items()
        }
    (out / "summary.json").write_text(
        report.summary_json(result.context, summaries), encoding="utf-8"
    )
    return [out / f for f in (*plots.FIGURES, "report.md", "summary.json")]


def _waits(rec: Recorder, pool: str) -> list[float]:
    out = []
    for j in rec.jobs.values():
        if j.job.pool != pool or j.refused:
            continue
        w = j.waited
        if j.end is None and j.start is None:
            w += rec.end - (j.runs[-1][1] if j.runs else j.job.submit)
        out.append(w)
    return out


def simulate(
    stack: Stack, opts: Options, *, stdout: TextIO = sys.stdout, stderr: TextIO = sys.stderr
) -> int:
    """The command: replay, print the table, write the report. Raises ``SimError``."""
    if opts.out is not None and opts.out.exists() and not opts.out.is_dir():
        raise SettingsError(f"--out {opts.out} is not a directory")
    result = compare(stack, opts, progress=stderr)
    table = report.rows(result.summaries, timings=True)
    print(report.text_table(table), file=stdout)
    if opts.out is not None:
        try:
            written = write_outputs(stack, result, opts.out)
        except OSError as e:
            raise SettingsError(f"cannot write to {opts.out}: {e.strerror or e}") from None
        print(f"\nreport: {written[-2]} (figures and summary.json beside it)", file=stdout)
    return 0
