"""The committed Grafana provisioning files match the stack."""

from __future__ import annotations

from pathlib import Path

import yaml

from dashboards.build import build_all
from dashboards.provisioning import provisioning, render
from deploy.stack import Stack

ROOT = Path(__file__).resolve().parents[2]


def test_committed_provisioning_is_up_to_date(stack: Stack) -> None:
    for rel, doc in provisioning(stack).items():
        committed = ROOT / "deploy" / "grafana" / rel
        assert committed.read_text() == render(doc), (
            f"{rel} is stale: python -m dashboards.provisioning"
        )


def test_datasource_is_the_one_dashboards_start_on(stack: Stack) -> None:
    docs = provisioning(stack)
    (ds,) = docs["datasources/novabrain.yml"]["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["jsonData"]["timeInterval"] == f"{stack.prometheus.scrape_interval_seconds:g}s"
    for dash in build_all(stack).values():
        assert dash["templating"]["list"][0]["current"]["value"] == ds["uid"]
    (provider,) = docs["dashboards/novabrain.yml"]["providers"]
    assert provider["folder"] == stack.grafana.folder
    assert (
        yaml.safe_load(render(docs["dashboards/novabrain.yml"])) == docs["dashboards/novabrain.yml"]
    )
