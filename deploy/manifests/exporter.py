"""The GPU exporter as a DaemonSet on the GPU nodes.

It requests no GPU: the NVIDIA runtime (``runtimeClassName``) with
``NVIDIA_VISIBLE_DEVICES=all`` gives it every GPU of the node for NVML, as
dcgm-exporter does, without taking one from the device plugin's count. The
kubelet's pod-resources directory is mounted read-only so processes are
attributed to pods; connecting to that root-owned socket is why this one pod
runs as uid 0 (with no capability and a read-only root filesystem).
``hostPID`` is set only when the stack enables /proc attribution
(``kubernetes.gpu_nodes.proc_attribution``): NVML reports host PIDs, and only
in the host's PID namespace can ``/proc/<pid>/cgroup`` name a process's
container, which matters when several containers share a GPU (time-slicing,
MPS); without it, a GPU's processes are named by the pod the kubelet
allocated the GPU to.
"""

from __future__ import annotations

from typing import Any

from alerts.prometheus_config import GPU_EXPORTER_JOB
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
from deploy.stack import Stack
from exporters.gpu.podresources import DEFAULT_SOCKET

COMPONENT = "gpu-exporter"
NAME = GPU_EXPORTER_JOB  # the Service name is the Prometheus job name the rules expect
SERVICE_ACCOUNT = "novabrain-gpu-exporter"
PORT_NAME = "metrics"
POD_RESOURCES_VOLUME = "pod-resources"


def daemonset(stack: Stack, stack_text: str) -> dict[str, Any]:
    k = stack.kubernetes
    nodes = k.gpu_nodes
    port = stack.ports.gpu_exporter
    stack_vol, stack_mount = stack_volume()
    tmp_vol, tmp_mount = tmp_volume()
    container = {
        "name": COMPONENT,
        "image": k.image,
        "imagePullPolicy": k.image_pull_policy,
        "args": [
            "gpu-exporter",
            "--host=0.0.0.0",
            f"--port={port}",
            f"--stack={STACK_PATH}",
            # GPU series carry the Kubernetes node name, not the pod's hostname.
            "--node=$(NODE_NAME)",
        ],
        "env": [
            {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"},
            {"name": "NVIDIA_DRIVER_CAPABILITIES", "value": "utility"},
        ],
        "ports": [{"name": PORT_NAME, "containerPort": port, "protocol": "TCP"}],
        # /healthz answers while the process serves (a broken driver is in the
        # metrics, not a restart loop); /metrics ready means scrapes will work.
        "livenessProbe": http_probe("/healthz", PORT_NAME, period=10, failures=3),
        "readinessProbe": http_probe("/metrics", PORT_NAME, period=10, failures=2),
        "resources": resources(nodes.resources),
        "securityContext": container_security(run_as_root=True),
        "volumeMounts": [
            {
                "name": POD_RESOURCES_VOLUME,
                "mountPath": str(DEFAULT_SOCKET.parent),
                "readOnly": True,
            },
            stack_mount,
            tmp_mount,
        ],
    }
    tolerations = []
    for t in nodes.tolerations:
        tol = {"key": t.key, "operator": t.operator}
        if t.value is not None:
            tol["value"] = t.value
        if t.effect is not None:
            tol["effect"] = t.effect
        tolerations.append(tol)
    pod: dict[str, Any] = {
        "serviceAccountName": SERVICE_ACCOUNT,
        "automountServiceAccountToken": False,
        "securityContext": pod_security(run_as_root=True),
        "nodeSelector": dict(nodes.node_selector),
        "tolerations": tolerations,
    }
    if nodes.runtime_class is not None:
        pod["runtimeClassName"] = nodes.runtime_class
    if nodes.proc_attribution:
        pod["hostPID"] = True
    pod["containers"] = [container]
    pod["volumes"] = [
        {
            "name": POD_RESOURCES_VOLUME,
            "hostPath": {"path": nodes.pod_resources_dir, "type": "Directory"},
        },
        stack_vol,
        tmp_vol,
    ]
    return obj(
        "apps/v1",
        "DaemonSet",
        meta(stack, NAME, COMPONENT),
        spec={
            "selector": {"matchLabels": selector(COMPONENT)},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
            "template": {"metadata": template_meta(stack, COMPONENT, stack_text), "spec": pod},
        },
    )


def objects(stack: Stack, stack_text: str) -> list[dict[str, Any]]:
    mon = stack.kubernetes.monitoring
    port = stack.ports.gpu_exporter
    return [
        # The exporter never calls the API server: no token at all.
        service_account(stack, SERVICE_ACCOUNT, COMPONENT),
        daemonset(stack, stack_text),
        # Headless: Prometheus scrapes every exporter pod through the endpoints.
        service(stack, NAME, COMPONENT, port=port, port_name=PORT_NAME, headless=True),
        # Only Prometheus scrapes it.
        ingress_policy(
            stack,
            NAME,
            COMPONENT,
            sources=[peer(mon.namespace, dict(mon.prometheus_pods))],
            port=port,
        ),
    ]
