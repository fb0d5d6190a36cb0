"""The comparison as people read it: a table, ``report.md`` and ``summary.json``.

``timings=False`` leaves out everything measured on the wall clock (decision cost,
replay speed), so that the same inputs give the same bytes (``docs/scheduling.md``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from scheduler.sim.plots import FIGURES


@dataclass(frozen=True)
class Context:
    """What the reader needs besides the numbers: inputs, assumptions, mapping."""

    traces: Sequence[str]
    rows: int
    skipped: Mapping[str, int]  # reason -> rows (unreadable, or not mappable to a pool)
    start: str  # local date and time of the replay's start
    gpus: int
    pools: Sequence[tuple[str, str, int]]  # (name, class, nominal GPUs)
    mapping: Sequence[str]
    jobs_by_pool: Mapping[str, int]
    descriptions: Mapping[str, str]  # policy -> what it is
    assumptions: Sequence[tuple[str, str, str]]  # (what, value, if it were wrong)
    p0_profile: Sequence[str]


def _h(seconds: float) -> str:
    """A duration, short: 0, 45s, 12m, 3.4h, 2.1d."""
    if seconds <= 0:
        return "0"
    if seconds < 60:
        return f"{seconds:.0f}s"
    if seconds < 3600:
        return f"{seconds / 60:.0f}m"
    if seconds < 86400 * 2:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def rows(summaries: Mapping[str, Mapping[str, Any]], *, timings: bool) -> list[list[str]]:
    """The comparison table: a header row, then one row per policy."""
    naive = summaries.get("naive")
    naive_lost = naive["preemptions"]["gpu_hours_lost"] if naive else 0.0
    pools = sorted({p for s in summaries.values() for p in s["waits"]})
    head = ["policy", "P0 wait p50/p99/max", "P0 min > SLO", "spike served"]
    head += [f"{p} wait p50/p95/max" for p in pools]
    head += [">4h", "longest wait", "util", "preempt (max/job)", "GPU-h lost (x naive)", "cycles"]
    if timings:
        head += ["call p50/p99 us", "jobs/s"]
    out = [head]
    for name, s in summaries.items():
        p0 = list(s["p0"].values())
        if p0:
            q = p0[0]
            row = [
                name,
                f"{_h(q['wait_p50_seconds'])}/{_h(q['wait_p99_seconds'])}/{_h(q['wait_max_seconds'])}",
                f"{q['minutes_above_slo']:.0f}",
                f"{100 * q['spike_served_share']:.0f}%",
            ]
        else:
            row = [name, "-", "-", "-"]
        for p in pools:
            w = s["waits"].get(p)
            row.append(f"{_h(w['p50'])}/{_h(w['p95'])}/{_h(w['max'])}" if w else "-")
        pre = s["preemptions"]
        lost = pre["gpu_hours_lost"]
        ratio = f" ({lost / naive_lost:.2f})" if naive_lost > 0 else ""
        row += [
            str(sum(w["over_4h"] for w in s["waits"].values())),
            _h(s["longest_wait_seconds"]),
            f"{100 * s['utilisation']['overall']:.1f}%",
            f"{pre['count']} ({pre['max_per_job']})",
            f"{lost:,.1f}{ratio}",
            str(pre["cycles_refused"]),
        ]
        if timings:
            c = s["decision_cost"]
            row += [
                f"{c['p50_us']:.0f}/{c['p99_us']:.0f}",
                f"{s['replay']['jobs_per_second']:,.0f}",
            ]
        out.append(row)
    return out


def text_table(table: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(table: list[list[str]]) -> str:
    out = ["| " + " | ".join(table[0]) + " |", "|" + "---|" * len(table[0])]
    out += ["| " + " | ".join(r) + " |" for r in table[1:]]
    return "\n".join(out)


def markdown(
    ctx: Context,
    summaries: Mapping[str, Mapping[str, Any]],
    *,
    timings: bool,
    figures: Sequence[str] = FIGURES,
    title: str = "Scheduling policies replayed on a job trace",
) -> str:
    """The report: inputs, the comparison, each policy's detail, figures, assumptions."""
    lines = [f"# {title}", ""]
    lines += [
        f"Traces: {', '.join(ctx.traces)} ({ctx.rows} rows; "
        f"{sum(ctx.jobs_by_pool.values())} jobs replayed"
        + (
            "; skipped: " + ", ".join(f"{n} {why}" for why, n in sorted(ctx.skipped.items()))
            if ctx.skipped
            else "; none skipped"
        )
        + f"). Start: {ctx.start}. Cluster: {ctx.gpus} GPUs, "
        + ", ".join(f"{n} ({c}) {g}" for n, c, g in ctx.pools)
        + ".",
        "",
        "## The comparison",
        "",
        markdown_table(rows(summaries, timings=timings)),
        "",
        "P0 wait: how long P0 held fewer GPUs than its load needs (each shortfall, from "
        "when it began until P0 held enough). P0 min > SLO: minutes in which P0's predicted "
        "latency quantile was above the threshold. Spike served: the share of spike minutes "
        "in which P0 held all it needed. Waits: time queued, over all of a job's waits; >4h: "
        "jobs that waited more than 4 hours in all. Util: GPUs held by a running or "
        "checkpointing job over the capacity (nodes added by the autoscaler count from "
        "when they joined). GPU-h lost: work since the victim's last checkpoint, thrown away "
        "by preemption; x naive: its ratio to the naive policy's.",
        "",
        "## The policies",
        "",
    ]
    lines += [f"- **{n}**: {d}" for n, d in ctx.descriptions.items()]
    lines += ["", "## Per policy", ""]
    for name, s in summaries.items():
        j = s["jobs"]
        u = s["utilisation"]
        pre = s["preemptions"]
        lines += [f"### {name}", ""]
        lines.append(
            f"- jobs: {j['submitted']} submitted, {j['completed']} completed, "
            f"{j['unfinished']} unfinished, {j['refused_too_big']} refused (larger than the "
            "pool may ever hold)"
        )
        for pool, w in s["waits"].items():
            lines.append(
                f"- {pool} waits: p50 {_h(w['p50'])}, p95 {_h(w['p95'])}, p99 {_h(w['p99'])}, "
                f"max {_h(w['max'])} (`{w['longest_job']}`); {w['over_4h']} of {w['jobs']} jobs "
                "waited over 4 h"
            )
        for pool, q in s["p0"].items():
            lines.append(
                f"- {pool}: {q['shortfalls']} shortfalls (p50 {_h(q['wait_p50_seconds'])}, p99 "
                f"{_h(q['wait_p99_seconds'])}, max {_h(q['wait_max_seconds'])}), "
                f"{q['minutes_above_slo']:.0f} minutes above the SLO, "
                f"{100 * q['spike_served_share']:.0f}% of {q['spike_minutes']:.0f} spike minutes "
                f"served in full; {q['gpu_hours_short']:.1f} of {q['gpu_hours_needed']:.0f} "
                f"GPU-hours needed were missing; {q['alerts']} latency alerts"
            )
        lines.append(
            f"- utilisation: {100 * u['overall']:.1f}% overall ("
            + ", ".join(f"{p} {100 * v:.1f}%" for p, v in u["pools"].items())
            + f"); capacity {u['capacity_gpu_hours']:,.0f} GPU-hours, {u['nodes_added']} nodes "
            "added by scale-up"
        )
        pairs = ", ".join(f"{k} {v}" for k, v in pre["pairs"].items()) or "none"
        lines.append(
            f"- preemptions: {pre['count']} (victim<-preemptor: {pairs}); at most "
            f"{pre['max_per_job']} of one job; {pre['cycles_refused']} reversals refused; "
            f"{pre['gpu_hours_lost']:,.1f} GPU-hours lost ({100 * pre['lost_share_of_run']:.2f}% of "
            "the GPU time run)"
        )
        pl = s["placement"]
        lines.append(
            f"- placement: {pl['pods_spanning_nodes']} pods placed across nodes, "
            f"{pl['preemptions_without_hole']} preemptions that freed no hole the preemptor's "
            f"pods fit, {pl['repacks_declined']} waits only a repack of running pods would "
            "have ended"
        )
        if timings:
            c = s["decision_cost"]
            r = s["replay"]
            lines.append(
                f"- decision cost: p50 {c['p50_us']:.0f} us, p99 {c['p99_us']:.0f} us per call "
                f"({c['calls']} calls); replayed {r['simulated_days']:.1f} days in "
                f"{r['wall_seconds']:.2f} s ({r['jobs_per_second']:,.0f} jobs/s)"
            )
        lines.append("")
    if figures:
        lines += ["## Figures", ""]
    captions = {
        "held.png": "GPUs held per pool over time (market bell shaded)",
        "waits.png": "Waits per pool (CDF)",
        "utilisation.png": "Utilisation by hour of the day",
        "lost.png": "GPU-hours lost to preemption",
    }
    lines += [f"![{captions.get(f, f)}]({f})" for f in figures]
    lines += [*([""] if figures else []), "## How jobs were mapped to pools", ""]
    lines += [f"- {m}" for m in ctx.mapping]
    lines.append(
        "- replayed: " + ", ".join(f"{p} {n}" for p, n in sorted(ctx.jobs_by_pool.items()))
    )
    lines += ["", "## P0's load", ""]
    lines += [f"- {p}" for p in ctx.p0_profile]
    lines += [
        "",
        "## What the simulation assumes, and how the results move if it is wrong",
        "",
        "| assumption | value | if it is wrong |",
        "|---|---|---|",
    ]
    lines += [f"| {a} | {v} | {w} |" for a, v, w in ctx.assumptions]
    lines.append("")
    return "\n".join(lines)


def summary_json(ctx: Context, summaries: Mapping[str, Mapping[str, Any]]) -> str:
    return json.dumps(
        {
            "traces": list(ctx.traces),
            "rows": ctx.rows,
            "skipped": dict(ctx.skipped),
            "start": ctx.start,
            "gpus": ctx.gpus,
            "jobs_by_pool": dict(ctx.jobs_by_pool),
            "mapping": list(ctx.mapping),
            "policies": {
                n: {"description": ctx.descriptions[n], **s} for n, s in summaries.items()
            },
            "assumptions": [{"what": a, "value": v, "if_wrong": w} for a, v, w in ctx.assumptions],
        },
        indent=2,
        sort_keys=False,
    )
