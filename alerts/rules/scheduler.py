"""Scheduler alerts: starving queues, failed scale-ups, unmet reservations, preemption
storms, a failing Alertmanager webhook, and one throttling Alertmanager for long.

Throttling is not failing. Over its rate limit, Alertmanager gets 503 and Retry-After
(result ``throttled``); it retries, and the retry is acted on, so a burst (every group of a
market open at once) costs seconds and pages nobody. Throttling that does not stop means
Alertmanager sends more than the limit all the time: every notification waits for its
retries, and the rebalance a P0 breach asks for comes late. That is a warning of its own
(``NovabrainWebhookThrottled``), not the page that says the automation is off.
"""

from __future__ import annotations

from alerts.promql import by, dur, num, sel
from alerts.rules.case import Builder, Text, Value, eval_seconds
from alerts.rules.common import (
    CRITICAL,
    FAST_WINDOW_SCRAPES,
    PLATFORM_TEAM,
    WARNING,
    dashboard_url,
    fast_window,
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
# Refused for now, retried by Alertmanager (503 + Retry-After over the rate limit): not a
# failure, but NovabrainWebhookThrottled when it does not stop.
THROTTLED = "throttled"
WEBHOOK_RETRIED_RESULTS = (THROTTLED,)
SCALE_FAILED_RESULT = "failed"


def generate(b: Builder) -> None:
    stack = b.stack
    group = "novabrain-scheduler"
    sustain = sustain_seconds(stack)
    step = stack.prometheus.scrape_interval_seconds
    top = max(stack.priority_classes.values())
    # A job whose aging bonus reached the cap and still waits is starving.
    starve_after = 3600.0 * stack.policy.fairness_cap / stack.policy.fairness_factor_per_hour
    for pool in stack.pools:
        labels = {"pool": pool.name, "team": pool.team}
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
                text=Text(
                    f"Jobs in {pool.name} wait longer than {dur(starve_after)}",
                    f"{pool.name} 中的作业等待超过 {dur(starve_after)}",
                    "The oldest waiting job in {{ $labels.pool }} ({{ $labels.priority }}) has "
                    f"waited past {dur(starve_after)}, when its aging bonus is already capped.",
                    "{{ $labels.pool }}（{{ $labels.priority }}）中等待最久的作业已等待超过 "
                    f"{dur(starve_after)}，其等待加权已达上限。",
                ),
                value=Value("duration"),
                fired=starve_after + 60,
                dashboard=dashboard_url(stack, "oldest_wait", pool=pool.name),
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
            text=Text(
                f"Scale-up of {pool.name} failed",
                f"{pool.name} 扩容失败",
                "The scheduler could not add nodes to {{ $labels.pool }}.",
                "调度器未能为 {{ $labels.pool }} 增加节点。",
            ),
            value=Value("number", suffix=f" / {dur(sustain)}"),
            fired=1,
            dashboard=dashboard_url(stack, "scale", pool=pool.name),
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
            text=Text(
                f"Reservation {r.name} not met at its start",
                f"预留 {r.name} 在开始时未满足",
                f"{{{{ $labels.pool }}}} does not hold the {r.gpus} GPUs reserved by "
                "{{ $labels.reservation }} although the window has started.",
                f"预留窗口已开始，但 {{{{ $labels.pool }}}} 未持有 {{{{ $labels.reservation }}}} "
                f"预留的 {r.gpus} 块 GPU。",
            ),
            value=Value("text", prefix=f"{{{{ $labels.reservation }}}}: < {r.gpus} GPUs"),
            fired=1,
            dashboard=dashboard_url(stack, "reservations", pool=r.pool),
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
        text=Text(
            "Preemption storm",
            "抢占风暴",
            f"More than {storm} preemptions in {window}: jobs are churning.",
            f"{window} 内抢占超过 {storm} 次：作业在反复被抢占。",
        ),
        value=Value("number", suffix=f" / {window}"),
        # One more preemption per GPU every scrape since time zero.
        fired=storm * min(stack.policy.cycle_window_seconds, eval_seconds(stack, 0)) / step,
        dashboard=dashboard_url(stack, "preemptions"),
        firing=((series(PREEMPTIONS.series, victim), f"0+{storm}x{{n}}"),),
        quiet=((series(PREEMPTIONS.series, victim), "0x{late} 1x{n}"),),
        out=({},),
    )
    bad = "!~" + "|".join((*WEBHOOK_OK_RESULTS, *WEBHOOK_RETRIED_RESULTS))
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
        text=Text(
            "The scheduler's Alertmanager webhook is failing",
            "调度器的 Alertmanager Webhook 失败",
            "Alertmanager notifications to the scheduler are being rejected or failing: "
            "SLO breaches will not move GPUs.",
            "发往调度器的 Alertmanager 通知被拒绝或失败：SLO 违约时不会自动调度 GPU。",
        ),
        value=Value("number", suffix=f" / {dur(sustain)}"),
        fired=sustain / step,  # one rejected notification every scrape
        dashboard=dashboard_url(stack, "webhook"),
        firing=(
            (series(WEBHOOK_NOTIFICATIONS.series, {"result": "accepted"}), "0+5x{n}"),
            (series(WEBHOOK_NOTIFICATIONS.series, {"result": "unauthorized"}), "0+1x{n}"),
        ),
        quiet=(
            (series(WEBHOOK_NOTIFICATIONS.series, {"result": "accepted"}), "0+5x{n}"),
            (series(WEBHOOK_NOTIFICATIONS.series, {"result": "unauthorized"}), "2x{n}"),
            # Throttled all along, and retried: not a failure.
            (series(WEBHOOK_NOTIFICATIONS.series, {"result": THROTTLED}), "0+2x{n}"),
        ),
        out=({},),
    )
    throttled_alert(b, group)


