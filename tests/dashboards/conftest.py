"""Shared fixtures: the committed stack, and the same stack on the demo's fast clock."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.demo import FAST_TIMING
from deploy.stack import Stack, load_stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def stack() -> Stack:
    return load_stack(ROOT / "deploy/stack.yaml")


@pytest.fixture(scope="session", params=["production", "fast"])
def any_stack(request: pytest.FixtureRequest, stack: Stack) -> Stack:
    """The committed stack and its demo timing: both must generate valid, tested rules."""
    return stack if request.param == "production" else stack.with_timing(**FAST_TIMING)
