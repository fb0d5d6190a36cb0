"""What every rule family shares: severities, timings derived from the scrape interval,
stack lookups, the links every alert carries, and the promtool fixture helpers.

Owns no state; imports only the stack model, the PromQL helpers and the metric catalog.
"""

from __future__ import annotations

from collections.abc import Mapping

from alerts.promql import dur, le, num, sel
from deploy.stack import FAST_WINDOW_SCRAPES, Model, Pool, Stack
from exporters.catalog.model import MODEL_ERRORS, MODEL_REQUEST_DURATION, MODEL_REQUESTS

# ----------------------------------------------------------------------------- constants

CRITICAL, WARNING, INFO = "critical", "warning", "info"
# Alerts about shared infrastructure (exporters, the scheduler itself) have no
# owning pool; they carry this team and reach the default on-call receiver.
PLATFORM_TEAM = "platform"

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


# The panel each alert opens: key -> (dashboard, panel id, panel title). The ids are
# those dashboards.build assigns; a test checks each id still holds that title.
PANELS: dict[str, tuple[str, int, str]] = {
    "latency": ("model", 5, "Latency against the SLO threshold"),
    "qps": ("model", 6, "Queries per second"),
    "errors": ("model", 7, "Error ratio"),
    "burn": ("model", 8, "Error budget burn rate"),
    "gpu_exporter": ("gpu", 4, "Exporter last collection age"),
    "gpu_collection": ("gpu", 3, "Exporter collection"),
    "temperature": ("gpu", 9, "Temperature"),
    "throttle": ("gpu", 11, "Clock throttling"),
    "ecc": ("gpu", 12, "ECC errors"),
    "xid": ("gpu", 13, "XID errors"),
    "gpu_up": ("gpu", 14, "GPU up by node"),
    "oldest_wait": ("scheduler", 4, "Oldest waiting job"),
    "preemptions": ("scheduler", 6, "Preemptions"),
    "scale": ("scheduler", 8, "Scale events"),
    "reservations": ("scheduler", 9, "Reservations"),
    "webhook": ("scheduler", 12, "Webhook notifications"),
    "audit_chain": ("scheduler", 13, "Audit chain verified"),
    "audit_forwarding": ("scheduler", 15, "Audit forwarding lag"),
}


def runbook_url(stack: Stack, alertname: str) -> str:
    """The alert's runbook, ``docs/runbooks/<alertname>.md`` where the stack publishes it."""
    return f"{stack.alerting.runbook_base_url.rstrip('/')}/{alertname}.md"


def dashboard_url(stack: Stack, panel: str, **vars: str) -> str:
    """The dashboard panel the alert is about, with its variables set; the notification
    templates append the time range."""
    dashboard, panel_id, _ = PANELS[panel]
    query = "&".join([f"viewPanel={panel_id}", *(f"var-{k}={v}" for k, v in vars.items())])
    return f"{stack.grafana.url.rstrip('/')}/d/{DASHBOARD_UIDS[dashboard]}?{query}"


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
