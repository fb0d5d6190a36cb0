"""Names of the series our recording rules produce.

``alerts.rules`` records them and the dashboards read them, so, like every
other metric name, they are spelt once, here. Prometheus's ``level:metric:ops``
convention, built on the catalog's own family names.
"""

from __future__ import annotations

from exporters.catalog.model import MODEL_REQUEST_DURATION, MODEL_REQUESTS


def latency_miss_ratio(window: str) -> str:
    """Fraction of requests slower than the model's SLO threshold, over ``window``."""
    return f"model:{MODEL_REQUEST_DURATION.name}:slo_miss_ratio_rate{window}"


def error_ratio(window: str) -> str:
    """Fraction of requests that failed, over ``window``."""
    return f"model:{MODEL_REQUESTS.name}:error_ratio_rate{window}"


def latency_budget() -> str:
    """The latency SLO's error budget (1 - target), one series per model."""
    return f"model:{MODEL_REQUEST_DURATION.name}:slo_error_budget_ratio"


def error_budget() -> str:
    """The availability SLO's error budget (1 - target), one series per model."""
    return f"model:{MODEL_REQUESTS.name}:slo_error_budget_ratio"


def latency_threshold() -> str:
    """The model's latency SLO threshold, for dashboards to draw against p99."""
    return f"model:{MODEL_REQUEST_DURATION.name}:slo_threshold_seconds"


def budget_remaining(sli: str) -> str:
    """Fraction of the 30-day error budget left (``sli`` is latency or errors)."""
    base = MODEL_REQUEST_DURATION.name if sli == "latency" else MODEL_REQUESTS.name
    return f"model:{base}:slo_error_budget_remaining_ratio"
