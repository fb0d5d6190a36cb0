"""``docs/scheduling.md``: how the scheduler shares GPUs, every knob, and what the simulator says.

Generated (``make docs``) from the stack and a replay of the vendored sample trace,
and checked in CI like the other generated files: the same stack and trace give
the same bytes, so nothing measured on the wall clock goes in.

    python -m scheduler.sim.docs --stack deploy/stack.yaml --out docs/scheduling.md
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploy.stack import Stack, StackError, load_stack
from scheduler.sim import report
from scheduler.sim.run import Options, compare

SAMPLE = Path(__file__).resolve().parent / "traces" / "elasticflow-sample.csv"

# (stack key, what it does, what it trades, recommended range)
PARAMETERS: tuple[tuple[str, str, str, str], ...] = (
    (
        "fairness_factor_per_hour",
        "a waiting job's effective priority grows by this much per hour (Slurm's age factor)",
        "higher: old jobs of a lower class overtake new ones of a higher class sooner "
        "(less starvation, less strict priority)",
        "50-200; 0 for strict classes",
    ),
    (
        "fairness_cap",
        "the age bonus stops growing here",
        "above a class gap (P1 500 - P2 100 = 400) an old P2 job can overtake new P1 jobs",
        "at most the smallest gap between classes",
    ),
    (
        "min_runtime_seconds",
        "no job is preempted before it ran this long",
        "higher: fewer short-lived runs thrown away, but P0 finds fewer victims at the bell",
        "120-900",
    ),
    (
        "preemption_budget",
        "at most this many preemptions of one job inside the window",
        "lower: bounds a job's lost work per window; P0 must look further for victims",
        "1-3",
    ),
    (
        "preemption_budget_window_seconds",
        "the budget's window",
        "longer: the budget binds longer (the budget resets when preemptions leave it)",
        "3600-86400",
    ),
    (
        "cycle_window_seconds",
        "A preempted for B refuses B for A within this window",
        "longer: no ping-pong between two jobs, but the second may wait for its GPUs",
        "600-1800",
    ),
    (
        "default_grace_seconds",
        "a victim's time to checkpoint before its GPUs are taken",
        "longer: less work lost by slow checkpointers, P0 waits longer for freed GPUs",
        "at least the slowest job's checkpoint time; 30-120",
    ),
    (
        "grant_slo_margin",
        "a P0 grant is sized so the queueing model's predicted latency quantile, at the "
        "request rate the alert carried, stays this share under the threshold; borrowed "
        "GPUs go back once the load is served with this margin without them",
        "higher: bigger grants, GPUs kept longer (more preemption); lower: a grant that "
        "just fits, and a load a little above the model's breaches again",
        "0.1-0.3",
    ),
    (
        "rebalance_step_gpus",
        "GPUs one P0 latency alert borrows when its request rate is unknown (no serving "
        "spec for the model, an alert without the annotation, Prometheus unreachable)",
        "too few: another alert round (a minute or more) per shortfall; too many: needless "
        "preemptions",
        "what the largest spike beyond the reservation needs",
    ),
    (
        "return_stabilization_seconds",
        "borrowed GPUs go back once the load needed no more than the pool holds without "
        "them for this long (with the load unknown: this long after the alert resolved)",
        "shorter: lenders get their GPUs back sooner; a load that dips and returns breaches again",
        "longer than the dips inside a spike; 300-900",
    ),
    (
        "scale_up_wait_seconds",
        "a pool whose oldest job waited this long asks the autoscaler for nodes",
        "shorter: nodes for short bursts of queueing (cost); longer: queues wait",
        "60-600",
    ),
    (
        "scale_up_stabilization_seconds",
        "no new scale-up this soon after the last scaling event",
        "longer: fewer node requests, slower growth",
        "0-300",
    ),
    (
        "scale_down_stabilization_seconds",
        "no scale-down this soon after the last scaling event",
        "shorter: capacity leaves sooner; flapping if load returns",
        "300-900",
    ),
    (
        "scale_down_unneeded_seconds",
        "an autoscaled node idle this long is given back (also the provisioning timeout)",
        "shorter: cheaper, but a returning burst waits for new nodes",
        "600-1800",
    ),
    (
        "cost_before_class",
        "victims that lose the least work go first, whatever their class (borrowers first)",
        "true: least work thrown away, but a cheap P1 job goes before a costly P2 one; "
        "false: lower classes first, least work within a class",
        "true",
    ),
    (
        "preemption_priority_boost",
        "each preemption a job suffered raises its effective priority by this much",
        "higher: a preempted job is spared among equally cheap victims and its pool is "
        "served sooner",
        "50-200; 0 for off",
    ),
    (
        "max_preemptions_non_checkpointing",
        "a job that cannot checkpoint is a victim this many times in its life, then only "
        "to give back a pool's floor",
        "lower: its work is thrown away at most this often; P0 finds fewer victims",
        "1; 0 for no cap",
    ),
    (
        "max_preemptions_checkpointing",
        "the same for a job that checkpoints (it loses at most a checkpoint interval)",
        "lower: bounds its lost work and delays; P0 finds fewer victims",
        "3-10; 0 for no cap",
    ),
    (
        "drain_after_seconds",
        "a queue head waiting this long gets its pool's GPUs as they free up, not the jobs "
        "behind it",
        "shorter: big jobs wait less, small ones more (GPUs held idle until the head fits)",
        "the longest wait a big job may have beyond the runs in its way; 1800-7200",
    ),
    (
        "dry_run",
        "decide and record, change nothing",
        "to watch a policy on the real cluster before it acts",
        "true for the first days of a rollout",
    ),
)

HOW_IT_WORKS = """\
## How GPUs are shared

