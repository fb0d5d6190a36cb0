"""SLO rules for the models of the top priority class: recorded miss and error ratios
per window, the SLO constants as series, the fast latency alert the scheduler acts on,
and the SRE workbook's multi-window multi-burn-rate alerts.
"""

from __future__ import annotations

from typing import Any

from alerts.promql import by, le, num, rate, sel
from alerts.rules.case import (
    Builder,
    Case,
    Expected,
    Text,
    Value,
    annotations,
    eval_seconds,
    expected,
)
from alerts.rules.common import (
    CRITICAL,
    WARNING,
    dashboard_url,
    fast_window,
    histogram_fixture,
    p0_models,
    quantile_name,
    requests_fixture,
    team_of,
    zero_if_absent,
)
from deploy.stack import Model, Stack
from exporters.catalog.model import (
    MODEL_ERRORS,
    MODEL_REQUEST_DURATION,
    MODEL_REQUESTS,
    request_rate_query,
)
from exporters.catalog.recorded import (
    budget_remaining,
    error_budget,
    error_ratio,
    latency_budget,
    latency_miss_ratio,
    latency_threshold,
)
from scheduler.core.alerts import REQUEST_RATE_ANNOTATION

SLO_FILE = "slo.rules.yml"
# What the scheduler does about a breach, as on-call reads it.
ACTION_EN = {"rebalance": "borrowing GPUs from P1/P2", "scale": "adding nodes"}
ACTION_ZH = {"rebalance": "从 P1/P2 借用 GPU", "scale": "扩容节点"}
SLI_ZH = {"Latency": "延迟", "Availability": "可用性"}

# (long window, short window, burn-rate factor, severity): SRE workbook, table 5-8.
BURN_WINDOWS: tuple[tuple[str, str, float, str], ...] = (
    ("1h", "5m", 14.4, CRITICAL),
    ("6h", "30m", 6.0, CRITICAL),
    ("1d", "2h", 3.0, WARNING),
    ("3d", "6h", 1.0, WARNING),
)
SLO_WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
SLO_PERIOD = "30d"


def latency_alert_name(model: Model) -> str:
    """The fast latency alert's name (the same for every model; the ``model`` label tells them apart)."""
    return "NovabrainModelLatencyHigh"


def p99_expr(stack: Stack, model: Model, window: str | None = None) -> str:
    """The model's SLO quantile (p99 unless the stack says otherwise) over the fast window."""
    w = window or fast_window(stack)
    buckets = rate(sel(MODEL_REQUEST_DURATION.bucket, model=model.name), w)
    return (
        f"histogram_quantile({num(model.slo.latency_quantile)}, "
        f"sum {by(('le', 'model', 'pool'))} ({buckets}))"
    )


def request_rate_template(stack: Stack, model: Model) -> str:
    """The annotation that carries the model's request rate to the scheduler, which sizes
    P0's grant from it: a query when the alert fires (empty if the query finds nothing;
    the scheduler then borrows ``rebalance_step_gpus``)."""
    query = request_rate_query(model.name, fast_window(stack))
    return f'{{{{ with query `{query}` }}}}{{{{ . | first | value | printf "%.3f" }}}}{{{{ end }}}}'


