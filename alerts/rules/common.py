"""What every rule family shares: severities, timings derived from the scrape interval,
stack lookups, the links every alert carries, and the promtool fixture helpers.

Owns no state; imports only the stack model, the PromQL helpers and the metric catalog.
"""

from __future__ import annotations

from collections.abc import Mapping

from alerts.promql import dur, le, num, sel
from deploy.stack import Model, Pool, Stack
from exporters.catalog.model import MODEL_ERRORS, MODEL_REQUEST_DURATION, MODEL_REQUESTS

# ----------------------------------------------------------------------------- constants

CRITICAL, WARNING, INFO = "critical", "warning", "info"
# Alerts about shared infrastructure (exporters, the scheduler itself) have no
# owning pool; they carry this team and reach the default on-call receiver.
PLATFORM_TEAM = "platform"

FAST_WINDOW_SCRAPES = 4
SUSTAIN_SCRAPES = 20
STALE_SCRAPES = 10


# The dashboards these alerts link to; tests check build_all produces these uids.
DASHBOARD_UIDS = {
    "gpu": "novabrain-gpu-fleet",
    "model": "novabrain-model-slo",
    "scheduler": "novabrain-scheduler",
}

# ----------------------------------------------------------------------------- timing


def fast_window(stack: Stack) -> str:
    return dur(FAST_WINDOW_SCRAPES * stack.prometheus.scrape_interval_seconds)


def sustain_seconds(stack: Stack) -> float:
    return SUSTAIN_SCRAPES * stack.prometheus.scrape_interval_seconds


def stale_seconds(stack: Stack) -> float:
    return STALE_SCRAPES * stack.prometheus.scrape_interval_seconds


# ----------------------------------------------------------------------------- links


def runbook_url(stack: Stack, alertname: str) -> str:
    return f"{stack.alerting.runbook_base_url.rstrip('/')}/{alertname.lower()}"


def dashboard_url(stack: Stack, key: str, **vars: str) -> str:
    query = "&".join(f"var-{k}={v}" for k, v in vars.items())
    url = f"{stack.grafana.url.rstrip('/')}/d/{DASHBOARD_UIDS[key]}"
    return f"{url}?{query}" if query else url


# ----------------------------------------------------------------------------- helpers


def model_labels(model: Model) -> dict[str, str]:
    return {"model": model.name, "version": model.version, "pool": model.pool}


def series(sample: str, labels: Mapping[str, str]) -> str:
    return sel(sample, **labels)


def team_of(stack: Stack, pool: str) -> str:
    return stack.pool(pool).team


def is_top_priority(stack: Stack, pool: Pool) -> bool:
    return stack.priority_classes[pool.priority] == max(stack.priority_classes.values())


def p0_models(stack: Stack) -> tuple[Model, ...]:
    """Models served from a pool of the highest priority class: the ones with SLO alerts."""
    return tuple(m for m in stack.models if is_top_priority(stack, stack.pool(m.pool)))


def quantile_name(q: float) -> str:
    """``0.99`` -> ``p99``, ``0.999`` -> ``p99.9``."""
    return "p" + num(round(q * 100, 6))


def histogram_fixture(model: Model, per_min: int, slow_per_min: int) -> tuple[tuple[str, str], ...]:
    """Request-duration buckets: ``slow_per_min`` of ``per_min`` land between the
    threshold and 4x it (the model server always has both bounds)."""
    thr = model.slo.latency_threshold_seconds
    labels = model_labels(model)
    fast = per_min - slow_per_min
    b = MODEL_REQUEST_DURATION
    return (
        (series(b.bucket, {**labels, "le": le(thr)}), f"0+{fast}x{{n}}"),
        (series(b.bucket, {**labels, "le": le(4 * thr)}), f"0+{per_min}x{{n}}"),
        (series(b.bucket, {**labels, "le": "+Inf"}), f"0+{per_min}x{{n}}"),
        (series(b.count, labels), f"0+{per_min}x{{n}}"),
    )


def requests_fixture(
    model: Model, per_sample: float, errors_per_sample: float
) -> tuple[tuple[str, str], ...]:
    labels = model_labels(model)
    ok = num(per_sample - errors_per_sample)
    bad = num(errors_per_sample)
    return (
        (series(MODEL_REQUESTS.series, {**labels, "outcome": "ok"}), f"0+{ok}x{{n}}"),
        (series(MODEL_REQUESTS.series, {**labels, "outcome": "error"}), f"0+{bad}x{{n}}"),
        (series(MODEL_ERRORS.series, {**labels, "reason": "backend"}), f"0+{bad}x{{n}}"),
    )


def zero_if_absent(numerator: str, denominator: str) -> str:
    """``numerator`` or, where a model has had no failures yet (prometheus_client
    exports a labelled counter only once it was incremented), zero."""
    return f"({numerator} or {denominator} * 0)"


Fixture = tuple[tuple[str, str], ...]
