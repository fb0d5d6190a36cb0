"""Fixtures for the GPU exporter tests."""

from __future__ import annotations

import pytest
from gpu_testlib import FakeClock


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
