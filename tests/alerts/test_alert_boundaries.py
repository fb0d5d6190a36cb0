"""Alert thresholds at their boundaries, written from the stack's numbers.

The generated promtool cases come from the same builder as the rules and use
extreme inputs (no request slow, or all of them), so a threshold off by a
factor of two passes them. These cases are computed here, from the stack's SLO
and the SRE workbook's burn-rate table, independently of ``alerts.rules``: the
P0 latency alert stays quiet at 0.9x its threshold and fires at 1.1x; each
burn-rate page stays quiet just below factor x budget and fires just above.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from alerts.generate import write_all
from alerts.promql import dur, le, sel
from deploy.stack import Model, Stack
from exporters.catalog.model import MODEL_ERRORS, MODEL_REQUEST_DURATION, MODEL_REQUESTS

# The SRE workbook's paging pairs (table 5-8): long window, short window, burn factor.
PAGES = (("1h", "5m", 14.4), ("6h", "30m", 6.0))
LATENCY_ALERT = "NovabrainModelLatencyHigh"
PER_SAMPLE = 1000.0  # requests per sample interval


def _labels(m: Model) -> dict[str, str]:
    return {"model": m.name, "version": m.version, "pool": m.pool}


def _counter(series: str, per_sample: float, samples: int) -> dict[str, str]:
    return {"series": series, "values": f"0+{per_sample!r}x{samples}"}


def _firing(alert: str, m: Model, **labels: str) -> str:
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return f'count(ALERTS{{alertname="{alert}",alertstate="firing",model="{m.name}"{extra}}})'


def _any_state(alert: str, m: Model, **labels: str) -> str:
    extra = "".join(f',{k}="{v}"' for k, v in labels.items())
    return f'count(ALERTS{{alertname="{alert}",model="{m.name}"{extra}}})'


def _case(
    name: str, interval: str, series: list[dict[str, str]], at: str, expr: str, fires: bool
) -> dict[str, Any]:
    # Quiet means neither firing nor pending: the "for" clock must not even start.
    return {
        "name": name,
        "interval": interval,
        "input_series": series,
        "promql_expr_test": [
            {
                "expr": expr,
                "eval_time": at,
                "exp_samples": [{"labels": "{}", "value": 1}] if fires else [],
            }
        ],
    }


def _run(stack: Stack, tmp_path: Path, interval: float, tests: list[dict[str, Any]]) -> None:
    write_all(stack, tmp_path)
    doc = {
        "rule_files": ["../rules/slo.rules.yml"],
        "evaluation_interval": dur(interval),
        "tests": tests,
    }
    (tmp_path / "tests/boundaries.test.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    res = subprocess.run(
        ["promtool", "test", "rules", "tests/boundaries.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def _quantile_buckets(m: Model, value: float, samples: int) -> list[dict[str, str]]:
    """Request-duration buckets whose ``latency_quantile`` is exactly ``value``.

    Two buckets around it, (thr/2, 2 thr]: histogram_quantile interpolates
    linearly inside a bucket, so with a fraction ``f`` of requests under thr/2
    the quantile q lands at lo + (hi - lo) (q - f) / (1 - f); solved for f.
    """
    thr, q = m.slo.latency_threshold_seconds, m.slo.latency_quantile
    lo, hi = thr / 2, 2 * thr
    r = (value - lo) / (hi - lo)
    fast = (q - r) / (1 - r)
    assert 0 < fast < q
    b = MODEL_REQUEST_DURATION
    labels = _labels(m)
    return [
        _counter(sel(b.bucket, **labels, le=le(lo)), fast * PER_SAMPLE, samples),
        _counter(sel(b.bucket, **labels, le=le(hi)), PER_SAMPLE, samples),
        _counter(sel(b.bucket, **labels, le="+Inf"), PER_SAMPLE, samples),
        _counter(sel(b.count, **labels), PER_SAMPLE, samples),
    ]


def test_p0_latency_alert_fires_above_its_threshold_and_not_below(
    any_stack: Stack, tmp_path: Path
) -> None:
    stack = any_stack
    step = stack.prometheus.scrape_interval_seconds
    # Long past the pending period, with every rate window full.
    at = stack.alerting.latency_alert_for_seconds + 40 * step
    samples = int(at / step) + 5
    tests = []
    for m in (m for m in stack.models if m.action is not None):
        thr = m.slo.latency_threshold_seconds
        for factor, fires in ((0.9, False), (1.1, True)):
            series = _quantile_buckets(m, factor * thr, samples)
            expr = (_firing if fires else _any_state)(LATENCY_ALERT, m)
            tests.append(_case(f"{m.name} at {factor}x", dur(step), series, dur(at), expr, fires))
    assert tests
    _run(stack, tmp_path, step, tests)


def _slow_requests(m: Model, slow: float, samples: int) -> list[dict[str, str]]:
    """A fraction ``slow`` of requests over the latency threshold."""
    b = MODEL_REQUEST_DURATION
    labels = _labels(m)
    thr = m.slo.latency_threshold_seconds
    return [
        _counter(sel(b.bucket, **labels, le=le(thr)), (1 - slow) * PER_SAMPLE, samples),
        _counter(sel(b.bucket, **labels, le="+Inf"), PER_SAMPLE, samples),
        _counter(sel(b.count, **labels), PER_SAMPLE, samples),
    ]


def _failed_requests(m: Model, failed: float, samples: int) -> list[dict[str, str]]:
    """A fraction ``failed`` of requests answered with an error."""
    labels = _labels(m)
    bad = failed * PER_SAMPLE
    return [
        _counter(sel(MODEL_REQUESTS.series, **labels, outcome="ok"), PER_SAMPLE - bad, samples),
        _counter(sel(MODEL_REQUESTS.series, **labels, outcome="error"), bad, samples),
        _counter(sel(MODEL_ERRORS.series, **labels, reason="backend"), bad, samples),
    ]


def test_each_burn_rate_page_fires_just_above_factor_times_budget(
    stack: Stack, tmp_path: Path
) -> None:
    tests = []
    for m in (m for m in stack.models if m.action is not None):
        for alert, budget, fixture in (
            ("NovabrainModelLatencyBudgetBurn", 1 - m.slo.latency_target, _slow_requests),
            (
                "NovabrainModelAvailabilityBudgetBurn",
                1 - m.slo.availability_target,
                _failed_requests,
            ),
        ):
            for long, short, factor in PAGES:
                at_minutes = 30  # the ratio is constant, so every window already holds it
                for margin, fires in ((0.95, False), (1.05, True)):
                    series = fixture(m, margin * factor * budget, at_minutes + 5)
                    labels = {"long_window": long, "short_window": short}
                    expr = (_firing if fires else _any_state)(alert, m, **labels)
                    name = f"{alert} {long}/{short} at {margin} x {factor} x budget"
                    tests.append(_case(name, "1m", series, f"{at_minutes}m", expr, fires))
    assert tests
    _run(stack, tmp_path, 60.0, tests)
