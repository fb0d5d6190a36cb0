"""Model-level metrics: per model, version and pool; never a request-derived label."""

from __future__ import annotations

from exporters.catalog._metric import Metric, counter, gauge, histogram

MODEL_LABELS = ("model", "version", "pool")

MODEL_REQUESTS = counter(
    "model_requests", "Inference requests finished, by bounded outcome.", *MODEL_LABELS, "outcome"
)
MODEL_ERRORS = counter(
    "model_errors",
    "Failed requests by bounded reason (rejected, timeout, backend, other).",
    *MODEL_LABELS,
    "reason",
)
MODEL_REQUEST_DURATION = histogram(
    "model_request_duration_seconds", "End-to-end inference latency.", *MODEL_LABELS
)
MODEL_QUEUE_WAIT = histogram(
    "model_queue_wait_seconds", "Time a request waited before service.", *MODEL_LABELS
)
MODEL_IN_FLIGHT = gauge("model_requests_in_flight", "Requests being served now.", *MODEL_LABELS)
MODEL_BATCH_SIZE = histogram("model_batch_size", "Requests per executed batch.", *MODEL_LABELS)

# LLM serving
MODEL_TIME_TO_FIRST_TOKEN = histogram(
    "model_time_to_first_token_seconds",
    "Time from request to first generated token.",
    *MODEL_LABELS,
)
MODEL_INTER_TOKEN_LATENCY = histogram(
    "model_inter_token_latency_seconds", "Time between generated tokens.", *MODEL_LABELS
)
MODEL_PROMPT_TOKENS = counter("model_prompt_tokens", "Prompt tokens processed.", *MODEL_LABELS)
MODEL_GENERATION_TOKENS = counter("model_generation_tokens", "Tokens generated.", *MODEL_LABELS)
MODEL_REQUESTS_RUNNING = gauge(
    "model_requests_running", "LLM requests being decoded.", *MODEL_LABELS
)
MODEL_REQUESTS_WAITING = gauge("model_requests_waiting", "LLM requests queued.", *MODEL_LABELS)

# Requests naming a model the stack does not declare: one unlabelled series, so
# that a hostile path is visible without creating series.
MODEL_UNKNOWN_REQUESTS = counter(
    "model_unknown_requests",
    "Requests for a model or version the stack does not declare (no labels: never a request-derived value).",
)

MODEL_METRICS: tuple[Metric, ...] = (
    MODEL_REQUESTS,
    MODEL_ERRORS,
    MODEL_REQUEST_DURATION,
    MODEL_QUEUE_WAIT,
    MODEL_IN_FLIGHT,
    MODEL_BATCH_SIZE,
    MODEL_TIME_TO_FIRST_TOKEN,
    MODEL_INTER_TOKEN_LATENCY,
    MODEL_PROMPT_TOKENS,
    MODEL_GENERATION_TOKENS,
    MODEL_REQUESTS_RUNNING,
    MODEL_REQUESTS_WAITING,
    MODEL_UNKNOWN_REQUESTS,
)


def request_rate_query(model: str, window: str) -> str:
    """PromQL for ``model``'s requests per second over ``window``: every request is observed
    in the duration histogram, so its ``_count`` is the request counter. The P0 latency
    alert's ``request_rate_rps`` annotation and the scheduler's load poller both ask it."""
    return f'sum(rate({MODEL_REQUEST_DURATION.count}{{model="{model}"}}[{window}]))'
