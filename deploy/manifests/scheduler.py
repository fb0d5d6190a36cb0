"""The scheduler in the cluster: one pod, one writer, its state on a volume.

A single-replica StatefulSet, not a Deployment: the SQLite state and the audit
log take one writer, and a StatefulSet never runs two pods of one identity at
once (a Deployment's rolling update, or a pod on an unreachable node replaced
before it is known dead, could run two writers). The cost: when a node fails,
the pod is replaced only once the Node is deleted, or an operator force-deletes
the pod or marks the node out of service, and its ReadWriteOnce volume moves:
minutes, not the second a process restart takes (README, "Deploy to Kubernetes").
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from alerts.prometheus_config import SCHEDULER_JOB
from deploy.manifests.objects import (
    STACK_PATH,
    container_security,
    http_probe,
    ingress_policy,
    meta,
    obj,
    peer,
    pod_security,
    resources,
    selector,
    service,
    service_account,
    stack_volume,
    template_meta,
    tmp_volume,
)
from deploy.stack import Peer, Stack

COMPONENT = "scheduler"
NAME = SCHEDULER_JOB  # the Service name is the Prometheus job name the rules expect
SERVICE_ACCOUNT = "novabrain-scheduler"
STATE_DIR = "/var/lib/novabrain"
PORT_NAME = "http"
# The Alertmanager credential: a Secret the operator creates (never generated: no
# plaintext token is committed); its SHA-256 is the alertmanager user's in the stack.
WEBHOOK_SECRET = "novabrain-alertmanager-token"  # noqa: S105 - a Secret name
WEBHOOK_SECRET_KEY = "token"  # noqa: S105 - a key name


def webhook_url(stack: Stack) -> str:
    """The scheduler's webhook as Alertmanager reaches it inside the cluster."""
    path = urlsplit(stack.alerting.scheduler_webhook_url).path or "/"
    ns = stack.kubernetes.install_namespace
    return f"http://{NAME}.{ns}.svc:{stack.ports.scheduler}{path}"


def statefulset(stack: Stack, stack_text: str) -> dict[str, Any]:
    k = stack.kubernetes
    port = stack.ports.scheduler
    stack_vol, stack_mount = stack_volume()
    tmp_vol, tmp_mount = tmp_volume()
    container = {
        "name": COMPONENT,
        "image": k.image,
        "imagePullPolicy": k.image_pull_policy,
        "args": [
            "scheduler",
            "--host=0.0.0.0",
            f"--port={port}",
            f"--stack={STACK_PATH}",
            f"--state-dir={STATE_DIR}",
        ],
        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        # /healthz answers 503 once the intent worker stops: liveness restarts the
        # process. Startup allows for restart recovery (reconciling pending intents).
        "startupProbe": http_probe("/healthz", PORT_NAME, period=2, failures=60),
        "livenessProbe": http_probe("/healthz", PORT_NAME, period=10, failures=3),
        "readinessProbe": http_probe("/healthz", PORT_NAME, period=5, failures=2),
        "resources": resources(k.scheduler.resources),
        "securityContext": container_security(),
        "volumeMounts": [{"name": "state", "mountPath": STATE_DIR}, stack_mount, tmp_mount],
    }
    claim_spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": k.scheduler.storage}},
    }
    if k.scheduler.storage_class is not None:
        claim_spec["storageClassName"] = k.scheduler.storage_class
    return obj(
        "apps/v1",
        "StatefulSet",
        meta(stack, NAME, COMPONENT),
        spec={
            "replicas": 1,
            "serviceName": NAME,
            "selector": {"matchLabels": selector(COMPONENT)},
            "updateStrategy": {"type": "RollingUpdate"},
            # The audit log outlives the StatefulSet: deleting it keeps the volume.
            "persistentVolumeClaimRetentionPolicy": {
                "whenDeleted": "Retain",
                "whenScaled": "Retain",
            },
            "template": {
                "metadata": template_meta(stack, COMPONENT, stack_text),
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "automountServiceAccountToken": False,
                    "securityContext": pod_security(),
                    # SIGTERM stops the server cleanly (exit 0) well within this.
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                    "volumes": [stack_vol, tmp_vol],
                },
            },
            "volumeClaimTemplates": [
                {"metadata": {"name": "state"}, "spec": claim_spec},
            ],
        },
    )


def disruption_budget(stack: Stack) -> dict[str, Any]:
    # One replica: no voluntary eviction (a drain, the autoscaler's scale-down)
    # may take it, so a move is a deliberate `kubectl delete pod` outside the
    # market bell. A pod that is not ready may always be evicted, so a broken
    # scheduler never blocks a drain.
    return obj(
        "policy/v1",
        "PodDisruptionBudget",
        meta(stack, NAME, COMPONENT),
        spec={
            "maxUnavailable": 0,
            "selector": {"matchLabels": selector(COMPONENT)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    )


def network_policy(stack: Stack) -> dict[str, Any]:
    """Ingress from Prometheus, Alertmanager and the stack's API clients only."""
    mon = stack.kubernetes.monitoring
    clients: tuple[Peer, ...] = stack.kubernetes.scheduler.api_clients
    sources = [
        peer(mon.namespace, dict(mon.prometheus_pods)),
        peer(mon.namespace, dict(mon.alertmanager_pods)),
        *(peer(c.namespace, dict(c.pod_labels)) for c in clients),
    ]
    return ingress_policy(stack, NAME, COMPONENT, sources=sources, port=stack.ports.scheduler)


def objects(stack: Stack, stack_text: str) -> list[dict[str, Any]]:
    return [
        # Its token is mounted only where the Kubernetes actuator runs (production overlay).
        service_account(stack, SERVICE_ACCOUNT, COMPONENT),
        statefulset(stack, stack_text),
        service(stack, NAME, COMPONENT, port=stack.ports.scheduler, port_name=PORT_NAME),
        disruption_budget(stack),
        network_policy(stack),
    ]
