"""RBAC: every endpoint declares its permission; the whole matrix endpoints x roles is walked."""

from __future__ import annotations

from typing import Any

import pytest
from service_testkit import TOKENS, Env, auth, notification, settle

from exporters.catalog.service import API_REQUESTS
from scheduler.service.auth import ROLE_PERMISSIONS, Authenticator, Permission
from scheduler.service.reports import OPERATIONS
from scheduler.service.routes import ROUTES, Route

READERS = {"viewer", "operator", "admin"}
OPERATORS = {"operator", "admin"}
# Written out by hand, not derived from the table: changing who may do what must
# change this test too.
EXPECTED: dict[str, set[str] | None] = {
    "healthz": None,
    "metrics": None,
    "openapi": None,
    "alerts.receive": {"alertmanager"},
    "pools.list": READERS,
    "pools.rebalance": OPERATORS,
    "pools.scale": OPERATORS,
    "jobs.list": READERS,
    "jobs.submit": OPERATORS,
    "jobs.cancel": OPERATORS,
    "jobs.checkpoint": OPERATORS,
    "jobs.preemption_ack": OPERATORS,
    "queues.list": READERS,
    "decisions.list": READERS,
    "reservations.list": READERS,
    "policy.get": READERS,
    "policy.update": {"admin"},
    "audit.query": {"admin"},
    "audit.export": {"admin"},
    "audit.record": OPERATORS,
    "audit.verify": {"admin"},
}

# A valid request for each endpoint, so that an allowed role gets a 2xx.
EXAMPLES: dict[str, dict[str, Any]] = {
    "alerts.receive": {"json": notification()},
    "pools.rebalance": {"path": {"pool": "p0-risk"}, "json": {"gpus": 8}},
    "pools.scale": {"path": {"pool": "p2-batch"}, "json": {"delta_nodes": 1}},
    "jobs.submit": {"json": {"id": "job-new", "pool": "p2-batch", "gpus": 2}},
    "jobs.cancel": {"path": {"job_id": "job-1"}},
    "jobs.checkpoint": {"path": {"job_id": "job-1"}, "json": {}},
    "jobs.preemption_ack": {"path": {"job_id": "job-1"}},
    "policy.update": {"json": {"dry_run": True}},
    "decisions.list": {"query": {"limit": "5"}},
    "audit.export": {"query": {"format": "csv"}},
    "audit.record": {
        "json": {
            "operation": "silence.expire",
            "object": "0c2f5a1e-7b3d-4e8f-9a6b-1d2c3e4f5a6b",
            "result": "requested",
            "params": {"author": "li.wei"},
        }
    },
}


def test_every_route_is_in_the_expected_matrix() -> None:
    assert {r.name for r in ROUTES} == set(EXPECTED)
    assert len({(r.method, r.path) for r in ROUTES}) == len(ROUTES)


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
def test_permission_table_matches_the_matrix(route: Route) -> None:
    expected = EXPECTED[route.name]
    if route.permission is None:
        assert expected is None
        return
    assert expected is not None
    holders = {role for role, perms in ROLE_PERMISSIONS.items() if route.permission in perms}
    assert holders == expected


async def _call(env: Env, route: Route, headers: dict[str, str]) -> int:
    ex = EXAMPLES.get(route.name, {})
    path = route.path
    for k, v in ex.get("path", {}).items():
        path = path.replace("{" + k + "}", v)
    r = await env.client.request(
        route.method, path, headers=headers, json=ex.get("json"), params=ex.get("query")
    )
    await r.read()
    return r.status


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: r.name)
async def test_matrix_endpoint_by_role(env: Env, route: Route) -> None:
    from scheduler.core.model import JobRequest

    env.runtime.jobs_by_id["job-1"] = JobRequest("job-1", "p2-batch", 1)
    expected = EXPECTED[route.name]
    for role in (None, *TOKENS):
        headers = auth(role) if role else {}
        status = await _call(env, route, headers)
        if expected is None:
            assert status == 200, (route.name, role, status)
        elif role is None:
            assert status == 401, (route.name, role, status)
        elif role in expected:
            assert status == route.status, (route.name, role, status)
        else:
            assert status == 403, (route.name, role, status)
    if route.audited:
        # A reported action is recorded as that action (denied attempts as the request).
        ops = {route.name, *(OPERATIONS if route.name == "audit.record" else ())}
        recs = [r for r in env.service.audit.query() if r.operation in ops]
        # Every attempt, allowed or not, left a record with who tried.
        assert len(recs) == 1 + len(TOKENS)
        denied = {r.user for r in recs if r.result == "denied"}
        assert "anonymous" in denied
        assert all(r.source_ip == "127.0.0.1" for r in recs)
    await settle(env)


async def test_denied_request_does_not_reach_the_runtime(env: Env) -> None:
    r = await env.client.post(
        "/api/v1/pools/p0-risk/rebalance", json={"gpus": 8}, headers=auth("viewer")
    )
    assert r.status == 403
    assert "lacks permission pools:operate" in (await r.json())["reason"]
    assert env.runtime.calls == []
    labels = {"route": "/api/v1/pools/{pool}/rebalance", "method": "POST", "code": "403"}
    assert env.service.registry.get_sample_value(API_REQUESTS.series, labels) == 1


def test_authorization_header_parsing() -> None:
    """Bearer in any case and spacing; malformed headers are refused, never an exception."""
    from service_testkit import make_stack

    a = Authenticator(make_stack().users)
    assert a.authenticate(f"Bearer {TOKENS['admin']}") is not None
    assert a.authenticate(f"bearer   {TOKENS['admin']}  ") is not None
    for bad in ("", "Bearer", "Bearer ", "Token x", "Basic !!!", "Basic " + "eA==", None):
        assert a.authenticate(bad) is None
    p = a.authenticate(f"Bearer {TOKENS['operator']}")
    assert p is not None and p.may(Permission.JOBS_WRITE) and not p.may(Permission.AUDIT_READ)


async def test_unmatched_requests_are_counted_under_one_label(env: Env) -> None:
    for path in ("/nope", "/api/v1/../../etc/passwd", "/api/v1/pools/x/y/z"):
        r = await env.client.get(path)
        assert r.status == 404
    r = await env.client.request("PROPFIND", "/api/v1/pools")
    assert r.status == 405
    reg = env.service.registry
    labels = {"route": "unmatched", "method": "GET", "code": "404"}
    assert reg.get_sample_value(API_REQUESTS.series, labels) == 3
    labels = {"route": "unmatched", "method": "OTHER", "code": "405"}
    assert reg.get_sample_value(API_REQUESTS.series, labels) == 1


async def test_a_bug_is_a_logged_audited_500(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    env.runtime.pools = broken  # type: ignore[method-assign,assignment]
    r = await env.client.get("/api/v1/pools", headers=auth("viewer"))
    assert r.status == 500 and (await r.json())["reason"] == "RuntimeError"
    assert "unhandled error in pools.list" in caplog.text
    rec = env.service.audit.query(operation="pools.list")[-1]
    assert rec.result == "error" and rec.user == "test-viewer"
