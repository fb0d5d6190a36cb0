"""Triton Inference Server in our catalog's terms: recording rules.

A model served by Triton shows on the same dashboards and alerts as one served
through ``exporters.instrument``, for what Triton measures:

============================================  =============================================
Triton (per model, version)                   recorded as (with the stack's ``pool``)
============================================  =============================================
``nv_inference_request_success``              requests ``{outcome="ok"}``
``nv_inference_request_failure``              requests ``{outcome="error"}`` and errors by
                                              reason (``REJECTED`` -> ``rejected``,
                                              ``BACKEND`` -> ``backend``, ``OTHER`` or no
                                              reason label, before Triton 24.x, -> ``other``);
                                              ``CANCELED`` -> requests ``{outcome="cancelled"}``
``nv_inference_request_duration_us``          request duration ``_sum`` (seconds), with
                                              ``_count`` = successes (Triton accumulates
                                              duration over successful requests)
``nv_inference_queue_duration_us``            queue wait ``_sum`` (seconds) and ``_count``
============================================  =============================================

So QPS, error ratio and *average* latency (``rate(_sum) / rate(_count)``) work
for Triton models. The gap: Triton exports cumulative microsecond counters, no
histogram, so there are no ``_bucket`` series: ``histogram_quantile`` (p99
panels, the p99 latency alert) and the latency SLO, which counts the bucket at
the threshold, have no data for a Triton model. Triton's opt-in summaries
(``--metrics-config summary_latencies=true``) give per-instance quantiles that
cannot be aggregated across replicas and cost throughput; serve such a model
behind ``exporters.instrument``'s middleware for tail latency. Triton has no
timeout reason either (a queue timeout is counted as ``REJECTED``).

Only models the stack declares are translated (one rule set per model, which
also supplies the ``pool`` label Triton does not know), so an unknown Triton
model creates no series in our names. The recorded series keep Triton's
target labels (``job``, ``instance``) and are not summed across instances, so
each stays a counter that resets only when its Triton restarts, which ``rate``
handles; they carry ``source="triton"`` and so never collide with an
instrumented server's series for the same model. Triton's own metric names are
external names and appear here as literals.
"""

from __future__ import annotations

from typing import Any

from alerts.promql import num, sel
from deploy.stack import Model, Stack
from exporters.catalog.model import (
    MODEL_ERRORS,
    MODEL_QUEUE_WAIT,
    MODEL_REQUEST_DURATION,
    MODEL_REQUESTS,
)

GROUP_NAME = "novabrain-triton-adapter"
SOURCE = "triton"

SUCCESS = "nv_inference_request_success"
FAILURE = "nv_inference_request_failure"
REQUEST_DURATION_US = "nv_inference_request_duration_us"
QUEUE_DURATION_US = "nv_inference_queue_duration_us"

# Our bounded error reason -> the matcher on Triton's ``reason`` label that
# selects its failures (``alerts.promql.sel`` syntax: a plain value is equality).
# A Triton older than the reason label has none (the empty value): unknown, hence "other".
FAILURE_REASONS = {"rejected": "REJECTED", "backend": "BACKEND", "other": "=~OTHER|"}
CANCELED = "CANCELED"
# Divided, not multiplied by 1e-6: 200000 / 1e6 is 0.2 exactly, 200000 * 1e-6 is not.
MICROSECONDS_PER_SECOND = 1_000_000


def _rule(record: str, expr: str, model: Model, **labels: str) -> dict[str, Any]:
    return {
        "record": record,
        "expr": expr,
        "labels": {"pool": model.pool, "source": SOURCE, **labels},
    }


def _failures(model: Model, reason: str) -> str:
    """Failures of one model with the given reason matcher, Triton's ``reason`` label summed
    away (one instance's reasons reset together, so the sum is still a counter)."""
    return f"sum without (reason) ({sel(FAILURE, {'reason': reason}, model=model.name)})"


def model_rules(model: Model) -> list[dict[str, Any]]:
    """The recording rules that translate one model's Triton series."""
    success = sel(SUCCESS, model=model.name)
    rules = [
        _rule(MODEL_REQUESTS.series, success, model, outcome="ok"),
        _rule(MODEL_REQUESTS.series, _failures(model, "!=" + CANCELED), model, outcome="error"),
        _rule(MODEL_REQUESTS.series, _failures(model, CANCELED), model, outcome="cancelled"),
    ]
    for ours, matcher in FAILURE_REASONS.items():
        rules.append(_rule(MODEL_ERRORS.series, _failures(model, matcher), model, reason=ours))
    us = num(MICROSECONDS_PER_SECOND)
    rules += [
        _rule(
            MODEL_REQUEST_DURATION.sum,
            f"{sel(REQUEST_DURATION_US, model=model.name)} / {us}",
            model,
        ),
        _rule(MODEL_REQUEST_DURATION.count, success, model),
        _rule(MODEL_QUEUE_WAIT.sum, f"{sel(QUEUE_DURATION_US, model=model.name)} / {us}", model),
        _rule(MODEL_QUEUE_WAIT.count, success, model),
    ]
    return rules


def triton_rule_group(stack: Stack) -> dict[str, Any]:
    """One Prometheus rule group (rule-file YAML shape) for every model of the stack.

    One rule set per model *name*: Triton's ``version`` label passes through, so
    versions need no rules of their own (the pool is that of the version listed last).
    """
    by_name = {m.name: m for m in stack.models}
    return {"name": GROUP_NAME, "rules": [r for m in by_name.values() for r in model_rules(m)]}
