"""A stack richer than the committed one (``stack``, suite-wide): a second version and an LLM model."""

from __future__ import annotations

from dataclasses import replace

import pytest

from deploy.stack import Model, Slo, Stack


@pytest.fixture(scope="session")
def rich_stack(stack: Stack) -> Stack:
    """risk-scorer v2 next to v3 (v3 listed last: the default version), and an LLM on p2-batch."""
    v3 = next(m for m in stack.models if m.name == "risk-scorer")
    llm = Model(
        name="chat-llm",
        version="v1",
        pool="p2-batch",
        slo=Slo(0.5, 0.95, 0.95, 0.99),
        action=None,
        min_qps=0.0,
        llm=True,
    )
    return replace(stack, models=(replace(v3, version="v2"), v3, llm))
