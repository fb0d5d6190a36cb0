"""Fixtures for the GPU exporter tests."""

from __future__ import annotations

import pytest
from gpu_testlib import STACK_FILE, FakeClock

from deploy.stack import Stack, load_stack


@pytest.fixture(scope="session")
def stack() -> Stack:
    return load_stack(STACK_FILE)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