Every GPU belongs to one pool (its *home*). A pool has a nominal quota, a guaranteed
floor that is never lent, a lending limit (how many of its GPUs others may hold) and a
borrowing limit (how many foreign GPUs it may hold). The scheduler's core
(`scheduler/core/`, pure and deterministic) decides; the service persists each
decision before it is acted on.

- **Pods on nodes.** A job is pods (`gpus_per_pod`; else one pod up to the largest
  node, node-sized pods above; a P0 replica is the model's `gpus_per_replica`). Each
  pod gets all its GPUs on one node, a job's pods the fewest nodes, the fullest node
  they fit (`scheduler/core/fit.py`). A preemption frees pod-shaped holes or is not
  taken. Blind to nodes: `--variant NAME:node_aware=false`.
- **Borrowing.** A job takes its own pool's idle GPUs first, then idle GPUs of other
  pools, lowest class first, within both limits. Borrowing idle GPUs preempts no one.
- **Reclaim.** A pool whose lent GPUs are held by borrowers takes them back by
  preempting the borrowers, whatever their class.
- **Preemption.** Only the top class (P0) takes GPUs from the owners of lower pools.
  Victims come from one ordering (`scheduler/core/ordering.py`): borrowers first, least
  work lost since the last checkpoint (or since the start, for a job that cannot
  checkpoint) whatever the class, lower priority (boosted for every preemption a job
  already suffered), fewest victims, most recently started. Guards
  (`scheduler/core/guards.py`) hold a job back: a minimum runtime, a budget of
  preemptions per window, a lifetime cap per job (then it is a victim only to give back
  a pool's guaranteed floor, and borrows no other pool's GPUs, which could not be taken
  back, unless its own pool is too small for it or its pods fit on no node of its pool),
  and a cycle guard that refuses to reverse a recent preemption.
- **Checkpoints.** A victim gets a grace period to checkpoint, then its GPUs go to the
  preemptor; it is requeued and resumes from its last checkpoint. Work since that
  checkpoint is lost and accounted (per job, per pool).
- **Fairness.** Waiting jobs compete by effective priority: the class plus an age bonus
  that grows with the wait, up to a cap, plus the preemption boost. A queue head that
  waited `drain_after_seconds` is not starved by smaller jobs behind it: its pool holds
  the GPUs that free up for it until it fits (backfill goes on beside it).
- **Reservations.** Recurring windows in a timezone (the market bell) hold GPUs for a
  pool; borrowers are drained from `drain_lead_seconds` before the window opens.
- **Lending windows.** `pools[].lending_windows` (`{days, times, gpus, timezone,
  drain_lead_seconds}`; local times in `timezone`, default `alerting.timezone`;
  `18:00-08:30` ends the next day, `24:00` is midnight; `days` are the days a window
  starts; windows that touch are one stretch) let a pool lend up to `gpus` of its GPUs,
  floor included, past its `lending_limit`: P0's idle GPUs work while the market is
  closed (the committed stack: 6 of p0-risk's 8, every evening 18:00 to 08:30 and all
  weekend). Only jobs that can be drained in time borrow them: preemptible, inside their
  budget and lifetime cap, a grace shorter than the lead, and losing little (inference,
  checkpointing jobs, or jobs done before the drain). From `drain_lead_seconds` (default
  300) before a window ends they are preempted (cause `loan_end`), so none is left when
  it closes.
- **Alerts: P0 borrows what its SLO needs.** When P0's latency alert fires (after its
  `for:` and Alertmanager's `group_wait`), P0 grows by preemption if need be. The alert
  carries the model's request rate (annotation `request_rate_rps`, a Prometheus query
  filled as it fires). With the stack's `models[].serving` (service time per request,
  GPUs per replica, requests a replica serves at once), the grant is sized by the M/G/c
  queueing model (`scheduler/core/capacity.py`, Erlang C): the fewest whole replicas
  whose predicted p99 is `grant_slo_margin` under the threshold, less the GPUs P0 serves
  on and those granted already but not yet arrived (so a second alert does not ask
  twice), capped by the borrowing limit. The decision records the rate, the service
  time, the GPUs held and granted, and the predicted p99 before and after. Without a
  rate the grant is `rebalance_step_gpus`. While the alert fires, a higher load reported
  by the scheduler's load poller (the same query, every scrape interval) tops the grant
  up: under overload the measured rate is what P0 could serve, not what arrives.
