"""The direct text renderer writes exactly what generate_latest writes for the same values."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from deploy.stack import Stack
from exporters.instrument import ErrorReason, ModelInstruments, MultiprocessError, Outcome


def _parsed(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.endswith("_created"):
                continue
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _families(text: str) -> list[tuple[str, str, str]]:
    return [(f.name, f.type, f.documentation) for f in text_string_to_metric_families(text)]


values = st.floats(min_value=0, max_value=1e4, allow_nan=False)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["risk-scorer", "chat-llm", "unknown"]),
            values,
            st.sampled_from(list(Outcome)),
            st.sampled_from(list(ErrorReason)),
            st.integers(0, 300),
        ),
        max_size=30,
    )
)
def test_render_equals_generate_latest(
    rich_stack: Stack, calls: list[tuple[str, float, Outcome, ErrorReason, int]]
) -> None:
    reg = CollectorRegistry()
    ins = ModelInstruments(rich_stack, reg)
    for model, d, outcome, reason, n in calls:
        rec = ins.get(model)
        if rec is None:
            continue
        rec.observe(d, outcome, reason, queue_wait_seconds=d / 3)
        rec.observe_batch(n)
        rec.in_flight.inc(n)
        rec.observe_tokens(prompt=n, generated=n // 2)
        rec.observe_first_token(d)
        rec.observe_inter_token(d / 100)
        rec.waiting.inc()
    ours = ins.render().decode()
    theirs = generate_latest(reg).decode()
    assert _parsed(ours) == _parsed(theirs)
    assert _families(ours) == _families(theirs)


def test_non_finite_values_and_escaping(stack: Stack) -> None:
    from dataclasses import replace

    odd = replace(stack.models[0], version='v"1\\\n')
    reg = CollectorRegistry()
    ins = ModelInstruments([odd], reg)
    rec = ins.recorder(odd.name, odd.version)
    rec.observe(math.inf, Outcome.OK)
    rec.in_flight.inc(-math.inf)
    assert _parsed(ins.render().decode()) == _parsed(generate_latest(reg).decode())


def test_render_is_in_process_only(stack: Stack) -> None:
    with pytest.raises(MultiprocessError):
        ModelInstruments(stack, None, multiprocess=True).render()
