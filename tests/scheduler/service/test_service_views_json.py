"""What the API serves of the scheduler's state, byte for byte: pools, reservations, jobs and
queues of a real runtime on a frozen clock (market open, a P0 alert acted on), against the
bytes recorded in ``golden/api_views.json``. A change to a view's fields, their order or
their JSON shows here. After a deliberate change, record them again and review the diff:

    NOVABRAIN_UPDATE_GOLDEN=1 .venv/bin/pytest tests/scheduler/service/test_service_views_json.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from service_testkit import auth, make_stack

from scheduler.runtime import SchedulerRuntime
from scheduler.service.app import build_app
from scheduler.sim.workload import demo_workload

GOLDEN = Path(__file__).parent / "golden" / "api_views.json"
UPDATE = bool(os.environ.get("NOVABRAIN_UPDATE_GOLDEN"))
# Monday 2026-11-30 09:20 in Shanghai: the market-bell reservation's morning window is open.
NOW = 1796001600.0
PATHS = (
    "/api/v1/pools",
    "/api/v1/reservations",
    "/api/v1/jobs",
    "/api/v1/jobs?pool=p0-risk&state=running",
    "/api/v1/jobs?pool=nope",
    "/api/v1/queues",
)


async def test_the_api_serves_the_views_as_recorded(tmp_path: Path) -> None:
    stack = make_stack()
    rt = SchedulerRuntime.from_stack(
        stack, db_path=tmp_path / "scheduler.db", registry=CollectorRegistry(), clock=lambda: NOW
    )
    rt.seed(demo_workload(stack, now=NOW - 3600))
    rt.on_alert(pool="p0-risk", action="rebalance", firing=True, correlation_id="am-1")
    for _ in range(3):
        rt.tick()
    app = build_app(
        stack, rt, audit_path=tmp_path / "audit.db", registry=CollectorRegistry(), clock=lambda: NOW
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    got = {}
    try:
        for path in PATHS:
            r = await client.get(path, headers=auth("viewer"))
            got[path] = f"{r.status} {await r.text()}"
    finally:
        await client.close()
        rt.close()
    if UPDATE:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(got, indent=1, ensure_ascii=False) + "\n")
    assert got == json.loads(GOLDEN.read_text())
    # Not vacuous: the state has what the views carry.
    pools = json.loads(got["/api/v1/pools"].split(" ", 1)[1])
    assert any(p["borrowed"] for p in pools) and any(p["firing"] for p in pools)
    assert json.loads(got["/api/v1/reservations"].split(" ", 1)[1])[0]["open"] is True
