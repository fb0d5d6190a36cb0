"""Alertmanager config: amtool accepts it and routes every case where it must go."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from alerts.alertmanager import (
    SCHEDULER_RECEIVER,
    alertmanager_config,
    route_cases,
)
from alerts.generate import templates
from alerts.promql import dur
from alerts.rules import CRITICAL, WARNING
from deploy.procs import AlertmanagerProcess
from deploy.stack import Stack

pytestmark = pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed")


def _write(stack: Stack, tmp_path: Path) -> Path:
    for rel, text in templates(stack).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(alertmanager_config(stack), sort_keys=False))
    return path


def test_amtool_accepts_the_config(any_stack: Stack, tmp_path: Path) -> None:
    res = subprocess.run(
        ["amtool", "check-config", str(_write(any_stack, tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr


def test_every_route_sends_where_it_must(stack: Stack, tmp_path: Path) -> None:
    path = _write(stack, tmp_path)
    cases = route_cases(stack)
    # Every route of the tree is exercised by some case, and so is the fall-through.
    config = alertmanager_config(stack)
    used = {r for c in cases for r in c.receivers}
    assert {r["receiver"] for r in config["route"]["routes"]} | {
        config["route"]["receiver"]
    } <= used
    for case in cases:
        labels = [f"{k}={v}" for k, v in case.labels.items()]
        res = subprocess.run(
            [
                "amtool",
                "config",
                "routes",
                "test",
                f"--config.file={path}",
                f"--verify.receivers={','.join(case.receivers)}",
                *labels,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert res.returncode == 0, f"{case}: {res.stdout}{res.stderr}"


def test_a_wrong_expectation_fails_amtool(stack: Stack, tmp_path: Path) -> None:
    """The route test can fail: a P2 action alert never reaches the scheduler."""
    path = _write(stack, tmp_path)
    low = min(stack.pools, key=lambda p: stack.priority_of(p.name))
    res = subprocess.run(
        [
            "amtool",
            "config",
            "routes",
            "test",
            f"--config.file={path}",
            f"--verify.receivers={SCHEDULER_RECEIVER}",
            "action=rebalance",
            f"pool={low.name}",
            f"team={low.team}",
            "severity=critical",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode != 0


def test_scheduler_webhook_is_valid_for_alertmanager_0_25(any_stack: Stack) -> None:
    config = alertmanager_config(any_stack)
    scheduler = next(r for r in config["receivers"] if r["name"] == SCHEDULER_RECEIVER)
    (hook,) = scheduler["webhook_configs"]
    assert hook["url"] == any_stack.alerting.scheduler_webhook_url
    assert "url_file" not in hook and "timeout" not in hook
    assert hook["http_config"]["authorization"] == {
        "type": "Bearer",
        "credentials_file": any_stack.alerting.webhook_credentials_file,
    }
    assert hook["send_resolved"] is True
    route = next(r for r in config["route"]["routes"] if r["receiver"] == SCHEDULER_RECEIVER)
    assert route["continue"] is True
    assert config["route"]["group_wait"] == dur(any_stack.alerting.group_wait_seconds)
    assert config["route"]["group_interval"] == dur(any_stack.alerting.group_interval_seconds)


def test_inhibition_never_matches_on_missing_labels(stack: Stack) -> None:
    for rule in alertmanager_config(stack)["inhibit_rules"]:
        for label in rule["equal"]:
            assert f'{label}=~".+"' in rule["source_matchers"]
            assert f'{label}=~".+"' in rule["target_matchers"]


@pytest.mark.skipif(
    shutil.which("prometheus-alertmanager") is None, reason="alertmanager not installed"
)
def test_critical_inhibits_the_warning_for_the_same_model_only(
    stack: Stack, tmp_path: Path
) -> None:
    """Posted to the real Alertmanager: the warning for the breached model is suppressed,
    the same warning for another model and a model-less warning are not."""
    model = stack.models[0]
    alerts = [
        {"alertname": "Page", "severity": CRITICAL, "model": model.name, "pool": model.pool},
        {"alertname": "Ticket", "severity": WARNING, "model": model.name, "pool": model.pool},
        {"alertname": "Ticket", "severity": WARNING, "model": "other-model", "pool": model.pool},
        {"alertname": "Platform", "severity": WARNING, "team": "platform"},
    ]
    with AlertmanagerProcess(alertmanager_config(stack), tmp_path, files=templates(stack)) as am:
        body = json.dumps([{"labels": a} for a in alerts]).encode()
        req = urllib.request.Request(  # noqa: S310 (the loopback Alertmanager)
            am.url + "/api/v2/alerts",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
            assert r.status == 200
        deadline = time.monotonic() + 30
        while True:
            states = {
                (a["labels"]["alertname"], a["labels"].get("model")): a["status"]["state"]
                for a in am.alerts()
            }
            if len(states) == len(alerts) and "unprocessed" not in states.values():
                break
            assert time.monotonic() < deadline, states
            time.sleep(0.2)
    assert states == {
        ("Page", model.name): "active",
        ("Ticket", model.name): "suppressed",
        ("Ticket", "other-model"): "active",
        ("Platform", None): "active",
    }
