"""Model-level metrics: per model, version and pool; never a request-derived label."""

from __future__ import annotations

from exporters.catalog._metric import Metric, counter, gauge, histogram

MODEL_LABELS = ("model", "version", "pool")

MODEL_REQUESTS = counter(
    "model_requests", "Inference requests finished, by bounded outcome.", *MODEL_LABELS, "outcome"
)
MODEL_ERRORS = counter(
    "model_errors", "Inference requests that failed, by bounded reason.", *MODEL_LABELS, "reason"
)
MODEL_REQUEST_DURATION = histogram(
    "model_request_duration_seconds", "End-to-end inference latency.", *MODEL_LABELS
)
MODEL_IN_FLIGHT = gauge("model_requests_in_flight", "Requests being served now.", *MODEL_LABELS)

MODEL_METRICS: tuple[Metric, ...] = (
    MODEL_REQUESTS,
    MODEL_ERRORS,
    MODEL_REQUEST_DURATION,
    MODEL_IN_FLIGHT,
)
