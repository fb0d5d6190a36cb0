"""Fixtures for the scheduler service tests (helpers live in service_testkit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from service_testkit import Env, start_env

from scheduler.service.app import ServiceConfig
from scheduler.service.ratelimit import RateLimit

UNLIMITED = RateLimit(1e6, 1e6)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    # The rate limit has its own test; here it would only get in the way of bursts.
    e = await start_env(
        tmp_path,
        ServiceConfig(webhook_rate=UNLIMITED, api_rate=UNLIMITED, anonymous_rate=UNLIMITED),
    )
    try:
        yield e
    finally:
        await e.client.close()
