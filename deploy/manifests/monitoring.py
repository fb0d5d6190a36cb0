"""What the Prometheus Operator and Grafana pick up: ServiceMonitors, PrometheusRules, dashboards.

Targets keep the job names the rules expect (``novabrain-gpu-exporter``,
``novabrain-scheduler``, ``novabrain-model-server``): the operator names a
ServiceMonitor's job after the Service, and the model servers' is set by a
relabeling. The PrometheusRules hold the very groups ``promtool`` tests: each
is parsed back from the bytes written to ``deploy/generated/rules/``.
Dashboards are the committed JSON, one ConfigMap each, labelled for Grafana's
dashboard sidecar and annotated with the stack's Grafana folder.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any

import yaml

from alerts.generate import RULES_DIR, documents
from alerts.generate import dump as dump_alerts
from alerts.prometheus_config import (
    GPU_EXPORTER_JOB,
    MAX_SCRAPE_TIMEOUT_SECONDS,
    MODEL_SERVER_JOB,
    SCHEDULER_JOB,
)
from alerts.promql import dur
from dashboards.build import build_all
from dashboards.build import dumps as dump_dashboard
from deploy.manifests import exporter, scheduler
from deploy.manifests.objects import meta, obj
from deploy.manifests.objects import selector as pod_selector
from deploy.stack import Stack

MONITORING_API = "monitoring.coreos.com/v1"
DASHBOARD_LABEL = {"grafana_dashboard": "1"}


def _endpoint(stack: Stack, port: str, **extra: Any) -> dict[str, Any]:
    interval = stack.prometheus.scrape_interval_seconds
    return {
        "port": port,
        "path": "/metrics",
        "interval": dur(interval),
        "scrapeTimeout": dur(min(interval, MAX_SCRAPE_TIMEOUT_SECONDS)),
        **extra,
    }


def _service_monitor(
    stack: Stack,
    name: str,
    component: str,
    *,
    namespace: str,
    selector: dict[str, str],
    endpoint: dict[str, Any],
) -> dict[str, Any]:
    return obj(
        MONITORING_API,
        "ServiceMonitor",
        meta(stack, name, component, extra_labels=dict(stack.kubernetes.monitoring.labels)),
        spec={
            "namespaceSelector": {"matchNames": [namespace]},
            "selector": {"matchLabels": selector},
            "endpoints": [endpoint],
        },
    )


def service_monitors(stack: Stack) -> list[dict[str, Any]]:
    k = stack.kubernetes
    return [
        _service_monitor(
            stack,
            SCHEDULER_JOB,
            scheduler.COMPONENT,
            namespace=k.install_namespace,
            selector=pod_selector(scheduler.COMPONENT),
            endpoint=_endpoint(stack, scheduler.PORT_NAME),
        ),
        _service_monitor(
            stack,
            GPU_EXPORTER_JOB,
            exporter.COMPONENT,
            namespace=k.install_namespace,
            selector=pod_selector(exporter.COMPONENT),
            endpoint=_endpoint(stack, exporter.PORT_NAME),
        ),
        # The bank's model servers, in the workloads' namespace: their Services
        # carry the stack's labels and a named metrics port.
        _service_monitor(
            stack,
            MODEL_SERVER_JOB,
            "model-server",
            namespace=k.namespace,
            selector=dict(k.model_servers.service_labels),
            endpoint=_endpoint(
                stack,
                k.model_servers.port,
                relabelings=[
                    {"action": "replace", "targetLabel": "job", "replacement": MODEL_SERVER_JOB}
                ],
            ),
        ),
    ]


def rule_groups(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    """Rule file name -> its groups, parsed from the exact text written for promtool."""
    out = {}
    for rel, doc in documents(stack).items():
        path = PurePosixPath(rel)
        if path.parent.name == RULES_DIR:
            out[path.name] = yaml.safe_load(dump_alerts(doc))["groups"]
    return out


def rule_name(file_name: str) -> str:
    """``gpu.rules.yml`` -> ``novabrain-gpu``."""
    return "novabrain-" + file_name.split(".", 1)[0]


def prometheus_rules(stack: Stack) -> list[dict[str, Any]]:
    labels = dict(stack.kubernetes.monitoring.labels)
    return [
        obj(
            MONITORING_API,
            "PrometheusRule",
            meta(stack, rule_name(name), "rules", extra_labels=labels),
            spec={"groups": groups},
        )
        for name, groups in rule_groups(stack).items()
    ]


def dashboard_configmaps(stack: Stack) -> list[dict[str, Any]]:
    mon = stack.kubernetes.monitoring
    return [
        obj(
            "v1",
            "ConfigMap",
            meta(
                stack,
                "novabrain-dashboard-" + name.removesuffix(".json"),
                "dashboards",
                namespace=mon.dashboards_namespace,
                extra_labels=DASHBOARD_LABEL,
                annotations={mon.folder_annotation: stack.grafana.folder},
            ),
            data={name: dump_dashboard(dash)},
        )
        for name, dash in build_all(stack).items()
    ]