def generate(b: Builder) -> None:
    stack = b.stack
    group_rec, group_alerts = "novabrain-slo-recording", "novabrain-slo-alerts"
    keys = ("model", "pool")
    for m in p0_models(stack):
        team = team_of(stack, m.pool)
        thr = m.slo.latency_threshold_seconds
        for w in SLO_WINDOWS:
            good = f"sum {by(keys)} ({rate(sel(MODEL_REQUEST_DURATION.bucket, model=m.name, le=le(thr)), w)})"
            total = f"sum {by(keys)} ({rate(sel(MODEL_REQUEST_DURATION.count, model=m.name), w)})"
            b.record(SLO_FILE, group_rec, latency_miss_ratio(w), f"1 - ({good} / {total})")
            errs = f"sum {by(keys)} ({rate(sel(MODEL_ERRORS.series, model=m.name), w)})"
            reqs = f"sum {by(keys)} ({rate(sel(MODEL_REQUESTS.series, model=m.name), w)})"
            b.record(SLO_FILE, group_rec, error_ratio(w), f"{zero_if_absent(errs, reqs)} / {reqs}")
        # Constants as series so dashboards can draw and divide by them for any $model.
        ml = {"model": m.name, "pool": m.pool}
        b.record(SLO_FILE, group_rec, latency_threshold(), f"vector({num(thr)})", **ml)
        b.record(
            SLO_FILE, group_rec, latency_budget(), f"vector({num(1 - m.slo.latency_target)})", **ml
        )
        b.record(
            SLO_FILE,
            group_rec,
            error_budget(),
            f"vector({num(1 - m.slo.availability_target)})",
            **ml,
        )
        for sli, ratio, budget in (
            ("latency", latency_miss_ratio, 1 - m.slo.latency_target),
            ("errors", error_ratio, 1 - m.slo.availability_target),
        ):
            b.record(
                SLO_FILE,
                group_rec,
                budget_remaining(sli),
                f"1 - avg_over_time({sel(ratio('5m'), model=m.name)}[{SLO_PERIOD}]) / {num(budget)}",
            )

        # The fast alert the scheduler acts on.
        if m.action is not None:
            name = latency_alert_name(m)
            q = quantile_name(m.slo.latency_quantile)
            expr = p99_expr(stack, m)
            b.alert(
                file=SLO_FILE,
                group=group_alerts,
                name=name,
                expr=f"{expr} > {num(thr)}",
                signal=expr,
                for_seconds=stack.alerting.latency_alert_for_seconds,
                severity=CRITICAL,
                labels={"pool": m.pool, "model": m.name, "team": team, "action": m.action},
                text=Text(
                    f"{m.name} {q} latency above {num(thr * 1000)} ms",
                    f"{m.name} {q} 延迟超过 {num(thr * 1000)} 毫秒",
                    f"{q} latency of {{{{ $labels.model }}}} in pool {{{{ $labels.pool }}}} is above "
                    f"its SLO threshold of {num(thr)} s: risk scoring is slow. The scheduler is "
                    f"already acting ({ACTION_EN[m.action]}).",
                    f"资源池 {{{{ $labels.pool }}}} 中 {{{{ $labels.model }}}} 的 {q} 延迟超过 SLO 阈值 "
                    f"{num(thr)} 秒：风险评分变慢。调度器已自动处置（{ACTION_ZH[m.action]}）。",
                ),
                value=Value("duration"),
                # Every request between the threshold and 4x it: the quantile interpolates.
                fired=thr + 3 * thr * m.slo.latency_quantile,
                dashboard=dashboard_url(stack, "latency", model=m.name),
                firing=histogram_fixture(m, 100, 100),
                quiet=histogram_fixture(m, 100, 0),
                out=({"model": m.name, "pool": m.pool},),
                title=m.name,
                # The firing fixture counts 100 requests a scrape.
                queried={
                    REQUEST_RATE_ANNOTATION: (
                        request_rate_template(stack, m),
                        f"{100 / stack.prometheus.scrape_interval_seconds:.3f}",
                    )
                },
            )

        for sli, ratio, target, fixture in (
            ("Latency", latency_miss_ratio, m.slo.latency_target, histogram_fixture),
            ("Availability", error_ratio, m.slo.availability_target, requests_fixture),
        ):
            name = f"NovabrainModel{sli}BudgetBurn"
            rules: list[dict[str, Any]] = []
            cases: list[Expected] = []
            budget = 1 - target
            what = f"{sli.lower()} SLO ({num(target * 100)}%)"
            what_zh = f"{SLI_ZH[sli]} SLO（{num(target * 100)}%）"
            for long, short, factor, severity in BURN_WINDOWS:
                bound = num(factor * budget)
                expr = (
                    f"{sel(ratio(long), model=m.name)} > {bound}"
                    f" and {sel(ratio(short), model=m.name)} > {bound}"
                )
                labels = {
                    "severity": severity,
                    "pool": m.pool,
                    "model": m.name,
                    "team": team,
                    "long_window": long,
                    "short_window": short,
                }
                text = Text(
                    f"{m.name} burns its {what} error budget {num(factor)}x too fast",
                    f"{m.name} 的{what_zh}错误预算消耗速度为可持续速度的 {num(factor)} 倍",
                    f"{{{{ $labels.model }}}} has spent its {what} error budget at {num(factor)}x "
                    f"the sustainable rate over both {long} and {short}.",
                    f"{{{{ $labels.model }}}} 在 {long} 和 {short} 两个窗口内都以可持续速度的 "
                    f"{num(factor)} 倍消耗{what_zh}错误预算。",
                )
                value = Value("percent", suffix=f" ({long})")
                ann = annotations(
                    stack, name, text, value, dashboard_url(stack, "burn", model=m.name)
                )
                rules.append({"alert": name, "expr": expr, "labels": labels, "annotations": ann})
                # Half the requests bad: the long window's ratio (the left operand) is 0.5.
                out = {"model": m.name, "pool": m.pool}
                cases.append(expected(name, out, labels, ann, value.format(0.5)))
            # Half the requests bad trips every window pair; none bad trips none.
            b.cases.append(
                Case(
                    SLO_FILE,
                    group_alerts,
                    name,
                    tuple(rules),
                    fixture(m, 100, 50),
                    fixture(m, 100, 0),
                    tuple(cases),
                    eval_seconds(stack, 0),
                    sel(ratio("1h"), model=m.name),
                    m.name,
                )
            )
