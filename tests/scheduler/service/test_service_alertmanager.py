"""The full loop through a real Alertmanager 0.25 with ``authorization`` + ``credentials_file``.

The right token gets the alert acted on; a receiver with a wrong token is
refused (401, which Alertmanager does not retry) and the refusal is audited.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from service_testkit import TOKENS, FakeRuntime, make_stack

from deploy.procs import AlertmanagerProcess, free_port
from scheduler.service.app import SERVICE, build_app
from scheduler.service.routes import ALERTS_PATH


def _receiver(name: str, url: str, cred: Path) -> dict[str, Any]:
    return {
        "name": name,
        "webhook_configs": [
            {
                "url": url,
                "send_resolved": True,
                "http_config": {"authorization": {"type": "Bearer", "credentials_file": str(cred)}},
            }
        ],
    }


async def _until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"not seen within {timeout}s")


async def test_real_alertmanager_right_token_acts_wrong_token_refused(tmp_path: Path) -> None:
    stack = make_stack()
    rt = FakeRuntime(stack)
    app = build_app(stack, rt, audit_path=tmp_path / "audit.db", registry=CollectorRegistry())
    svc = app[SERVICE]
    port = free_port()
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    right, wrong = tmp_path / "right-token", tmp_path / "wrong-token"
    right.write_text(TOKENS["alertmanager"] + "\n")  # a trailing newline, as editors leave it
    wrong.write_text("not-the-token")
    url = f"http://127.0.0.1:{port}{ALERTS_PATH}"
    cfg = {
        "route": {
            "receiver": "scheduler",
            "group_by": ["alertname", "pool"],
            "group_wait": "100ms",
            "group_interval": "1s",
            "repeat_interval": "1h",
            "routes": [{"receiver": "impostor", "matchers": ['who="impostor"']}],
        },
        "receivers": [
            _receiver("scheduler", url, right),
            _receiver("impostor", url, wrong),
        ],
    }
    try:
        with AlertmanagerProcess(cfg, tmp_path / "am") as am:
            now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            alerts = [
                {
                    "labels": {
                        "alertname": "RiskScorerLatencyHigh",
                        "action": "rebalance",
                        "pool": "p0-risk",
                    },
                    "startsAt": now,
                },
                {
                    "labels": {
                        "alertname": "Impostor",
                        "action": "rebalance",
                        "pool": "p0-risk",
                        "who": "impostor",
                    },
                    "startsAt": now,
                },
            ]
            async with aiohttp.ClientSession() as s:
                r = await s.post(am.url + "/api/v2/alerts", json=alerts)
                assert r.status == 200, await r.text()

            await _until(lambda: rt.alerts)
            denied = await _until(
                lambda: [
                    rec
                    for rec in svc.audit.query(operation="alerts.receive")
                    if rec.result == "denied"
                ]
            )
            await asyncio.sleep(1.5)  # one more group interval: nothing else may arrive
            assert len(rt.alerts) == 1
            assert rt.alerts[0]["pool"] == "p0-risk" and rt.alerts[0]["firing"] is True
            assert denied[0].user == "anonymous" and denied[0].source_ip == "127.0.0.1"
            assert "401" in denied[0].reason
            ok = [r for r in svc.audit.query(operation="alerts.receive") if r.result == "ok"]
            assert ok and all(r.user == "alertmanager" for r in ok)
    finally:
        await runner.cleanup()
