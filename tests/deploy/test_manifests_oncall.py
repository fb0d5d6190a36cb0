"""On-call in the AlertmanagerConfig: every channel mapped, secrets as references to the
``novabrain-oncall`` Secret (never values), maintenance windows in UTC (the CRD has no
timezone), and the templates beside Alertmanager."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from alerts.templates import template_files
from deploy.manifests.alertmanager import (
    ONCALL_SECRET,
    alertmanager_config_object,
    templates_configmap,
)
from deploy.manifests.errors import ManifestError
from deploy.stack import Stack, parse_stack

ROOT = Path(__file__).resolve().parents[2]


def _doc() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy/stack.yaml").read_text())


def test_channels_and_their_secrets(stack: Stack) -> None:
    doc = _doc()
    doc["alerting"]["oncall"][1]["channels"].append(
        {"type": "pagerduty", "routing_key_file": "/etc/novabrain/pd-key"}
    )
    spec = alertmanager_config_object(parse_stack(doc))["spec"]
    risk = next(r for r in spec["receivers"] if r["name"] == "oncall-risk")
    (email,) = risk["emailConfigs"]
    assert email["authPassword"] == {"name": ONCALL_SECRET, "key": "smtp-password"}
    assert email["headers"] == [
        {"key": "Subject", "value": '{{ template "novabrain.email.subject.zh" . }}'}
    ]
    (wechat,) = risk["wechatConfigs"]
    assert wechat["apiSecret"] == {"name": ONCALL_SECRET, "key": "wecom-secret"}
    platform = next(r for r in spec["receivers"] if r["name"] == "oncall-platform")
    assert platform["pagerdutyConfigs"][0]["routingKey"] == {"name": ONCALL_SECRET, "key": "pd-key"}
    assert "<secret" not in yaml.safe_dump(spec)


def test_maintenance_windows_in_utc(stack: Stack) -> None:
    spec = alertmanager_config_object(stack)["spec"]
    power, patching = spec["muteTimeIntervals"]
    # 22:00-06:00 in Shanghai (UTC+8) is 14:00-22:00 UTC on the same day.
    assert power["timeIntervals"] == [
        {
            "times": [{"startTime": "14:00", "endTime": "22:00"}],
            "daysOfMonth": [{"start": 12, "end": 12}],
            "months": ["july"],
            "years": ["2025"],
        }
    ]
    # Sunday 02:00-04:00 in Shanghai is Saturday 18:00-20:00 UTC.
    assert patching["timeIntervals"] == [
        {"times": [{"startTime": "18:00", "endTime": "20:00"}], "weekdays": ["saturday"]}
    ]
    routes = spec["route"]["routes"]
    assert any(c.get("muteTimeIntervals") for r in routes for c in r.get("routes", []))


def test_a_weekly_window_in_a_zone_with_daylight_saving_is_refused() -> None:
    doc = _doc()
    doc["alerting"]["timezone"] = "Europe/London"
    with pytest.raises(ManifestError, match="driver-patching"):
        alertmanager_config_object(parse_stack(doc))


def test_templates_ship_beside_alertmanager(stack: Stack) -> None:
    cm = templates_configmap(stack)
    assert cm["metadata"]["namespace"] == stack.kubernetes.monitoring.namespace
    assert cm["data"] == template_files(stack)
