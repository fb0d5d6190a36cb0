"""The launcher runs the real binaries: a scrape of Prometheus itself and an Alertmanager API call."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.procs import AlertmanagerProcess, ProcessError, PrometheusProcess


def test_prometheus_scrapes_itself_and_answers_queries(tmp_path: Path) -> None:
    cfg = {"global": {"scrape_interval": "1s"}, "scrape_configs": []}
    with PrometheusProcess(cfg, tmp_path) as prom:
        prom.config["scrape_configs"] = [
            {"job_name": "self", "static_configs": [{"targets": [f"127.0.0.1:{prom.port}"]}]}
        ]
        prom.write_config()
        prom.reload()
        res = prom.wait_for('up{job="self"} == 1', timeout=30)
        assert res[0]["metric"]["job"] == "self"
        with pytest.raises(ProcessError):
            prom.wait_for("absent_metric_that_never_exists", timeout=1)
    assert prom._proc is None  # torn down


def test_alertmanager_starts_and_lists_no_alerts(tmp_path: Path) -> None:
    cfg = {"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}
    with AlertmanagerProcess(cfg, tmp_path) as am:
        assert am.alerts() == []


def test_bad_config_is_reported_with_the_log(tmp_path: Path) -> None:
    with pytest.raises(ProcessError, match="exited"):
        PrometheusProcess({"scrape_configs": "not a list"}, tmp_path).start()
