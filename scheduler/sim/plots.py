"""The report's figures (PNG, matplotlib's Agg backend: no display needed).

- ``held.png``: GPUs held per pool over time, one panel per policy (stacked areas),
  the market-bell windows shaded;
- ``waits.png``: the distribution (CDF) of waits per pool, one line per policy;
- ``utilisation.png``: the cluster's utilisation by hour of the day, per policy;
- ``lost.png``: GPU-hours lost to preemption per policy, by victim pool.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from scheduler.core.model import ReservationSpec
from scheduler.core.windows import occurrences
from scheduler.sim.metrics import sample
from scheduler.sim.replay import Recorder

FIGURES = ("held.png", "waits.png", "utilisation.png", "lost.png")
_POINTS = 1500  # samples per curve: enough for weeks at a glance, small files


def _bells(spec: Sequence[ReservationSpec], t0: float, t1: float) -> list[tuple[float, float]]:
    out: set[tuple[float, float]] = set()
    for r in spec:
        t = t0
        while t < t1:
            for o in occurrences(r, t, days_ahead=8):
                if o.end > t0 and o.start < t1:
                    out.add((o.start, o.end))
            t += 7 * 86400
    return sorted(out)


def held(
    recs: Mapping[str, Recorder], reservations: Sequence[ReservationSpec], tz: str, path: Path
) -> None:
    zone = ZoneInfo(tz)
    names = list(recs)
    fig, axes = plt.subplots(
        len(names), 1, figsize=(11, 2.4 * len(names) + 0.6), sharex=True, squeeze=False
    )
    t0 = min(r.start for r in recs.values())
    t1 = max(r.end for r in recs.values())
    bells = _bells(reservations, t0, t1)
    for ax, name in zip(axes[:, 0], names, strict=True):
        rec = recs[name]
        times: list[float] = []
        layers = []
        for pool in rec.pools:
            times, values = sample(rec.held[pool], t0, t1, _POINTS)
            layers.append(values)
        stamps = [datetime.fromtimestamp(t, zone) for t in times]
        ax.stackplot(stamps, *layers, labels=rec.pools, step="post", alpha=0.85)
        cap = sample(_total(rec), t0, t1, _POINTS)[1]
        ax.step(stamps, cap, where="post", color="black", linewidth=0.8, label="capacity")
        for s, e in bells:
            ax.axvspan(
                datetime.fromtimestamp(s, zone),
                datetime.fromtimestamp(e, zone),
                color="red",
                alpha=0.12,
            )
        ax.set_ylabel("GPUs")
        ax.set_title(f"{name}: GPUs held per pool (market bell shaded)", fontsize=9, loc="left")
        ax.margins(x=0)
    axes[0, 0].legend(loc="upper right", fontsize=7, ncols=len(names) + 1)
    axes[-1, 0].xaxis.set_major_formatter(mdates.DateFormatter("%m-%d", tz=zone))  # type: ignore[no-untyped-call]
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _total(rec: Recorder) -> list[tuple[float, int]]:
    """The cluster's capacity over time, as one step function."""
    events = sorted((t, p, v) for p in rec.pools for t, v in rec.capacity[p])
    current = dict.fromkeys(rec.pools, 0)
    out: list[tuple[float, int]] = []
    for t, p, v in events:
        current[p] = v
        total = sum(current.values())
        if out and out[-1][0] == t:
            out[-1] = (t, total)
        else:
            out.append((t, total))
    return out


def waits(summaries: Mapping[str, Mapping[str, list[float]]], path: Path) -> None:
    """``summaries``: policy -> pool -> every job's wait (seconds)."""
    pools = sorted({p for s in summaries.values() for p in s})
    fig, axes = plt.subplots(
        1, max(1, len(pools)), figsize=(5 * max(1, len(pools)), 3.6), squeeze=False
    )
    for ax, pool in zip(axes[0], pools, strict=False):
        for name, per_pool in summaries.items():
            values = sorted(w / 3600.0 for w in per_pool.get(pool, []))
            if not values:
                continue
            ys = [(i + 1) / len(values) for i in range(len(values))]
            ax.step(values, ys, where="post", label=name)
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlabel("wait (hours)")
        ax.set_ylabel("share of jobs")
        ax.set_title(f"{pool}: waits (CDF)", fontsize=9, loc="left")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def utilisation(by_hour: Mapping[str, Sequence[float]], tz: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(8, 3.6))
    for name, values in by_hour.items():
        ax.plot(range(24), [100 * v for v in values], marker="o", markersize=3, label=name)
    ax.set_xticks(range(0, 24, 2))
    ax.set_xlabel(f"hour of the day ({tz})")
    ax.set_ylabel("GPUs busy (% of capacity)")
    ax.set_ylim(0, 100)
    ax.set_title("Cluster utilisation by hour of the day", fontsize=9, loc="left")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def lost(by_policy: Mapping[str, Mapping[str, float]], pools: Sequence[str], path: Path) -> None:
    """``by_policy``: policy -> victim pool -> GPU-hours lost."""
    fig, ax = plt.subplots(figsize=(7, 3.6))
    names = list(by_policy)
    bottom = [0.0] * len(names)
    for pool in pools:
        values = [by_policy[n].get(pool, 0.0) for n in names]
        ax.bar(names, values, bottom=bottom, label=pool)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    for i, total in enumerate(bottom):
        ax.text(i, total, f"{total:,.0f}", ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("GPU-hours lost to preemption")
    ax.set_title("Work thrown away by preemption, by victim pool", fontsize=9, loc="left")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
