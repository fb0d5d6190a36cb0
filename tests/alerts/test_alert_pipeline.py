"""The generated rules and routing, run by the real Prometheus and Alertmanager on the demo's clock.

A small instrumented endpoint serves the P0 model's request-duration histogram.
Slow requests make the generated P0 latency alert fire in Prometheus;
Alertmanager, configured by ``alertmanager_config``, must deliver it to the
scheduler's webhook with the bearer token read from the credentials file, and
continue to the team's on-call receiver; fast requests again must resolve it
and both receivers must get the resolution (the scheduler's return timer
starts on it).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)

from alerts.alertmanager import alertmanager_config
from alerts.generate import templates
from alerts.prometheus_config import MODEL_SERVER_JOB, prometheus_config
from alerts.rules import latency_alert_name, rule_files
from deploy.demo import FAST_TIMING
from deploy.procs import AlertmanagerProcess, PrometheusProcess, free_port
from deploy.stack import Stack, WebhookChannel
from exporters.catalog.model import MODEL_LABELS, MODEL_REQUEST_DURATION, MODEL_REQUESTS

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("prometheus-alertmanager") is None,
    reason="prometheus / alertmanager not installed",
)
TOKEN = "pipeline-test-token"
DEADLINE = 90.0


class Sink:
    """Records webhook deliveries with the Authorization header they carried."""

    def __init__(self) -> None:
        self.received: list[tuple[str, str, dict[str, Any]]] = []
        self.app = web.Application()
        self.app.router.add_post("/{path:.*}", self._post)

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.received.append((request.path, request.headers.get("Authorization", ""), body))
        return web.Response(status=200)

    def alerts(self, path: str, status: str) -> list[tuple[str, dict[str, Any]]]:
        return [
            (auth, a)
            for p, auth, body in self.received
            if p == path
            for a in body["alerts"]
            if a["status"] == status
        ]


@contextlib.asynccontextmanager
async def _serve(app: web.Application, port: int) -> AsyncIterator[None]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def _until(what: str, check: Any) -> Any:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what} not seen within {DEADLINE}s")


def _named(sink: Sink, path: str, status: str, name: str) -> list[tuple[str, dict[str, Any]]]:
    """Deliveries of alert ``name`` (the SLO burn alerts also reach on-call meanwhile)."""
    return [(auth, a) for auth, a in sink.alerts(path, status) if a["labels"]["alertname"] == name]


async def test_p0_breach_reaches_the_scheduler_and_oncall(stack: Stack, tmp_path: Path) -> None:
    model = next(m for m in stack.models if m.action)
    thr = model.slo.latency_threshold_seconds
    sink_port, metrics_port = free_port(), free_port()
    sink_url = f"http://127.0.0.1:{sink_port}"
    cred = tmp_path / "alertmanager-token"
    cred.write_text(TOKEN)
    fast = stack.with_timing(**FAST_TIMING)
    fast = dataclasses.replace(
        fast,
        alerting=dataclasses.replace(
            fast.alerting,
            scheduler_webhook_url=f"{sink_url}/scheduler",
            webhook_credentials_file=str(cred),
            oncall=tuple(
                dataclasses.replace(r, channels=(WebhookChannel(f"{sink_url}/oncall/{r.name}"),))
                for r in fast.alerting.oncall
            ),
        ),
    )
    oncall = next(r for r in fast.alerting.oncall if stack.pool(model.pool).team in r.teams)

    registry = CollectorRegistry()
    hist = Histogram(
        MODEL_REQUEST_DURATION.name,
        MODEL_REQUEST_DURATION.help,
        MODEL_LABELS,
        buckets=(thr / 2, thr, 2 * thr, 4 * thr),
        registry=registry,
    )
    reqs = Counter(
        MODEL_REQUESTS.name, MODEL_REQUESTS.help, (*MODEL_LABELS, "outcome"), registry=registry
    )
    latency = {"seconds": 3 * thr}

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def traffic(stop: asyncio.Event) -> None:
        while not stop.is_set():
            for _ in range(20):
                hist.labels(model.name, model.version, model.pool).observe(latency["seconds"])
                reqs.labels(model.name, model.version, model.pool, "ok").inc()
            await asyncio.sleep(0.1)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    sink = Sink()
    stop = asyncio.Event()
    rules = {name: yaml.safe_dump(doc, sort_keys=False) for name, doc in rule_files(fast).items()}
    am = AlertmanagerProcess(alertmanager_config(fast), tmp_path / "am", files=templates(fast))
    async with _serve(app, metrics_port), _serve(sink.app, sink_port):
        task = asyncio.create_task(traffic(stop))
        await asyncio.to_thread(am.start)
        prom = PrometheusProcess(
            prometheus_config(
                fast,
                targets={MODEL_SERVER_JOB: [f"127.0.0.1:{metrics_port}"]},
                rule_files=list(rules),
                alertmanager_url=am.url,
            ),
            tmp_path / "prom",
            rule_files=rules,
        )
        try:
            await asyncio.to_thread(prom.start)
            name = latency_alert_name(model)
            fired = await _until(
                "firing alert at the scheduler webhook",
                lambda: _named(sink, "/scheduler", "firing", name),
            )
            auth, alert = fired[0]
            assert auth == f"Bearer {TOKEN}"
            labels = alert["labels"]
            assert labels["action"] == model.action
            assert (labels["pool"], labels["model"]) == (model.pool, model.name)
            assert labels["team"] == stack.pool(model.pool).team
            assert labels["severity"] == "critical"
            assert alert["annotations"]["runbook_url"].startswith(stack.alerting.runbook_base_url)
            # continue: true - the same alert reaches the team's on-call too.
            await _until(
                "firing alert at on-call",
                lambda: _named(sink, f"/oncall/{oncall.name}", "firing", name),
            )

            latency["seconds"] = thr / 4
            await _until(
                "resolved at the scheduler", lambda: _named(sink, "/scheduler", "resolved", name)
            )
            await _until(
                "resolved at on-call",
                lambda: _named(sink, f"/oncall/{oncall.name}", "resolved", name),
            )
            # No other receiver was paged for a P0 model alert.
            paths = {p for p, _, _ in sink.received}
            assert paths == {"/scheduler", f"/oncall/{oncall.name}"}
        finally:
            stop.set()
            await task
            await asyncio.to_thread(prom.stop)
            await asyncio.to_thread(am.stop)
