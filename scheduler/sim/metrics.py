"""The numbers of one policy's replay: what the bank asked, computed from the ``Recorder``.

Everything here is a pure function of the recorded replay, so the same trace gives
the same numbers (but for the decision cost, which is measured wall time).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from scheduler.sim.replay import Recorder

LONG_WAIT_SECONDS = 4 * 3600.0
Step = Sequence[tuple[float, int]]  # (from, value) change points of a step function


def quantile(values: Sequence[float], q: float) -> float:
    """The nearest-rank quantile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1)) if q < 1 else -1
    return ordered[k]


def integrate(points: Step, t0: float, t1: float) -> float:
    """The integral of a step function over [t0, t1]."""
    total = 0.0
    for i, (t, v) in enumerate(points):
        end = points[i + 1][0] if i + 1 < len(points) else t1
        lo, hi = max(t, t0), min(end, t1)
        if hi > lo:
            total += v * (hi - lo)
    return total


def by_hour(points: Step, t0: float, t1: float, tz: ZoneInfo) -> list[float]:
    """The integral of a step function per local hour of the day (24 values)."""
    out = [0.0] * 24
    offset = datetime.fromtimestamp(t0, tz).utcoffset()
    shift = offset.total_seconds() if offset is not None else 0.0
    for i, (t, v) in enumerate(points):
        end = points[i + 1][0] if i + 1 < len(points) else t1
        lo, hi = max(t, t0), min(end, t1)
        if hi <= lo or v == 0:
            continue
        # A fixed offset from the start: exact for zones without daylight saving.
        local = lo + shift
        while local < hi + shift:
            hour_end = (local // 3600 + 1) * 3600
            seg = min(hour_end, hi + shift) - local
            out[int(local // 3600) % 24] += v * seg
            local += seg
    return out


def sample(points: Step, t0: float, t1: float, n: int) -> tuple[list[float], list[int]]:
    """The step function at ``n`` evenly spaced instants (for plots)."""
    times = [t0 + (t1 - t0) * k / max(1, n - 1) for k in range(n)]
    out = []
    j = 0
    for t in times:
        while j + 1 < len(points) and points[j + 1][0] <= t:
            j += 1
        out.append(points[j][1] if points and points[0][0] <= t else 0)
    return times, out


@dataclass(frozen=True)
class PoolWaits:
    jobs: int
    p50: float
    p95: float
    p99: float
    max: float
    over_4h: int
    longest_job: str


def summarise(rec: Recorder, timezone: str) -> dict[str, object]:
    """Every figure of the report for one policy, JSON-ready (seconds, GPU-hours, ratios)."""
    tz = ZoneInfo(timezone)
    t0, t1 = rec.start, max(rec.end, rec.start + 1.0)
    jobs = list(rec.jobs.values())
    refused = [j for j in jobs if j.refused]
    done = [j for j in jobs if j.end is not None]
    run = [j for j in jobs if not j.refused]
    unfinished = [j for j in run if j.end is None]
    # Waits: time queued, over every wait of a job (first and after each preemption);
    # an unfinished job's current wait counts to the end of the replay.
    waits: dict[str, list[tuple[float, str]]] = {}
    for j in run:
        w = j.waited
        if j.end is None and j.start is None:
            last = j.runs[-1][1] if j.runs else j.job.submit
            w += t1 - last
        waits.setdefault(j.job.pool, []).append((w, j.job.id))
    pools_waits = {}
    for pool, ws in sorted(waits.items()):
        values = [w for w, _ in ws]
        longest = max(ws)
        pools_waits[pool] = PoolWaits(
            len(values),
            quantile(values, 0.5),
            quantile(values, 0.95),
            quantile(values, 0.99),
            longest[0],
            sum(1 for w in values if w > LONG_WAIT_SECONDS),
            longest[1],
        ).__dict__
    all_waits = [w for ws in waits.values() for w, _ in ws]
    # Utilisation: GPUs busy (held by a running or checkpointing job) over capacity.
    capacity = {p: integrate(rec.capacity[p], t0, t1) for p in rec.pools}
    busy = {p: integrate(rec.busy_home[p], t0, t1) for p in rec.pools}
    cap_hour = [0.0] * 24
    busy_hour = [0.0] * 24
    per_pool_hour = {}
    for p in rec.pools:
        c = by_hour(rec.capacity[p], t0, t1, tz)
        b = by_hour(rec.busy_home[p], t0, t1, tz)
        per_pool_hour[p] = [bb / cc if cc else 0.0 for bb, cc in zip(b, c, strict=True)]
        cap_hour = [x + y for x, y in zip(cap_hour, c, strict=True)]
        busy_hour = [x + y for x, y in zip(busy_hour, b, strict=True)]
    total_cap = sum(capacity.values())
    lost_total = sum(rec.lost_by_pool.values())
    run_gpu_seconds = sum(g.job.gpus * (e - s) for g in jobs for s, e in g.runs)
    per_job = max((j.preemptions for j in jobs), default=0)
    p0 = {}
    for name, q in rec.p0.items():
        episodes = [d for _, d in q.shortfalls]
        p0[name] = {
            "shortfalls": len(episodes),
            "wait_p50_seconds": quantile(episodes, 0.5),
            "wait_p99_seconds": quantile(episodes, 0.99),
            "wait_max_seconds": max(episodes, default=0.0),
            "minutes_above_slo": q.above_slo_seconds / 60.0,
            "spike_minutes": q.spike_seconds / 60.0,
            "spike_served_share": (
                q.spike_served_seconds / q.spike_seconds if q.spike_seconds else 1.0
            ),
            "gpu_hours_needed": q.needed_area / 3600.0,
            "gpu_hours_short": (q.needed_area - q.served_area) / 3600.0,
            "alerts": q.alerts,
            "bell_wait_max_seconds": max(q.bell_waits, default=0.0),
            "bells": len(q.bell_waits),
            "shortfalls_after_first_grant": len(q.after_grant),
            "short_minutes_after_first_grant": q.short_after_grant_seconds / 60.0,
            "gpus_granted": sum(g for g, _ in q.grants),
            "gpus_lacking_at_grants": sum(n for _, n in q.grants),
            "grants": len(q.grants),
            "time_to_capacity": {
                stage: {"p50_seconds": quantile(v, 0.5), "max_seconds": max(v, default=0.0)}
                for stage in ("first_victim_signalled", "last_gpu_free", "serving")
                if (v := [t for p, s, t in rec.to_capacity if p == name and s == stage])
            },
        }
    calls = sorted(rec.call_seconds)
    return {
        "jobs": {
            "submitted": len(jobs),
            "refused_too_big": len(refused),
            "completed": len(done),
            "unfinished": len(unfinished),
        },
        "waits": pools_waits,
        "longest_wait_seconds": max(all_waits, default=0.0),
        "p0": p0,
        "utilisation": {
            "overall": sum(busy.values()) / total_cap if total_cap else 0.0,
            "pools": {p: busy[p] / capacity[p] if capacity[p] else 0.0 for p in rec.pools},
            "by_hour": [b / c if c else 0.0 for b, c in zip(busy_hour, cap_hour, strict=True)],
            "pools_by_hour": per_pool_hour,
            "capacity_gpu_hours": total_cap / 3600.0,
            "nodes_added": rec.nodes_added,
        },
        "preemptions": {
            "count": sum(rec.preemptions.values()),
            "max_per_job": per_job,
            "pairs": {f"{v}<-{b}": n for (v, b), n in sorted(rec.preemptions.items())},
            "cycles_refused": rec.cycles_refused,
            "gpu_hours_lost": lost_total / 3600.0,
            "gpu_hours_lost_by_pool": {p: s / 3600.0 for p, s in sorted(rec.lost_by_pool.items())},
            "lost_share_of_run": lost_total / run_gpu_seconds if run_gpu_seconds else 0.0,
        },
        "placement": {
            "pods_spanning_nodes": rec.pods_spanning_nodes,
            "preemptions_without_hole": rec.no_hole_preemptions,
            "repacks_declined": rec.repacks_declined,
        },
        "decision_cost": {
            "calls": len(calls),
            "p50_us": quantile(calls, 0.5) * 1e6,
            "p99_us": quantile(calls, 0.99) * 1e6,
        },
        "replay": {
            "simulated_days": (t1 - t0) / 86400.0,
            "wall_seconds": rec.wall_seconds,
            "jobs_per_second": len(jobs) / rec.wall_seconds if rec.wall_seconds else 0.0,
            "ticks": rec.ticks,
            "decisions": rec.decisions,
        },
    }
