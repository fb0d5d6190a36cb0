"""Editing the audit database under a running scheduler pages: the background verifier finds
it, ``AUDIT_CHAIN_VERIFIED`` drops to 0, and the generated alert fires in a real
Prometheus loaded with the generated rule file. The head it published before verifies the
untouched log from outside, and no longer verifies the edited one."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from pathlib import Path

import pytest
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry
from service_testkit import FakeRuntime, auth, make_stack
from tamper_kit import forge

from alerts.rules import rule_files
from alerts.rules.audit import AUDIT_FILE
from deploy.procs import PrometheusProcess, free_port
from exporters.catalog.service import AUDIT_CHAIN_VERIFIED, AUDIT_HEAD_SEQ
from scheduler.audit import ChainPoint, verify
from scheduler.service.app import SERVICE, build_app
from scheduler.service.config import ServiceConfig

pytestmark = pytest.mark.e2e
ALERT = "NovabrainAuditChainTampered"


async def _until(check, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.2)
    raise AssertionError(f"not seen within {timeout}s")


async def test_tampering_with_a_running_schedulers_log_pages(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="novabrain.scheduler.audit")
    stack = make_stack().with_timing(
        scrape_interval_seconds=0.5,
        latency_alert_for_seconds=1.0,
        group_wait_seconds=0.1,
        group_interval_seconds=1.0,
        return_stabilization_seconds=0.0,
    )
    cfg = ServiceConfig(audit_verify_interval_seconds=0.2, audit_publish_interval_seconds=0.2)
    app = build_app(
        stack, FakeRuntime(stack), audit_path=tmp_path / "audit.db",
        registry=CollectorRegistry(), config=cfg,
    )  # fmt: skip
    port = free_port()
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    prom_cfg = {
        "global": {"scrape_interval": "500ms", "evaluation_interval": "500ms"},
        "scrape_configs": [
            {
                "job_name": "novabrain-scheduler",
                "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
            }
        ],
    }
    rules = {AUDIT_FILE: yaml.safe_dump(rule_files(stack)[AUDIT_FILE])}
    try:
        with PrometheusProcess(prom_cfg, tmp_path / "prom", rule_files=rules) as prom:
            import aiohttp

            async with aiohttp.ClientSession() as http:
                for _ in range(6):
                    r = await http.get(f"http://127.0.0.1:{port}/api/v1/pools",
                                       headers=auth("viewer"))  # fmt: skip
                    assert r.status == 200
            await _until(lambda: prom.aquery(f"{AUDIT_HEAD_SEQ.series} >= 6"))
            assert await prom.aquery(f"{AUDIT_CHAIN_VERIFIED.series} == 1")
            # The head as published, in the log line an off-box collector keeps.
            lines = [m for m in caplog.messages if m.startswith("audit head ")]
            published = ChainPoint.parse(lines[-1].removeprefix("audit head "))
            assert published.seq >= 6
            log_path = app[SERVICE].audit.path
            assert verify(log_path, expected_head=published).ok

            forge(log_path, 2)  # an old record edited, its hash recomputed

            await _until(lambda: prom.aquery(f"{AUDIT_CHAIN_VERIFIED.series} == 0"))
            firing = await _until(lambda: _firing(prom, ALERT), timeout=30)
            assert firing[0]["labels"]["severity"] == "critical"
            assert any(re.match(r"audit log TAMPERED at record 2: ", m) for m in caplog.messages), (
                caplog.messages
            )
            assert not verify(log_path, expected_head=published).ok
    finally:
        await runner.cleanup()


async def _firing(prom: PrometheusProcess, name: str) -> list[dict[str, object]]:
    return [a for a in await prom.aalerts() if a["labels"]["alertname"] == name
            and a["state"] == "firing"]  # fmt: skip
