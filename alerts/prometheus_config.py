"""``prometheus.yml`` generated from the stack: scrape jobs, rule files, the Alertmanager.

Job names are constants here because alert rules (target down) and the demo
refer to them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from alerts.errors import AlertsError
from alerts.promql import dur
from deploy.stack import Stack

GPU_EXPORTER_JOB = "novabrain-gpu-exporter"
MODEL_SERVER_JOB = "novabrain-model-server"
SCHEDULER_JOB = "novabrain-scheduler"
JOBS = (GPU_EXPORTER_JOB, MODEL_SERVER_JOB, SCHEDULER_JOB)

# Prometheus' own default; a scrape may never take longer than its interval.
MAX_SCRAPE_TIMEOUT_SECONDS = 10.0


def default_targets(stack: Stack, host: str = "127.0.0.1") -> dict[str, list[str]]:
    """Each job on ``host`` at the stack's port: the single-host layout of the committed config."""
    return {
        GPU_EXPORTER_JOB: [f"{host}:{stack.ports.gpu_exporter}"],
        MODEL_SERVER_JOB: [f"{host}:{stack.ports.model_server}"],
        SCHEDULER_JOB: [f"{host}:{stack.ports.scheduler}"],
    }


def _alertmanager(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise AlertsError(f"alertmanager_url must be an http(s) URL, got {url!r}")
    am: dict[str, Any] = {"scheme": parts.scheme}
    if parts.path.strip("/"):
        am["path_prefix"] = parts.path
    am["static_configs"] = [{"targets": [parts.netloc]}]
    return am


def prometheus_config(
    stack: Stack,
    *,
    targets: Mapping[str, Sequence[str]],
    rule_files: Sequence[str],
    alertmanager_url: str,
) -> dict[str, Any]:
    """The prometheus.yml document. Jobs are written in name order so the output is stable."""
    interval = stack.prometheus.scrape_interval_seconds
    return {
        "global": {
            "scrape_interval": dur(interval),
            "scrape_timeout": dur(min(interval, MAX_SCRAPE_TIMEOUT_SECONDS)),
            "evaluation_interval": dur(stack.prometheus.evaluation_interval_seconds),
            "external_labels": {"stack": stack.name},
        },
        "rule_files": list(rule_files),
        "alerting": {"alertmanagers": [_alertmanager(alertmanager_url)]},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(targets[job])}]}
            for job in sorted(targets)
        ],
    }
