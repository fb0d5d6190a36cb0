"""Fixtures for the policy-core tests; the helpers live in core_testkit (a unique module name,
so they never resolve to another directory's conftest)."""

from __future__ import annotations

import pytest
from core_testkit import World


@pytest.fixture
def world() -> World:
    return World()
