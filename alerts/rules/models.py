"""Per-model health alerts for every model of the stack: error ratio and missing traffic."""

from __future__ import annotations

from alerts.promql import by, num, rate, sel
from alerts.rules.case import Builder, Text, Value
from alerts.rules.common import (
    WARNING,
    dashboard_url,
    fast_window,
    requests_fixture,
    sustain_seconds,
    team_of,
    zero_if_absent,
)
from exporters.catalog.model import MODEL_ERRORS, MODEL_REQUESTS

MODELS_FILE = "models.rules.yml"
MODEL_ERROR_RATIO = 0.05


def generate(b: Builder) -> None:
    stack = b.stack
    group = "novabrain-models"
    w = fast_window(stack)
    step = stack.prometheus.scrape_interval_seconds
    keys = ("model", "pool")
    for m in stack.models:
        team = team_of(stack, m.pool)
        labels = {"pool": m.pool, "model": m.name, "team": team}
        errs = f"sum {by(keys)} ({rate(sel(MODEL_ERRORS.series, model=m.name), w)})"
        reqs = f"sum {by(keys)} ({rate(sel(MODEL_REQUESTS.series, model=m.name), w)})"
        ratio = f"{zero_if_absent(errs, reqs)} / {reqs}"
        b.alert(
            file=MODELS_FILE,
            group=group,
            name="NovabrainModelErrorRateHigh",
            expr=f"{ratio} > {num(MODEL_ERROR_RATIO)}",
            signal=ratio,
            for_seconds=sustain_seconds(stack),
            severity=WARNING,
            labels=labels,
            text=Text(
                f"{m.name} fails more than {num(MODEL_ERROR_RATIO * 100)}% of requests",
                f"{m.name} 请求失败率超过 {num(MODEL_ERROR_RATIO * 100)}%",
                "{{ $labels.model }} in pool {{ $labels.pool }} has a high error ratio: "
                "its callers get errors.",
                "资源池 {{ $labels.pool }} 中 {{ $labels.model }} 的错误率过高：调用方正在收到错误。",
            ),
            value=Value("percent"),
            fired=0.2,  # 20 of every 100 requests fail
            dashboard=dashboard_url(stack, "errors", model=m.name),
            firing=requests_fixture(m, 100, 20),
            quiet=requests_fixture(m, 100, 0),
            out=({"model": m.name, "pool": m.pool},),
            title=m.name,
        )
        if m.min_qps > 0:
            qps = f"sum {by(keys)} ({rate(sel(MODEL_REQUESTS.series, model=m.name), w)})"
            absent = f"absent({sel(MODEL_REQUESTS.series, model=m.name)})"
            b.alert(
                file=MODELS_FILE,
                group=group,
                name="NovabrainModelNoTraffic",
                expr=f"{qps} < {num(m.min_qps)} or {absent}",
                signal=qps,
                for_seconds=sustain_seconds(stack),
                severity=WARNING,
                labels=labels,
                text=Text(
                    f"{m.name} serves under {num(m.min_qps)} requests/s",
                    f"{m.name} 每秒请求数低于 {num(m.min_qps)}",
                    "{{ $labels.model }} in pool {{ $labels.pool }} gets less traffic than "
                    "expected: clients may not reach it.",
                    "资源池 {{ $labels.pool }} 中 {{ $labels.model }} 的流量低于预期：调用方可能无法访问它。",
                ),
                value=Value("number", suffix=" req/s"),
                fired=0.1 * m.min_qps,
                dashboard=dashboard_url(stack, "qps", model=m.name),
                # A tenth of the expected traffic vs. ten times it.
                firing=requests_fixture(m, 0.1 * m.min_qps * step, 0),
                quiet=requests_fixture(m, 10 * m.min_qps * step, 0),
                out=({"model": m.name, "pool": m.pool},),
                title=m.name,
            )
