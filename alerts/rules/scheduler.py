"""Scheduler alerts: starving queues, failed scale-ups, unmet reservations, preemption
storms, and a failing Alertmanager webhook."""

from __future__ import annotations

from alerts.promql import by, dur, num, sel
from alerts.rules.case import Builder
from alerts.rules.common import (
    CRITICAL,
    PLATFORM_TEAM,
    WARNING,
    dashboard_url,
    is_top_priority,
    series,
    sustain_seconds,
)
from exporters.catalog.scheduler import (
    PREEMPTIONS,
    QUEUE_OLDEST_WAIT,
    RESERVATION_ACTIVE,
    RESERVATION_SATISFIED,
    SCALE_EVENTS,
)
from exporters.catalog.service import WEBHOOK_NOTIFICATIONS

SCHEDULER_FILE = "scheduler.rules.yml"
# Webhook results that mean the scheduler took the notification in (acted on,
# recognised as a replay, or recorded as not actionable).
WEBHOOK_OK_RESULTS = ("accepted", "duplicate", "ignored")
SCALE_FAILED_RESULT = "failed"


def generate(b: Builder) -> None:
    stack = b.stack
    group = "novabrain-scheduler"
    sustain = sustain_seconds(stack)
    top = max(stack.priority_classes.values())
    # A job whose aging bonus reached the cap and still waits is starving.
    starve_after = 3600.0 * stack.policy.fairness_cap / stack.policy.fairness_factor_per_hour
    for pool in stack.pools:
        labels = {"pool": pool.name, "team": pool.team}
        dash = dashboard_url(stack, "scheduler", pool=pool.name)
        if stack.priority_classes[pool.priority] < top:
            q = {"pool": pool.name, "priority": pool.priority}
            oldest = sel(QUEUE_OLDEST_WAIT.series, pool=pool.name)
            b.alert(
                file=SCHEDULER_FILE,
                group=group,
                name="NovabrainPoolStarvation",
                expr=f"{oldest} > {num(starve_after)}",
                signal=oldest,
                for_seconds=sustain,
                severity=WARNING,
                labels=labels,
                summary=f"Jobs in {pool.name} wait longer than {dur(starve_after)}",
                description=(
                    "The oldest waiting job in {{ $labels.pool }} ({{ $labels.priority }}) has "
                    f"waited past {dur(starve_after)}, when its aging bonus is already capped."
                ),
                dashboard=dash,
                firing=((series(QUEUE_OLDEST_WAIT.series, q), f"{num(starve_after + 60)}x{{n}}"),),
                quiet=((series(QUEUE_OLDEST_WAIT.series, q), "60x{n}"),),
                out=(q,),
                title=pool.name,
            )
        scale = {"pool": pool.name, "direction": "up", "result": SCALE_FAILED_RESULT}
        failed = sel(
            SCALE_EVENTS.series, pool=pool.name, direction="up", result=SCALE_FAILED_RESULT
        )
        inc = f"sum {by(('pool',))} (increase({failed}[{dur(sustain)}]))"
        b.alert(
            file=SCHEDULER_FILE,
            group=group,
            name="NovabrainScaleUpFailed",
            expr=f"{inc} > 0",
            signal=f"sum {by(('pool',))} ({sel(SCALE_EVENTS.series, pool=pool.name)})",
            for_seconds=0,
            severity=CRITICAL if is_top_priority(stack, pool) else WARNING,
            labels=labels,
            summary=f"Scale-up of {pool.name} failed",
            description="The scheduler could not add nodes to {{ $labels.pool }}.",
            dashboard=dash,
            firing=(
                (series(SCALE_EVENTS.series, scale), "0x{late} 1x{n}"),
                (series(SCALE_EVENTS.series, {**scale, "result": "ok"}), "0+1x{n}"),
            ),
            quiet=(
                (series(SCALE_EVENTS.series, scale), "0x{n}"),
                (series(SCALE_EVENTS.series, {**scale, "result": "ok"}), "0+1x{n}"),
            ),
            out=({"pool": pool.name},),
            title=pool.name,
        )

    for r in stack.reservations:
        pool = stack.pool(r.pool)
        rl = {"reservation": r.name, "pool": r.pool}
        active = sel(RESERVATION_ACTIVE.series, reservation=r.name)
        satisfied = sel(RESERVATION_SATISFIED.series, reservation=r.name)
        expr = f"({active} == 1) and on(reservation, pool) ({satisfied} == 0)"
        b.alert(
            file=SCHEDULER_FILE,
            group=group,
            name="NovabrainReservationNotMet",
            expr=expr,
            signal=satisfied,
            # Active includes the drain lead: not holding the GPUs yet is only a
            # problem once the lead is over, i.e. at the window's start.
            for_seconds=r.drain_lead_seconds,
            severity=CRITICAL if is_top_priority(stack, pool) else WARNING,
            labels={"pool": r.pool, "team": pool.team},
            summary=f"Reservation {r.name} not met at its start",
            description=(
                f"{{{{ $labels.pool }}}} does not hold the {r.gpus} GPUs reserved by "
                "{{ $labels.reservation }} although the window has started."
            ),
            dashboard=dashboard_url(stack, "scheduler", pool=r.pool),
            firing=(
                (series(RESERVATION_ACTIVE.series, rl), "1x{n}"),
                (series(RESERVATION_SATISFIED.series, rl), "0x{n}"),
            ),
            quiet=(
                (series(RESERVATION_ACTIVE.series, rl), "1x{n}"),
                (series(RESERVATION_SATISFIED.series, rl), "0x2 1x{n}"),
            ),
            out=(rl,),
            title=r.name,
        )

    platform = {"team": PLATFORM_TEAM}
    window = dur(stack.policy.cycle_window_seconds)
    storm = stack.total_gpus
    preempted = f"sum(increase({PREEMPTIONS.series}[{window}]))"
    victim = {"reason": "rebalance", "victim_priority": "P2"}
    b.alert(
        file=SCHEDULER_FILE,
        group=group,
        name="NovabrainPreemptionStorm",
        # More preemptions in one cycle window than the cluster has GPUs means
        # jobs are being preempted over and over: churn, not rebalancing.
        expr=f"{preempted} > {storm}",
        signal=preempted,
        for_seconds=0,
        severity=WARNING,
        labels=platform,
        summary="Preemption storm",
        description=f"More than {storm} preemptions in {window}: jobs are churning.",
        dashboard=dashboard_url(stack, "scheduler"),
        firing=((series(PREEMPTIONS.series, victim), f"0+{storm}x{{n}}"),),
        quiet=((series(PREEMPTIONS.series, victim), "0x{late} 1x{n}"),),
        out=({},),
    )
    bad = "!~" + "|".join(WEBHOOK_OK_RESULTS)
    failing = f"sum(increase({sel(WEBHOOK_NOTIFICATIONS.series, {'result': bad})}[{dur(sustain)}]))"
    b.alert(
        file=SCHEDULER_FILE,
        group=group,
        name="NovabrainWebhookFailing",
        expr=f"{failing} > 0",
        signal=f"sum({WEBHOOK_NOTIFICATIONS.series})",
        for_seconds=0,
        severity=CRITICAL,
        labels=platform,
        summary="The scheduler's Alertmanager webhook is failing",
        description=(
            "Alertmanager notifications to the scheduler are being rejected or failing: "
            "SLO breaches will not move GPUs."
        ),
        dashboard=dashboard_url(stack, "scheduler"),
        firing=(
            (series(WEBHOOK_NOTIFICATIONS.series, {"result": "accepted"}), "0+5x{n}"),
            (series(WEBHOOK_NOTIFICATIONS.series, {"result": "unauthorized"}), "0+1x{n}"),
        ),
        quiet=(
            (series(WEBHOOK_NOTIFICATIONS.series, {"result": "accepted"}), "0+5x{n}"),
            (series(WEBHOOK_NOTIFICATIONS.series, {"result": "unauthorized"}), "2x{n}"),
        ),
        out=({},),
    )
