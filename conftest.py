"""Suite-wide settings and fixtures.

Hypothesis explores new random examples on developers' machines, where a new
counterexample is a finding; in CI (``CI`` set, as ``.ci/run`` runs) it uses a
fixed derandomized sequence, so a red CI always reproduces.

``stack`` is the committed stack file (test modules that need a variant define
their own); ``any_stack`` is it and the same stack on the demo's fast clock.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

from deploy.demo import FAST_TIMING
from deploy.stack import Stack, load_stack

ROOT = Path(__file__).resolve().parent

settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def stack() -> Stack:
    return load_stack(ROOT / "deploy/stack.yaml")


@pytest.fixture(scope="session", params=["production", "fast"])
def any_stack(request: pytest.FixtureRequest, stack: Stack) -> Stack:
    """The committed stack and its demo timing: both must generate valid, tested rules."""
    return stack if request.param == "production" else stack.with_timing(**FAST_TIMING)
