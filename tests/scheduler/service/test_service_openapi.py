"""schemathesis against the served OpenAPI spec: no 5xx, responses as documented.

The app runs on loopback in a thread of its own (schemathesis calls it with a
synchronous client); the runtime is the recording fake, so what is tested is
the HTTP rim: validation, RBAC, error mapping and the audit trail.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry
from schemathesis import checks
from service_testkit import TOKENS, FakeRuntime, make_stack

from deploy.procs import free_port
from scheduler.audit import verify
from scheduler.service.app import SERVICE, Service, ServiceConfig, build_app
from scheduler.service.ratelimit import RateLimit
from scheduler.service.routes import openapi

UNLIMITED = RateLimit(1e6, 1e6)

schema = schemathesis.openapi.from_dict(openapi())


class Server:
    def __init__(self, tmp: Path, runtime: Any = None) -> None:
        self.loop = asyncio.new_event_loop()
        stack = make_stack()
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = build_app(
            stack,
            runtime or FakeRuntime(stack),
            audit_path=tmp / "audit.db",
            registry=CollectorRegistry(),
            config=ServiceConfig(
                webhook_rate=UNLIMITED, api_rate=UNLIMITED, anonymous_rate=UNLIMITED
            ),
        )
        self.runner = web.AppRunner(self.app)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def service(self) -> Service:
        return self.app[SERVICE]

    def __enter__(self) -> Server:
        self.thread.start()

        async def start() -> None:
            await self.runner.setup()
            await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=30)
        return self

    def __exit__(self, *exc: Any) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with Server(tmp_path_factory.mktemp("openapi")) as s:
        yield s
    # Everything schemathesis sent, accepted or refused, is in an intact chain.
    res = verify(s.service.audit.path)
    assert res.ok and res.checked > 100


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@schema.parametrize()
@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_conforms_to_its_spec(case: Any, server: Server) -> None:
    role = "alertmanager" if case.operation.path == "/api/v1/alerts" else "admin"
    case.call_and_validate(
        base_url=server.url,
        headers={"Authorization": f"Bearer {TOKENS[role]}"},
        checks=CHECKS,
    )


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from scheduler.runtime import SchedulerRuntime
    from scheduler.sim.workload import demo_workload

    tmp = tmp_path_factory.mktemp("openapi-real")
    stack = make_stack()
    rt = SchedulerRuntime.from_stack(
        stack, db_path=tmp / "scheduler.db", registry=CollectorRegistry()
    )
    rt.seed(demo_workload(stack))
    try:
        with Server(tmp, rt) as s:
            yield s
    finally:
        rt.close()


@schemathesis.check
def no_valid_request_refused(ctx: Any, response: Any, case: Any) -> bool | None:
    """A request the spec allows is never answered 400 (or 422): the spec says what the
    server accepts."""
    if case.meta is not None and case.meta.generation.mode.is_positive:
        assert response.status_code not in (400, 422), (
            f"{case.operation.label}: a request the spec allows was refused: {response.text[:300]}"
        )
    return None


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_request_the_spec_allows_is_taken(case: Any, real: Server) -> None:
    role = "alertmanager" if case.operation.path == "/api/v1/alerts" else "admin"
    case.call_and_validate(
        base_url=real.url,
        headers={"Authorization": f"Bearer {TOKENS[role]}"},
        checks=[*CHECKS, no_valid_request_refused],
    )


@pytest.mark.parametrize(
    "accept",
    [
        None,
        "text/plain;version=0.0.4",
        "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
    ],
)
def test_metrics_answers_every_format_the_spec_names(accept: str | None, server: Server) -> None:
    """/metrics negotiates its format (Prometheus asks for OpenMetrics first): whichever it
    answers, the spec names that content type."""
    case = schema["/metrics"]["GET"].Case(headers={"Accept": accept} if accept else {})
    response = case.call_and_validate(base_url=server.url, checks=CHECKS)
    expected = (
        "application/openmetrics-text" if accept and "openmetrics" in accept else "text/plain"
    )
    (content_type,) = response.headers["content-type"]
    assert content_type.split(";")[0] == expected
