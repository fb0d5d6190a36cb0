"""Histogram buckets come from the stack: the SLO threshold and 4x it, exactly, plus a spread."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from alerts.promql import le
from deploy.stack import Stack
from exporters.catalog.model import (
    MODEL_INTER_TOKEN_LATENCY,
    MODEL_QUEUE_WAIT,
    MODEL_REQUEST_DURATION,
    MODEL_TIME_TO_FIRST_TOKEN,
)
from exporters.instrument import ModelInstruments, buckets_for, latency_buckets


def _check_ladder(bounds: tuple[float, ...], thr: float) -> None:
    assert list(bounds) == sorted(set(bounds)), "strictly increasing"
    assert thr in bounds and 4 * thr in bounds
    # A spread: well below the threshold and well past 4x it ...
    assert bounds[0] <= thr / 10 and bounds[-1] >= 10 * thr
    # ... dense near the threshold (p99 alerts decide there) ...
    assert sum(1 for b in bounds if thr / 2 <= b <= 2 * thr) >= 8
    # ... and bounded, since every bucket is a series per model.
    assert len(bounds) <= 25
    # No two spellings of the same bound.
    assert len({le(b) for b in bounds}) == len(bounds)


def test_every_model_of_the_stack_file(stack: Stack) -> None:
    for m in stack.models:
        thr = m.slo.latency_threshold_seconds
        b = buckets_for(m)
        _check_ladder(b.request_duration, thr)
        _check_ladder(b.queue_wait, thr)


def test_risk_scorer_exposes_the_le_strings_the_alerts_match(stack: Stack) -> None:
    reg = CollectorRegistry()
    ModelInstruments(stack, reg)
    text = generate_latest(reg).decode()
    m = next(m for m in stack.models if m.name == "risk-scorer")
    thr = m.slo.latency_threshold_seconds
    for bound in (thr, 4 * thr, float("inf")):
        line = re.compile(
            rf'^{MODEL_REQUEST_DURATION.bucket}\{{le="{re.escape(le(bound))}",model="risk-scorer"',
            re.M,
        )
        assert line.search(text), f"no bucket le={le(bound)}"
    assert 'le="0.05"' in text and 'le="0.2"' in text


def test_llm_histograms_only_for_llm_models(rich_stack: Stack) -> None:
    reg = CollectorRegistry()
    ModelInstruments(rich_stack, reg)
    llm = {"model": "chat-llm", "version": "v1", "pool": "p2-batch"}
    risk = {"model": "risk-scorer", "version": "v3", "pool": "p0-risk"}
    for fam in (MODEL_TIME_TO_FIRST_TOKEN, MODEL_INTER_TOKEN_LATENCY):
        assert reg.get_sample_value(fam.count, llm) == 0
        assert reg.get_sample_value(fam.count, risk) is None
    # The LLM's SLO threshold is on the TTFT ladder too.
    assert reg.get_sample_value(MODEL_TIME_TO_FIRST_TOKEN.bucket, {**llm, "le": le(0.5)}) == 0
    assert reg.get_sample_value(MODEL_TIME_TO_FIRST_TOKEN.bucket, {**llm, "le": le(2.0)}) == 0
    assert reg.get_sample_value(MODEL_QUEUE_WAIT.bucket, {**risk, "le": le(0.05)}) == 0


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=1e-4, max_value=600, allow_nan=False, allow_infinity=False))
def test_any_threshold(thr: float) -> None:
    _check_ladder(latency_buckets(thr), thr)


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan")])
def test_threshold_must_be_positive(bad: float) -> None:
    with pytest.raises(ValueError):
        latency_buckets(bad)
