"""The stack's on-call section: validation, receivers, maintenance windows, and their effect on
a real Alertmanager (muted on-call, never the scheduler)."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import shutil
import time
import urllib.request
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from aiohttp import web

from alerts.alertmanager import SCHEDULER_RECEIVER, alertmanager_config
from alerts.generate import templates
from alerts.maintenance import mute_routes, time_intervals
from alerts.receivers import WECHAT_SECRET_MARKER
from alerts.rules.common import DASHBOARD_UIDS, PANELS
from alerts.silence import action_alerts
from deploy.procs import AlertmanagerProcess, free_port
from deploy.stack import Stack, StackError, WebhookChannel, parse_stack

ROOT = Path(__file__).resolve().parents[2]


def _doc() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy/stack.yaml").read_text())


def _oncall(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["alerting"]["oncall"]  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("channel", "field"),
    [
        (0, "auth_password"),
        (1, "api_secret"),
        (0, "password"),
    ],
)
def test_an_inline_secret_is_refused_naming_the_field(channel: int, field: str) -> None:
    doc = _doc()
    _oncall(doc)[0]["channels"][channel][field] = "hunter2"
    with pytest.raises(StackError) as e:
        parse_stack(doc)
    assert e.value.path == f"alerting.oncall[0].channels[{channel}].{field}"
    assert "never written in the stack" in str(e.value)


@pytest.mark.parametrize(
    "channel",
    [
        {"type": "pagerduty", "routing_key": "abc"},
        {"type": "webhook", "url": "https://hooks.example/x", "token": "abc"},
    ],
)
def test_inline_secrets_of_other_channels_are_refused(channel: dict[str, Any]) -> None:
    doc = _doc()
    _oncall(doc)[1]["channels"].append(channel)
    with pytest.raises(StackError, match="never written in the stack"):
        parse_stack(doc)


@pytest.mark.parametrize(
    "url",
    [
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6",
        "https://user:pw@hooks.example/x",
    ],
)
def test_a_secret_in_a_url_is_refused(url: str) -> None:
    doc = _doc()
    _oncall(doc)[1]["channels"][1]["url"] = url
    with pytest.raises(StackError) as e:
        parse_stack(doc)
    assert e.value.path == "alerting.oncall[1].channels[1].url"


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda d: _oncall(d)[0].__setitem__("language", "fr"), "alerting.oncall[0].language"),
        (
            lambda d: _oncall(d)[0]["channels"][0].__setitem__("type", "sms"),
            "alerting.oncall[0].channels[0].type",
        ),
        (
            lambda d: _oncall(d)[0]["channels"][0].__setitem__("to", ["not-an-address"]),
            "alerting.oncall[0].channels[0].to[0]",
        ),
        (
            lambda d: _oncall(d)[0]["channels"][0].__setitem__("smarthost", "smtp.bank.example"),
            "alerting.oncall[0].channels[0].smarthost",
        ),
        (
            lambda d: _oncall(d)[0]["channels"][0].pop("auth_password_file"),
            "alerting.oncall[0].channels[0].auth_password_file",
        ),
        (
            lambda d: _oncall(d)[0]["channels"][1].pop("to_party"),
            "alerting.oncall[0].channels[1].to_party",
        ),
        (
            lambda d: _oncall(d)[0]["channels"][1].__setitem__("agent_id", "app"),
            "alerting.oncall[0].channels[1].agent_id",
        ),
        (
            lambda d: _oncall(d)[0]["channels"][1].__setitem__("corp_secret", "x"),
            "alerting.oncall[0].channels[1].corp_secret",
        ),
        (lambda d: _oncall(d)[0].__setitem__("channels", []), "alerting.oncall[0].channels"),
        (lambda d: d["alerting"].__setitem__("timezone", "Mars/Olympus"), "alerting.timezone"),
        (
            lambda d: d["alerting"]["maintenance"][0]["matchers"].__setitem__(0, "node=gpu-node-3"),
            "alerting.maintenance[0].matchers[0]",
        ),
        (
            lambda d: d["alerting"]["maintenance"][0]["matchers"].__setitem__(0, 'node=~"("'),
            "alerting.maintenance[0].matchers[0]",
        ),
        (
            lambda d: d["alerting"]["maintenance"][0]["once"][0].__setitem__(
                "end", "2025-07-12 21:00"
            ),
            "alerting.maintenance[0].once[0].end",
        ),
        (
            lambda d: d["alerting"]["maintenance"][0]["once"][0].__setitem__("start", "tonight"),
            "alerting.maintenance[0].once[0].start",
        ),
        (
            lambda d: d["alerting"]["maintenance"][1]["weekly"][0].__setitem__("days", ["sunday"]),
            "alerting.maintenance[1].weekly[0].days[0]",
        ),
        (
            lambda d: d["alerting"]["maintenance"][1]["weekly"][0].__setitem__(
                "times", "02:00-24:30"
            ),
            "alerting.maintenance[1].weekly[0].times",
        ),
        (lambda d: d["alerting"]["maintenance"][1].pop("weekly"), "alerting.maintenance[1].once"),
    ],
)
def test_bad_oncall_fields_are_named(edit: Any, path: str) -> None:
    doc = _doc()
    edit(doc)
    with pytest.raises(StackError) as e:
        parse_stack(doc)
    assert e.value.path == path, str(e.value)


def test_runbooks_default_to_the_repository(stack: Stack) -> None:
    doc = _doc()
    doc["alerting"].pop("runbook_base_url", None)
    assert parse_stack(doc).alerting.runbook_base_url == "docs/runbooks"
    assert (ROOT / stack.alerting.runbook_base_url).is_dir()


def test_receivers_read_secrets_from_files_and_none_is_committed(stack: Stack) -> None:
    committed = (ROOT / "deploy/generated/alertmanager.yml").read_text()
    config = alertmanager_config(stack)
    risk = next(r for r in config["receivers"] if r["name"] == "oncall-risk")
    (email,) = risk["email_configs"]
    assert email["auth_password_file"] == "/etc/novabrain/smtp-password"
    assert "auth_password" not in email
    assert email["headers"]["Subject"] == '{{ template "novabrain.email.subject.zh" . }}'
    (wechat,) = risk["wechat_configs"]
    assert wechat["api_secret"] == WECHAT_SECRET_MARKER.format(file="/etc/novabrain/wecom-secret")
    assert wechat["message_type"] == "markdown"
    platform = next(r for r in config["receivers"] if r["name"] == "oncall-platform")
    assert platform["email_configs"][0]["html"] == '{{ template "novabrain.email.html.en" . }}'
    deployed = alertmanager_config(stack, read_secret=lambda path: f"read:{path}")
    (wechat,) = next(r for r in deployed["receivers"] if r["name"] == "oncall-risk")[
        "wechat_configs"
    ]
    assert wechat["api_secret"] == "read:/etc/novabrain/wecom-secret"
    assert "read:" not in committed and config["templates"] == ["templates/*.tmpl"]


def test_maintenance_windows_become_time_intervals_in_the_stack_timezone(stack: Stack) -> None:
    (power, patching) = time_intervals(stack)
    assert power == {
        "name": "power-upgrade",
        "time_intervals": [
            {
                "times": [{"start_time": "22:00", "end_time": "24:00"}],
                "days_of_month": ["12"],
                "months": ["july"],
                "years": ["2025"],
                "location": "Asia/Shanghai",
            },
            {
                "times": [{"start_time": "00:00", "end_time": "06:00"}],
                "days_of_month": ["13"],
                "months": ["july"],
                "years": ["2025"],
                "location": "Asia/Shanghai",
            },
        ],
    }
    assert patching["time_intervals"] == [
        {
            "times": [{"start_time": "02:00", "end_time": "04:00"}],
            "weekdays": ["sunday"],
            "location": "Asia/Shanghai",
        }
    ]
    doc = _doc()
    doc["alerting"]["maintenance"][1]["weekly"][0] = {
        "days": ["sat", "sun"],
        "times": "23:00-01:00",
    }
    (_, night) = time_intervals(parse_stack(doc))
    assert night["time_intervals"] == [
        {
            "times": [{"start_time": "23:00", "end_time": "24:00"}],
            "weekdays": ["saturday", "sunday"],
            "location": "Asia/Shanghai",
        },
        {
            "times": [{"start_time": "00:00", "end_time": "01:00"}],
            "weekdays": ["sunday", "monday"],
            "location": "Asia/Shanghai",
        },
    ]


def test_overlapping_windows_mute_together_and_contradictions_are_pruned(stack: Stack) -> None:
    (both, only_patching) = mute_routes(stack)
    assert both["mute_time_intervals"] == ["power-upgrade"]
    assert both["routes"][0]["mute_time_intervals"] == ["power-upgrade", "driver-patching"]
    assert only_patching["mute_time_intervals"] == ["driver-patching"]
    doc = _doc()
    doc["alerting"]["maintenance"][0]["matchers"] = ['node="gpu-node-3"']
    (three, four) = mute_routes(parse_stack(doc))
    assert "routes" not in three  # node="gpu-node-3" and node="gpu-node-4": never both
    assert four["mute_time_intervals"] == ["driver-patching"]


def test_every_alert_links_to_a_panel_that_exists() -> None:
    dashboards = {
        d["uid"]: {p["id"]: p["title"] for p in d["panels"]}
        for d in (
            json.loads(p.read_text()) for p in (ROOT / "deploy/generated/dashboards").glob("*.json")
        )
    }
    for key, (dash, panel, title) in PANELS.items():
        assert dashboards[DASHBOARD_UIDS[dash]].get(panel) == title, key


# ----------------------------------------------------------------------------- real Alertmanager


class Sink:
    def __init__(self) -> None:
        self.got: list[tuple[str, dict[str, str]]] = []
        self.app = web.Application()
        self.app.router.add_post("/{path:.*}", self._post)

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.got += [(request.path, a["labels"]) for a in body["alerts"]]
        return web.Response()

    def names(self, path: str) -> set[tuple[str, str]]:
        return {
            (labels["alertname"], labels.get("node", "")) for p, labels in self.got if p == path
        }


@pytest.mark.skipif(shutil.which("prometheus-alertmanager") is None, reason="no alertmanager")
async def test_maintenance_mutes_gpu_pages_and_never_the_scheduler(
    stack: Stack, tmp_path: Path
) -> None:
    """A window that is on now, for GPU alerts on gpu-node-3 and, to make the point, for every
    alert of the P0 pool: the node's GPU page is muted, another node's is not, and the P0
    action alert still reaches the scheduler (on-call's copy of it is muted)."""
    tz = ZoneInfo(stack.alerting.timezone)
    now = datetime.now(tz).replace(tzinfo=None, second=0, microsecond=0)
    doc = _doc()
    window = {
        "start": f"{now - timedelta(hours=1):%Y-%m-%d %H:%M}",
        "end": f"{now + timedelta(hours=1):%Y-%m-%d %H:%M}",
    }
    doc["alerting"]["maintenance"] = [
        {
            "name": "node-3-now",
            "matchers": ['alertname=~"NovabrainGpu.*"', 'node="gpu-node-3"'],
            "once": [window],
        },
        {"name": "p0-now", "matchers": ['pool="p0-risk"'], "once": [window]},
    ]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    base = parse_stack(copy.deepcopy(doc)).with_timing(
        scrape_interval_seconds=1,
        latency_alert_for_seconds=1,
        group_wait_seconds=1,
        group_interval_seconds=1,
        return_stabilization_seconds=1,
    )
    (tmp_path / "token").write_text("t")
    live = dataclasses.replace(
        base,
        alerting=dataclasses.replace(
            base.alerting,
            scheduler_webhook_url=f"{url}/scheduler",
            webhook_credentials_file=str(tmp_path / "token"),
            oncall=tuple(
                dataclasses.replace(r, channels=(WebhookChannel(f"{url}/oncall/{r.name}"),))
                for r in base.alerting.oncall
            ),
        ),
    )
    (p0,) = action_alerts(live)
    gpu = {"severity": "critical", "pool": "p1-train", "team": "ml-platform", "uuid": "GPU-x"}
    alerts = [
        p0,
        {**gpu, "alertname": "NovabrainGpuDown", "node": "gpu-node-3"},
        {**gpu, "alertname": "NovabrainGpuDown", "node": "gpu-node-1"},
    ]
    sink = Sink()
    runner = web.AppRunner(sink.app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    am = AlertmanagerProcess(alertmanager_config(live), tmp_path / "am", files=templates(live))
    try:
        await asyncio.to_thread(am.start)
        body = json.dumps([{"labels": a} for a in alerts]).encode()
        req = urllib.request.Request(  # noqa: S310 (the loopback Alertmanager)
            am.url + "/api/v2/alerts",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        await asyncio.to_thread(lambda: urllib.request.urlopen(req, timeout=10).close())  # noqa: S310
        deadline = time.monotonic() + 30
        while not (sink.names("/scheduler") and sink.names("/oncall/oncall-platform")):
            assert time.monotonic() < deadline, sink.got
            await asyncio.sleep(0.2)
        await asyncio.sleep(4)  # several group intervals: anything not muted has arrived by now
        assert sink.names("/scheduler") == {(p0["alertname"], "")}
        assert sink.names("/oncall/oncall-platform") == {("NovabrainGpuDown", "gpu-node-1")}
        assert sink.names("/oncall/oncall-risk") == set()  # the P0 page to on-call is muted
        assert SCHEDULER_RECEIVER == "novabrain-scheduler"
    finally:
        await asyncio.to_thread(am.stop)
        await runner.cleanup()
