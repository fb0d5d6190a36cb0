"""Histogram buckets derived per model from the stack.

A latency SLO is checked by counting the bucket at its threshold, and the
alerts measure how far past it the tail went with the bucket at four times the
threshold, so both bounds are always present, exactly (``le`` is matched as a
string: a rounded ``0.05000001`` would not match ``0.05``). Around them the
ladder is denser near the threshold, where ``histogram_quantile`` must be
accurate for the p99 alert, and sparse far from it, where only the order of
magnitude matters. About 20 buckets per model keeps exposition cheap.
"""

from __future__ import annotations

from dataclasses import dataclass

from deploy.stack import Model

# Multiples of the SLO threshold. Dense between 0.5x and 2x (where p99 alerts
# decide), then a sparse tail out to 20x so an overload still has a quantile.
LATENCY_MULTIPLES = (
    0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9,
    1.0, 1.2, 1.5, 2.0, 3.0, 4.0, 6.0, 10.0, 20.0,
)  # fmt: skip
# Batches are counted in requests: powers of two up to a large dynamic batch.
BATCH_SIZE_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0)
# Decode steps of current LLMs take milliseconds to a few hundred milliseconds.
INTER_TOKEN_BUCKETS = (
    0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075,
    0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
)  # fmt: skip
# Time to first token includes prefill of long prompts: up to tens of seconds.
TIME_TO_FIRST_TOKEN_BUCKETS = (
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0, 40.0, 80.0,
)  # fmt: skip


def _clean(x: float) -> float:
    """Round a derived bound to 6 significant digits so ``le`` reads ``0.015``, not ``0.015000000000000001``."""
    return float(f"{x:.6g}")


def latency_buckets(threshold_seconds: float) -> tuple[float, ...]:
    """Bucket bounds (without ``+Inf``) for a latency whose SLO threshold is ``threshold_seconds``.

    Always contains ``threshold_seconds`` and ``4 * threshold_seconds`` as exactly
    those floats, so that ``le(threshold)`` and ``le(4 * threshold)`` match.
    """
    if not threshold_seconds > 0:
        raise ValueError(f"threshold must be > 0, got {threshold_seconds}")
    exact = (threshold_seconds, 4 * threshold_seconds)
    bounds = set(exact)
    for k in LATENCY_MULTIPLES:
        b = _clean(k * threshold_seconds)
        # A rounded neighbour of an exact bound would be a duplicate bucket under another spelling.
        if all(abs(b - e) > 1e-9 * e for e in exact):
            bounds.add(b)
    return tuple(sorted(bounds))


def _with(bounds: tuple[float, ...], *extra: float) -> tuple[float, ...]:
    return tuple(sorted(set(bounds) | set(extra)))


@dataclass(frozen=True)
class ModelBuckets:
    """Bucket bounds (without ``+Inf``) of every histogram of one model."""

    request_duration: tuple[float, ...]
    queue_wait: tuple[float, ...]
    batch_size: tuple[float, ...]
    time_to_first_token: tuple[float, ...]
    inter_token_latency: tuple[float, ...]


def buckets_for(model: Model) -> ModelBuckets:
    """The buckets of ``model``'s histograms, from its SLO in the stack.

    Queue wait is a part of the request latency, so it shares the ladder: a
    wait at the threshold is visible as such. For LLM models the threshold and
    4x it are also added to the time-to-first-token ladder, where the stack's
    latency SLO of an LLM usually applies.
    """
    thr = model.slo.latency_threshold_seconds
    lat = latency_buckets(thr)
    ttft = _with(TIME_TO_FIRST_TOKEN_BUCKETS, thr, 4 * thr)
    return ModelBuckets(
        request_duration=lat,
        queue_wait=lat,
        batch_size=BATCH_SIZE_BUCKETS,
        time_to_first_token=ttft,
        inter_token_latency=INTER_TOKEN_BUCKETS,
    )
