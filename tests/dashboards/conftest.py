"""Shared fixtures: the committed stack, and the same stack on the demo's fast clock."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from deploy.demo import FAST_TIMING
from deploy.stack import Stack, load_stack

ROOT = Path(__file__).resolve().parents[2]
# The fake Grafana lives next to these tests (no package: test dirs have no __init__).
sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def stack() -> Stack:
    return load_stack(ROOT / "deploy/stack.yaml")


@pytest.fixture(scope="session", params=["production", "fast"])
def any_stack(request: pytest.FixtureRequest, stack: Stack) -> Stack:
    """The committed stack and its demo timing: both must generate valid, tested rules."""
    return stack if request.param == "production" else stack.with_timing(**FAST_TIMING)
