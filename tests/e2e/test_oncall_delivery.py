"""On-call end to end with real parts: Prometheus evaluates the generated rules, the real
Alertmanager 0.25 with the generated config and templates sends a real email (AUTH with the
password read from a file) to a real SMTP server (aiosmtpd) and a WeCom message through its
``api_url`` to a loopback server speaking WeCom's token and message API, then the resolved
mail. Every link in the mail is followed: the runbook file, the dashboard panel (against the
generated dashboard JSON: Grafana cannot run here), the prefilled silence (created in
Alertmanager, it silences exactly that alert) and Prometheus' graph link (its query answers).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import shutil
import time
import urllib.request
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest

from alerts.alertmanager import SCHEDULER_RECEIVER, alertmanager_config
from alerts.generate import templates
from alerts.prometheus_config import MODEL_SERVER_JOB, prometheus_config
from alerts.receivers import read_secret_file
from alerts.rules import latency_alert_name, rule_files
from alerts.silence import parse_matchers
from deploy.demo import FAST_TIMING
from deploy.oncall import MailServer, WeComServer
from deploy.procs import AlertmanagerProcess, PrometheusProcess, free_port
from deploy.stack import EmailChannel, Stack, WebhookChannel, WechatChannel
from exporters.catalog.model import MODEL_LABELS, MODEL_REQUEST_DURATION

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        shutil.which("prometheus") is None or shutil.which("prometheus-alertmanager") is None,
        reason="prometheus / alertmanager not installed",
    ),
]
DEADLINE = 90.0
CORP, SECRET = "ww-test-corp", "wecom-test-secret"


class Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: dict[str, str] = {}
        self._href: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href")

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self.links[data.strip()] = self._href
            self._href = None


@contextlib.asynccontextmanager
async def _serve(app: web.Application, port: int) -> AsyncIterator[None]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield
    finally:
        await runner.cleanup()


async def _until(what: str, check: Any, seen: Any = None) -> Any:
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        await asyncio.sleep(0.5)
    raise AssertionError(f"{what} not seen within {DEADLINE}s; saw {seen() if seen else '-'}")


def _panel_title(uid: str, panel: int) -> str:
    for path in (ROOT / "deploy/generated/dashboards").glob("*.json"):
        dash = json.loads(path.read_text())
        if dash["uid"] == uid:
            return next(str(p["title"]) for p in dash["panels"] if p["id"] == panel)
    raise AssertionError(f"no dashboard {uid}")


def _check_dashboard(url: str, stack: Stack, started: float) -> None:
    parts = urlsplit(url)
    assert url.startswith(stack.grafana.url + "/d/")
    q = {k: v[0] for k, v in parse_qs(parts.query).items()}
    uid = parts.path.removeprefix("/d/")
    assert _panel_title(uid, int(q["viewPanel"]))
    assert int(q["from"]) <= started * 1000 - 3_600_000 + 60_000  # an hour before it started
    return None


def _check_runbook(url: str, stack: Stack, alertname: str) -> None:
    rel = url.removeprefix(stack.alerting.runbook_base_url.rstrip("/") + "/")
    assert (ROOT / "docs/runbooks" / rel).read_text().splitlines()[1] == f"# {alertname}"


async def test_email_and_wecom_reach_oncall_with_working_links(
    stack: Stack, tmp_path: Path
) -> None:
    model = next(m for m in stack.models if m.action)
    thr = model.slo.latency_threshold_seconds
    team = stack.pool(model.pool).team
    # Alertmanager 0.25 sends auth_password_file's content verbatim: no trailing newline.
    (tmp_path / "smtp-password").write_text("s3cret-smtp")
    (tmp_path / "wecom-secret").write_text(SECRET + "\n")
    (tmp_path / "am-token").write_text("am-token")
    mail = MailServer("novabrain-alerts", "s3cret-smtp")
    wecom = WeComServer(CORP, SECRET)
    ports = {k: free_port() for k in ("wecom", "metrics")}
    smtp = f"127.0.0.1:{mail.port}"

    def email_to(addr: str) -> EmailChannel:
        return EmailChannel(
            to=(addr,),
            sender="novabrain-alerts@bank.example",
            smarthost=smtp,
            require_tls=False,
            auth_username="novabrain-alerts",
            auth_password_file=str(tmp_path / "smtp-password"),
        )

    fast = stack.with_timing(**FAST_TIMING)
    wechat = WechatChannel(
        corp_id=CORP,
        agent_id="1000002",
        api_secret_file=str(tmp_path / "wecom-secret"),
        to_party="2",
        api_url=f"http://127.0.0.1:{ports['wecom']}/cgi-bin/",
    )
    oncall = tuple(
        dataclasses.replace(
            r,
            channels=(email_to(f"{r.name}@bank.example"), wechat)
            if team in r.teams
            else (email_to(f"{r.name}@bank.example"),),
        )
        for r in fast.alerting.oncall
    )
    sink: list[dict[str, Any]] = []
    fast = dataclasses.replace(
        fast,
        alerting=dataclasses.replace(
            fast.alerting,
            oncall=oncall,
            scheduler_webhook_url=f"http://127.0.0.1:{ports['metrics']}/scheduler",
            webhook_credentials_file=str(tmp_path / "am-token"),
        ),
    )
    risk = next(r for r in oncall if team in r.teams)
    assert risk.language == "zh"
    assert any(isinstance(c, WebhookChannel) for r in stack.alerting.oncall for c in r.channels)

    registry = CollectorRegistry()
    hist = Histogram(
        MODEL_REQUEST_DURATION.name,
        MODEL_REQUEST_DURATION.help,
        MODEL_LABELS,
        buckets=(thr / 2, thr, 2 * thr, 4 * thr),
        registry=registry,
    )
    latency = {"seconds": 3 * thr}

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def scheduler_hook(request: web.Request) -> web.Response:
        sink.append(await request.json())
        return web.Response(status=200)

    async def traffic(stop: asyncio.Event) -> None:
        while not stop.is_set():
            for _ in range(20):
                hist.labels(model.name, model.version, model.pool).observe(latency["seconds"])
            await asyncio.sleep(0.1)

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_post("/scheduler", scheduler_hook)
    stop = asyncio.Event()
    rules = {n: yaml.safe_dump(d, sort_keys=False) for n, d in rule_files(fast).items()}
    config = alertmanager_config(fast, read_secret=read_secret_file)
    am = AlertmanagerProcess(config, tmp_path / "am", files=templates(fast))
    mail.start()
    name = latency_alert_name(model)
    async with _serve(app, ports["metrics"]), _serve(wecom.app, ports["wecom"]):
        task = asyncio.create_task(traffic(stop))
        await asyncio.to_thread(am.start)
        prom = PrometheusProcess(
            prometheus_config(
                fast,
                targets={MODEL_SERVER_JOB: [f"127.0.0.1:{ports['metrics']}"]},
                rule_files=list(rules),
                alertmanager_url=am.url,
            ),
            tmp_path / "prom",
            rule_files=rules,
        )
        try:
            await asyncio.to_thread(prom.start)
            firing = await _until(
                "the firing mail",
                lambda: [m for m in mail.mails if name in m.subject and "[告警:" in m.subject],
                lambda: ([m.subject for m in mail.mails], am.tail_log(), prom.alerts()),
            )
            m = firing[0]
            assert m.to == (f"{risk.name}@bank.example",)
            assert m.subject.startswith(
                "[告警:1] 严重 NovabrainModelLatencyHigh risk-scorer @ p0-risk:"
            )
            html = m.html()
            for text in (
                "risk-scorer p99 延迟超过 50 毫秒",
                "风险评分变慢。调度器已自动处置",
                "当前值",
                "模型 risk-scorer",
                "p0-risk",
                "(Asia/Shanghai)",
                "不提供静默",  # the scheduler acts on it: no silence link
            ):
                assert text in html, text
            value = html.split("当前值</th><td>")[1].split("</td>")[0]
            assert value.endswith("ms") and float(value[:-2]) > thr * 1000
            links = Links()
            links.feed(html)
            assert set(links.links) == {"运行手册", "监控看板", "Prometheus"}
            _check_runbook(links.links["运行手册"], fast, name)
            alert = next(a for p in sink for a in p["alerts"] if a["labels"]["alertname"] == name)
            started = time.time()
            _check_dashboard(links.links["监控看板"], fast, started)
            prom_link = links.links["Prometheus"]
            assert prom_link.startswith(prom.url + "/graph?")
            expr = parse_qs(urlsplit(prom_link).query)["g0.expr"][0]
            assert prom.query(expr), expr  # the alert's own expression, answering now
            with urllib.request.urlopen(prom_link, timeout=10) as r:  # noqa: S310 (loopback)
                assert r.status == 200
            # The scheduler got it too (continue: true), and its alert never had a silence link.
            assert alert["labels"]["action"] == model.action

            # WeCom: the token with the secret from the file, then the markdown message.
            msg = await _until(
                "the WeCom message",
                lambda: [x for x in wecom.messages if name in x["markdown"]["content"]],
            )
            body = msg[0]
            assert (body["msgtype"], body["agentid"], body["toparty"]) == (
                "markdown",
                "1000002",
                "2",
            )
            assert "risk-scorer p99 延迟超过 50 毫秒" in body["markdown"]["content"]
            assert "当前值: **" in body["markdown"]["content"]

            # A burn-rate page carries a silence link: created in Alertmanager as prefilled,
            # it silences exactly that alert.
            burn = await _until(
                "a burn-rate mail",
                lambda: [x for x in mail.mails if "NovabrainModelLatencyBudgetBurn" in x.subject],
            )
            blinks = Links()
            blinks.feed(burn[0].html())
            silence = blinks.links["静默"]
            assert silence.startswith(am.url + "/#/silences/new?filter=")
            with urllib.request.urlopen(silence, timeout=10) as r:  # noqa: S310
                assert r.status == 200  # the UI; the filter is read by it from the fragment
            expr = unquote(silence.split("filter=", 1)[1])
            matchers = parse_matchers([t for t in expr.strip("{}").split(",")])
            labels = {m.name: m.value for m in matchers}
            assert labels["alertname"] == "NovabrainModelLatencyBudgetBurn"
            req = urllib.request.Request(  # noqa: S310
                am.url + "/api/v2/silences",
                data=json.dumps(
                    {
                        "matchers": [x.api() for x in matchers],
                        "startsAt": "2020-01-01T00:00:00Z",
                        "endsAt": "2099-01-01T00:00:00Z",
                        "createdBy": "e2e",
                        "comment": "the mail's silence link",
                    }
                ).encode(),
                method="POST",
                headers={"Content-Type": "application/json"},
            )
            sid = json.loads(urllib.request.urlopen(req, timeout=10).read())["silenceID"]  # noqa: S310

            def silenced() -> list[str]:
                return [
                    a["labels"]["alertname"] + ":" + ",".join(a["status"]["silencedBy"])
                    for a in am.alerts()
                ]

            state = await _until(
                "the silence applied",
                lambda: [
                    s
                    for s in silenced()
                    if s.startswith("NovabrainModelLatencyBudgetBurn:") and sid in s
                ],
            )
            assert state
            assert f"{name}:" in silenced()  # the P0 alert itself is not silenced

            latency["seconds"] = thr / 4
            resolved = await _until(
                "the resolved mail",
                lambda: [x for x in mail.mails if name in x.subject and "[已恢复]" in x.subject],
            )
            assert "结束时间" in resolved[0].html()
            rlinks = Links()
            rlinks.feed(resolved[0].html())
            to = parse_qs(urlsplit(rlinks.links["监控看板"]).query)["to"][0]
            assert to != "now" and int(to) > int(time.time() * 1000) - 60_000
            await _until(
                "the resolved WeCom message",
                lambda: [x for x in wecom.messages if "[已恢复]" in x["markdown"]["content"]],
            )
            assert mail.failed_logins == 0
            assert SCHEDULER_RECEIVER in {p["receiver"] for p in sink}
        finally:
            stop.set()
            await task
            await asyncio.to_thread(prom.stop)
            await asyncio.to_thread(am.stop)
            mail.stop()
