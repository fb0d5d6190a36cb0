"""The kustomize layout: ``base/`` (one file per object) and the ``demo`` and ``production`` overlays.

The overlays say exactly what differs, as JSON patches computed from the base
objects (so an index in a patch is always the right one):

* production: ``--backend=nvml`` and ``--actuator=kubernetes``, the scheduler's
  service-account token mounted, and the RBAC and PriorityClass the actuator needs;
* demo (a cluster without GPUs): ``--backend=sim`` and ``--actuator=simulated``,
  no token and no RBAC, and the exporter off the NVIDIA runtime and the kubelet
  socket, on the one node labelled ``novabrain.io/demo-gpu-node=true`` (every
  simulated exporter serves the stack's whole simulated cluster).

Objects carry their namespaces themselves (the base has no ``namespace:``
transformer): the RBAC Role lives in the actuator's namespace, the dashboards
where Grafana's sidecar looks, the rest in the install namespace.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from deploy.manifests import exporter, rbac, scheduler
from deploy.manifests.alertmanager import alertmanager_config_object, templates_configmap
from deploy.manifests.errors import ManifestError
from deploy.manifests.monitoring import dashboard_configmaps, prometheus_rules, service_monitors
from deploy.manifests.objects import dump, meta, obj, stack_configmap
from deploy.stack import Stack

KUSTOMIZATION = "kustomization.yaml"
BASE = "base"
OVERLAYS = ("demo", "production")
DEMO_NODE_LABEL = "novabrain.io/demo-gpu-node"
_CONTAINER = "/spec/template/spec/containers/0"


def namespace(stack: Stack) -> dict[str, Any]:
    m = meta(stack, stack.kubernetes.install_namespace, "namespace", namespace="")
    # Pod Security: the GPU exporter's hostPath, uid 0 (and hostPID, if enabled)
    # are beyond "baseline"; every other pod here meets "restricted", and the
    # API server's audit log records any pod that does not.
    m["labels"].update(
        {
            "pod-security.kubernetes.io/enforce": "privileged",
            "pod-security.kubernetes.io/audit": "restricted",
        }
    )
    return obj("v1", "Namespace", m)


def base_objects(stack: Stack, stack_text: str) -> list[dict[str, Any]]:
    return [
        namespace(stack),
        stack_configmap(stack, stack_text),
        *scheduler.objects(stack, stack_text),
        *exporter.objects(stack, stack_text),
        *service_monitors(stack),
        *prometheus_rules(stack),
        alertmanager_config_object(stack),
        templates_configmap(stack),
        *dashboard_configmaps(stack),
    ]


def file_name(o: dict[str, Any]) -> str:
    return f"{o['kind'].lower()}-{o['metadata']['name']}.yaml"


def _find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for o in objects:
        if o["kind"] == kind and o["metadata"]["name"] == name:
            return o
    raise ManifestError(f"no {kind} {name} in the base")


def _patch(o: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    group, _, version = o["apiVersion"].rpartition("/")
    target = {"group": group, "version": version, "kind": o["kind"], "name": o["metadata"]["name"]}
    target["namespace"] = o["metadata"]["namespace"]
    return {"target": target, "patch": yaml.safe_dump(ops, sort_keys=False, width=100)}


def _add_arg(arg: str) -> dict[str, Any]:
    return {"op": "add", "path": f"{_CONTAINER}/args/-", "value": arg}


def _demo_exporter_ops(ds: dict[str, Any]) -> list[dict[str, Any]]:
    pod = ds["spec"]["template"]["spec"]
    mounts = [m["name"] for m in pod["containers"][0]["volumeMounts"]]
    volumes = [v["name"] for v in pod["volumes"]]
    ops = [_add_arg("--backend=sim")]
    for key in ("runtimeClassName", "hostPID", "tolerations"):
        if key in pod:
            ops.append({"op": "remove", "path": f"/spec/template/spec/{key}"})
    ops += [
        {
            "op": "replace",
            "path": "/spec/template/spec/nodeSelector",
            "value": {DEMO_NODE_LABEL: "true"},
        },
        {
            "op": "remove",
            "path": f"{_CONTAINER}/volumeMounts/{mounts.index(exporter.POD_RESOURCES_VOLUME)}",
        },
        {
            "op": "remove",
            "path": f"/spec/template/spec/volumes/{volumes.index(exporter.POD_RESOURCES_VOLUME)}",
        },
    ]
    return ops


def overlays(stack: Stack, base: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Overlay name -> {file name: document}, its kustomization.yaml included."""
    sts = _find(base, "StatefulSet", scheduler.NAME)
    ds = _find(base, "DaemonSet", exporter.NAME)
    token = {"op": "replace", "path": "/spec/template/spec/automountServiceAccountToken"}
    production_objects = rbac.objects(stack)
    patches = {
        "production": [
            _patch(sts, [_add_arg("--actuator=kubernetes"), {**token, "value": True}]),
            _patch(ds, [_add_arg("--backend=nvml")]),
        ],
        "demo": [
            _patch(sts, [_add_arg("--actuator=simulated")]),
            _patch(ds, _demo_exporter_ops(ds)),
        ],
    }
    extra = {"production": production_objects, "demo": []}
    out: dict[str, dict[str, Any]] = {}
    for name in OVERLAYS:
        files = {file_name(o): o for o in extra[name]}
        files[KUSTOMIZATION] = {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [f"../../{BASE}", *files],
            "patches": patches[name],
        }
        out[name] = files
    return out


def layout(stack: Stack, stack_text: str) -> dict[str, Any]:
    """Relative path -> document for everything under ``deploy/generated/kubernetes``."""
    base = base_objects(stack, stack_text)
    files: dict[str, Any] = {}
    for o in base:
        path = f"{BASE}/{file_name(o)}"
        if path in files:
            raise ManifestError(f"two objects would be written to {path}")
        files[path] = o
    files[f"{BASE}/{KUSTOMIZATION}"] = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": [file_name(o) for o in base],
    }
    for name, overlay in overlays(stack, base).items():
        for fname, doc in overlay.items():
            files[f"overlays/{name}/{fname}"] = doc
    return files


def write_all(stack: Stack, stack_text: str, out_dir: Path) -> list[Path]:
    """Write the manifests under ``out_dir``; files no longer generated are removed."""
    out_dir = Path(out_dir)
    files = layout(stack, stack_text)
    for sub in (BASE, *(f"overlays/{o}" for o in OVERLAYS)):
        (out_dir / sub).mkdir(parents=True, exist_ok=True)
        for old in (out_dir / sub).glob("*.yaml"):
            if f"{sub}/{old.name}" not in files:
                old.unlink()
    written = []
    for rel, doc in files.items():
        path = out_dir / rel
        path.write_text(dump(doc), encoding="utf-8")
        written.append(path)
    return written
