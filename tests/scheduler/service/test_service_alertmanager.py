"""The full loop through a real Alertmanager 0.25 with ``authorization`` + ``credentials_file``.

The right token gets the alert acted on; a receiver with a wrong token is
refused (401, which Alertmanager does not retry) and the refusal is audited.
More groups than the webhook's limit flush at once: Alertmanager is answered
503 for the excess, retries, and every group's alert is acted on exactly once.
A parallel flood of unauthenticated requests from the same address does not
cost Alertmanager a single refused attempt.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry
from service_testkit import TOKENS, FakeRuntime, make_stack

from deploy.procs import AlertmanagerProcess, free_port
from exporters.catalog.service import WEBHOOK_NOTIFICATIONS
from scheduler.service.app import SERVICE, Service, ServiceConfig, build_app
from scheduler.service.ratelimit import RateLimit
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


class _Scheduler:
    """The service on a real port (Alertmanager must reach it), over the recording runtime."""

    def __init__(self, tmp: Path, config: ServiceConfig | None = None) -> None:
        self.stack = make_stack()
        self.rt = FakeRuntime(self.stack)
        self.app = build_app(
            self.stack,
            self.rt,
            audit_path=tmp / "audit.db",
            registry=CollectorRegistry(),
            config=config,
        )
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}{ALERTS_PATH}"
        self.runner = web.AppRunner(self.app)
        cred = tmp / "token"
        cred.write_text(TOKENS["alertmanager"])
        self.am_config = {
            "route": {
                "receiver": "scheduler",
                "group_by": ["alertname", "pool", "group"],
                "group_wait": "100ms",
                "group_interval": "1s",
                "repeat_interval": "1h",
            },
            "receivers": [_receiver("scheduler", self.url, cred)],
        }

    @property
    def svc(self) -> Service:
        return self.app[SERVICE]

    async def __aenter__(self) -> _Scheduler:
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()

    def count(self, result: str) -> float:
        labels = {"result": result}
        return self.svc.registry.get_sample_value(WEBHOOK_NOTIFICATIONS.series, labels) or 0.0


def _p0_alert(group: str, now: str) -> dict[str, Any]:
    labels = {"alertname": "RiskScorerLatencyHigh", "action": "rebalance", "pool": "p0-risk"}
    return {"labels": {**labels, "group": group}, "startsAt": now}


def _am_failed_requests(am: AlertmanagerProcess) -> float:
    """Alertmanager's own count of webhook attempts that failed (each retry counts)."""
    import urllib.request

    with urllib.request.urlopen(am.url + "/metrics", timeout=10) as r:  # noqa: S310
        text = r.read().decode()
    m = re.search(
        r'^alertmanager_notification_requests_failed_total\{integration="webhook"\} (\S+)$',
        text,
        re.M,
    )
    return float(m[1]) if m else 0.0


async def test_more_groups_than_the_limit_are_all_acted_on_exactly_once(tmp_path: Path) -> None:
    groups = 30
    # Far below one flush of 30 groups: most are answered 503 and retried.
    cfg = ServiceConfig(webhook_rate=RateLimit(rate=10.0, burst=5.0))
    async with _Scheduler(tmp_path, cfg) as s:
        with AlertmanagerProcess(s.am_config, tmp_path / "am") as am:
            now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
            async with aiohttp.ClientSession() as http:
                alerts = [_p0_alert(f"g{i}", now) for i in range(groups)]
                r = await http.post(am.url + "/api/v2/alerts", json=alerts)
                assert r.status == 200, await r.text()
            await _until(lambda: len(s.rt.alerts) >= groups, timeout=60)
            await asyncio.sleep(1.5)  # a group interval more: no second action may follow
            cids = [a["cid"] for a in s.rt.alerts]
            assert len(cids) == groups and len(set(cids)) == groups
            assert s.count("throttled") > 0  # the limit was really hit, and answered 503
            assert s.count("rate_limited") == 0  # never a 429, which Alertmanager drops
            assert _am_failed_requests(am) == s.count("throttled")


FLOOD = textwrap.dedent(
    """
    import http.client, sys, threading, time
    port, seconds = int(sys.argv[1]), float(sys.argv[2])
    sent = [0]

    def hammer():
        end = time.monotonic() + seconds
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        while time.monotonic() < end:
            try:
                conn.request("POST", "/api/v1/alerts", body=b'{"version":"4"}',
                             headers={"Authorization": "Bearer guessed-token"})
                conn.getresponse().read()
                sent[0] += 1
            except OSError:
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    print("flooding", flush=True)
    for t in threads:
        t.join()
    print(sent[0], flush=True)
    """
)


async def test_an_unauthenticated_flood_does_not_delay_a_p0_alert(tmp_path: Path) -> None:
    """Before authentication came first, such a flood from Alertmanager's address held a
    P0 alert out for 40 s (each 429 was a notification Alertmanager dropped)."""
    async with _Scheduler(tmp_path) as s:
        with AlertmanagerProcess(s.am_config, tmp_path / "am") as am:
            flood = subprocess.Popen(
                [sys.executable, "-c", FLOOD, str(s.port), "8"],
                stdout=subprocess.PIPE,
                text=True,
            )
            try:
                assert flood.stdout is not None
                assert flood.stdout.readline().strip() == "flooding"
                await asyncio.sleep(1.0)  # the flood is on before the alert fires
                now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
                async with aiohttp.ClientSession() as http:
                    r = await http.post(am.url + "/api/v2/alerts", json=[_p0_alert("p0", now)])
                    assert r.status == 200
                await _until(lambda: s.rt.alerts, timeout=30)
                out, _ = await asyncio.get_running_loop().run_in_executor(None, flood.communicate)
            finally:
                if flood.poll() is None:
                    flood.kill()
                    flood.wait()
            sent = int(out.split()[-1])
            refused = s.count("unauthorized") + s.count("rate_limited")
            assert sent > 300 and refused >= sent, (sent, refused)  # the flood was real
            assert len(s.rt.alerts) == 1
            # Not one of Alertmanager's attempts was refused: no retry was needed.
            assert _am_failed_requests(am) == 0
            assert s.count("accepted") == 1 and s.count("throttled") == 0
