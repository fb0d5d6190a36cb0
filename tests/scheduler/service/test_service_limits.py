"""Rate limits after authentication, each caller its own bucket; denials audited per event.

Alertmanager never retries a 4xx, so over its limit it gets a 503 with Retry-After;
requests without valid credentials have small buckets of their own and cannot spend
Alertmanager's; a flood of refusals writes a bounded number of audit records.
"""

from __future__ import annotations

import json
from pathlib import Path

from service_testkit import Env, am_alert, auth, notification, settle, start_env

from exporters.catalog.service import API_REQUESTS, WEBHOOK_NOTIFICATIONS
from scheduler.audit import AuditEntry, AuditLog
from scheduler.service.config import ServiceConfig
from scheduler.service.denials import MANY, Denials
from scheduler.service.ratelimit import RateLimit
from scheduler.service.routes import ALERTS_PATH

UNLIMITED = RateLimit(1e6, 1e6)
NEVER_REFILLS = 1e-6  # tokens per second: only the burst counts in a test


def sample(env: Env, name: str, labels: dict[str, str]) -> float:
    return env.service.registry.get_sample_value(name, labels) or 0.0


async def post(env: Env, i: int, headers: dict[str, str]) -> int:
    doc = notification(am_alert(fingerprint=f"{i + 1:x}"))
    r = await env.client.post(ALERTS_PATH, json=doc, headers=headers)
    await r.read()
    assert "Retry-After" in r.headers or r.status not in (429, 503)
    return r.status


async def test_alertmanager_over_its_limit_gets_503_with_retry_after_never_429(
    tmp_path: Path,
) -> None:
    cfg = ServiceConfig(webhook_rate=RateLimit(NEVER_REFILLS, 3))
    env = await start_env(tmp_path, cfg)
    try:
        codes = [await post(env, i, auth("alertmanager")) for i in range(6)]
        assert codes == [200, 200, 200, 503, 503, 503]
        assert sample(env, WEBHOOK_NOTIFICATIONS.series, {"result": "throttled"}) == 3
        # Alertmanager retries a 503: the retry of a throttled notification is acted on
        # once its bucket refills (here: made to refill).
        env.service.endpoints.webhook_callers.limit = UNLIMITED
        assert await post(env, 3, auth("alertmanager")) == 200
        await settle(env)
        assert len(env.runtime.alerts) == 4
    finally:
        await env.client.close()


async def test_other_callers_over_their_limit_get_429(tmp_path: Path) -> None:
    env = await start_env(tmp_path, ServiceConfig(api_rate=RateLimit(NEVER_REFILLS, 2)))
    try:
        codes = []
        for _ in range(3):
            r = await env.client.get("/api/v1/pools", headers=auth("viewer"))
            codes.append(r.status)
        assert codes == [200, 200, 429]
        # Another caller has a bucket of its own.
        r = await env.client.get("/api/v1/pools", headers=auth("operator"))
        assert r.status == 200
    finally:
        await env.client.close()


async def test_an_unauthenticated_flood_cannot_spend_alertmanagers_bucket(tmp_path: Path) -> None:
    """Same source address (a shared host, a NAT, an ingress): before authentication came
    first, the flood emptied the one per-source bucket and Alertmanager got 429s."""
    cfg = ServiceConfig(
        webhook_rate=RateLimit(NEVER_REFILLS, 5), anonymous_rate=RateLimit(NEVER_REFILLS, 5)
    )
    env = await start_env(tmp_path, cfg)
    try:
        flood = [await post(env, 1000 + i, {"Authorization": "Bearer stolen?"}) for i in range(50)]
        assert flood == [401] * 5 + [429] * 45
        assert [await post(env, i, auth("alertmanager")) for i in range(5)] == [200] * 5
        await settle(env)
        assert len(env.runtime.alerts) == 5
    finally:
        await env.client.close()


async def test_a_flood_of_refusals_writes_a_bounded_number_of_records(tmp_path: Path) -> None:
    cfg = ServiceConfig(anonymous_rate=UNLIMITED, denial_window_seconds=3600.0)
    env = await start_env(tmp_path, cfg)
    try:
        for i in range(300):
            assert await post(env, i, {}) == 401
        for _ in range(100):
            r = await env.client.get("/api/v1/audit", headers=auth("viewer"))
            assert r.status == 403
        labels = {"route": ALERTS_PATH, "method": "POST", "code": "401"}
        assert sample(env, API_REQUESTS.series, labels) == 300  # every refusal is counted
        denied = [r for r in env.service.audit.query() if r.result == "denied"]
        assert [(r.operation, r.user) for r in denied] == [
            ("alerts.receive", "anonymous"),
            ("audit.query", "test-viewer"),
        ]
        # The window ends (here: the service stops): one record per group says how many.
        await env.client.close()
        after = [r for r in AuditLog(env.service.audit.path).query() if r.result == "denied"]
        assert [(r.operation, json.loads(r.params).get("count")) for r in after] == [
            ("alerts.receive", None),
            ("audit.query", None),
            ("alerts.receive", 299),
            ("audit.query", 99),
        ]
        assert "and 299 more like it" in after[2].reason
    finally:
        await env.client.close()


def _denied(source: str, user: str = "anonymous", op: str = "alerts.receive") -> AuditEntry:
    return AuditEntry(user, source, ALERTS_PATH, op, "denied", "401 unauthorized")


def test_denials_group_per_window_and_overflow_into_one_group() -> None:
    now = [0.0]
    d = Denials(lambda: now[0], window_seconds=60.0, max_groups=3)
    assert d.admit(_denied("10.0.0.1"), 401) is not None  # first of its group: written now
    assert d.admit(_denied("10.0.0.1"), 401) is None  # counted
    assert d.admit(_denied("10.0.0.1"), 403) is not None  # another status: another event
    assert d.admit(_denied("10.0.0.2"), 401) is not None
    # The table is full: every further source shares one group, written once.
    spill = d.admit(_denied("10.0.0.3"), 401)
    assert spill is not None and spill.source_ip == MANY and spill.user == MANY
    for i in range(4, 100):
        assert d.admit(_denied(f"10.0.0.{i}"), 401) is None
    now[0] = 30.0
    assert d.due() == []  # no window has ended
    now[0] = 61.0
    summaries = {(s.source_ip, s.params["count"]) for s in d.due()}
    assert summaries == {("10.0.0.1", 1), (MANY, 96)}
    # A new window starts with a written record again.
    assert d.admit(_denied("10.0.0.1"), 401) is not None