def throttled_alert(b: Builder, group: str) -> None:
    """Throttled in every window of the fast window's length, for the sustain period: a burst
    Alertmanager retries through stays quiet; a limit it is over all the time warns."""
    stack = b.stack
    sustain = sustain_seconds(stack)
    window = fast_window(stack)
    throttled = sel(WEBHOOK_NOTIFICATIONS.series, result=THROTTLED)
    count = f"sum(increase({throttled}[{window}]))"
    fixture = series(WEBHOOK_NOTIFICATIONS.series, {"result": THROTTLED})
    accepted = (series(WEBHOOK_NOTIFICATIONS.series, {"result": "accepted"}), "0+5x{n}")
    b.alert(
        file=SCHEDULER_FILE,
        group=group,
        name="NovabrainWebhookThrottled",
        expr=f"{count} > 0",
        signal=count,
        for_seconds=sustain,
        severity=WARNING,
        labels={"team": PLATFORM_TEAM},
        text=Text(
            "Alertmanager is throttled by the scheduler's webhook",
            "调度器的 Webhook 持续限流 Alertmanager",
            f"For {dur(sustain)} the scheduler has answered Alertmanager 503 (over its rate "
            f"limit) in every {window}. Alertmanager retries, so nothing is lost, but "
            "notifications wait for their retries: a P0 rebalance comes late.",
            f"过去 {dur(sustain)} 内调度器每 {window} 都以 503（超出速率限制）应答 Alertmanager。"
            "Alertmanager 会重试，通知不会丢失，但需等待重试：P0 的调度会延迟。",
        ),
        value=Value("number", suffix=f" throttled / {window}"),
        fired=2.0 * FAST_WINDOW_SCRAPES,  # two throttled every scrape
        dashboard=dashboard_url(stack, "webhook"),
        firing=(accepted, (fixture, "0+2x{n}")),
        # A burst at a market open, retried within seconds: quiet.
        quiet=(accepted, (fixture, "0x{late} 30x{n}")),
        out=({},),
    )