- **Borrowed GPUs go back when no longer needed.** Not when the alert resolves (it
  resolves *because* the GPUs arrived): the newest grant goes back once the most the
  load needed over the last `return_stabilization_seconds` is served within the margin
  without it. A reservation window that ends while the load still needs its GPUs hands
  them to a grant in the same step, so P0 is never short in between. With the load
  unknown, grants go back `return_stabilization_seconds` after the alert resolved.
- **Time to capacity.** Every grant's alert to first victim signalled, last GPU free,
  and P0 serving on all of them is exported (the catalog's `GRANT_TIME_TO_CAPACITY`,
  by pool and stage) and drawn on the scheduler dashboard.
- **Scaling.** A pool whose queue waits asks the Cluster Autoscaler for nodes within
  `max_nodes`; idle autoscaled nodes are given back after the unneeded time.
"""


def _param_rows(stack: Stack) -> list[str]:
    rows = [
        "| parameter | in the stack | what it does | what it trades | recommended |",
        "|---|---|---|---|---|",
    ]
    for key, what, trade, rng in PARAMETERS:
        value = getattr(stack.policy, key)
        rows.append(f"| `scheduler.{key}` | {value} | {what} | {trade} | {rng} |")
    return rows


def _risks(summaries: dict[str, dict[str, Any]]) -> list[str]:
    nb = summaries["novabrain"]
    nv = summaries["naive"]
    st = summaries["static"]
    pre = nb["preemptions"]
    p0 = next(iter(nb["p0"].values()), None)
    ratio = (
        pre["gpu_hours_lost"] / nv["preemptions"]["gpu_hours_lost"]
        if nv["preemptions"]["gpu_hours_lost"]
        else 0.0
    )
    out = [
        "## The risks, in numbers",
        "",
        "On the sample trace, with the committed stack (the table above):",
        "",
        f"- **Starvation.** The longest wait of any job is {report._h(nb['longest_wait_seconds'])} "
        f"under the stack's policy ({report._h(st['longest_wait_seconds'])} with static pools, "
        f"{report._h(nv['longest_wait_seconds'])} naive); "
        f"{sum(w['over_4h'] for w in nb['waits'].values())} jobs wait more than 4 hours in all.",
        f"- **Thrash.** {pre['count']} preemptions, at most {pre['max_per_job']} of one job; "
        f"{pre['cycles_refused']} reversals refused by the cycle guard (naive: "
        f"{nv['preemptions']['count']}, at most {nv['preemptions']['max_per_job']} of one job).",
        f"- **Lost work.** {pre['gpu_hours_lost']:,.1f} GPU-hours thrown away "
        f"({100 * pre['lost_share_of_run']:.2f}% of the GPU time run), {ratio:.2f}x naive's "
        f"{nv['preemptions']['gpu_hours_lost']:,.1f}.",
    ]
    if p0 is not None:
        sp = next(iter(st["p0"].values()))
        out.append(
            f"- **Latency of preemption itself.** P0 was short {p0['shortfalls']} times (p50 "
            f"{report._h(p0['wait_p50_seconds'])}, max {report._h(p0['wait_max_seconds'])}: the "
            f"alert's delay plus the victims' grace), {p0['minutes_above_slo']:.0f} minutes above "
            f"its SLO, and served {100 * p0['spike_served_share']:.0f}% of the spike minutes in "
            f"full (static pools: {sp['minutes_above_slo']:.0f} minutes above, "
            f"{100 * sp['spike_served_share']:.0f}% served)."
        )
    out.append("")
    return out


def build(stack: Stack, trace: Path = SAMPLE) -> str:
    result = compare(stack, Options(traces=[trace]))
    ctx = result.context
    ctx = report.Context(**{**ctx.__dict__, "traces": [f"scheduler/sim/traces/{trace.name}"]})
    lines = [
        "# Scheduling: how GPUs are shared, every knob, and what it costs",
        "",
        "<!-- Generated by `make docs` from deploy/stack.yaml and the sample trace: do not edit. -->",
        "",
        HOW_IT_WORKS,
        "## The parameters",
        "",
        *_param_rows(stack),
        "",
        "Reservations, limits and floors are per pool and per window in the stack "
        "(`pools[]`, `reservations[]`); the simulator's assumptions are its `simulation` "
        "section (below). Check a change before it reaches the cluster: "
        "`novabrain simulate --trace YOUR.csv --variant NAME:key=value --out DIR`.",
        "",
        "## What the simulator gives for the committed stack",
        "",
    ]
    md = report.markdown(ctx, result.summaries, timings=False, figures=(), title="x")
    body = md.split("\n", 2)[2]  # without the report's title
    lines.append(body.replace("## ", "### "))
    lines += _risks(result.summaries)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="generate docs/scheduling.md")
    ap.add_argument("--stack", type=Path, default=Path("deploy/stack.yaml"))
    ap.add_argument("--out", type=Path, default=Path("docs/scheduling.md"))
    args = ap.parse_args(argv)
    try:
        stack = load_stack(args.stack)
    except StackError as e:
        print(f"docs: invalid stack {args.stack}: {e}", file=sys.stderr)
        return 2
    args.out.write_text(build(stack), encoding="utf-8")
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
