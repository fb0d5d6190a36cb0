"""The stack's kubernetes section: defaults, and every mistake named by its field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.stack import Kubernetes, StackError, parse_stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "deploy/stack.yaml").read_text())


def _with(doc: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    d = copy.deepcopy(doc)
    cur = d.setdefault("kubernetes", {})
    for k in path[:-1]:
        cur = cur.setdefault(k, {}) if isinstance(k, str) else cur[k]
    cur[path[-1]] = value
    return d


def test_an_absent_section_takes_the_defaults(doc: dict[str, Any]) -> None:
    d = copy.deepcopy(doc)
    del d["kubernetes"]
    k = parse_stack(d).kubernetes
    assert k == Kubernetes()
    assert (k.version, k.install_namespace, k.gpu_nodes.runtime_class) == (
        "1.30",
        "novabrain-system",
        "nvidia",
    )
    assert not k.gpu_nodes.proc_attribution


def test_the_committed_section_spells_out_the_defaults(doc: dict[str, Any]) -> None:
    k = parse_stack(doc).kubernetes
    defaults = Kubernetes()
    for name in (
        "version",
        "install_namespace",
        "image",
        "monitoring",
        "gpu_nodes",
        "model_servers",
    ):
        assert getattr(k, name) == getattr(defaults, name), name
    assert [c.name for c in k.scheduler.api_clients] == ["model-servers"]


def test_values_are_read(doc: dict[str, Any]) -> None:
    d = _with(doc, ["gpu_nodes", "proc_attribution"], True)
    d = _with(d, ["scheduler", "resources"], {"requests": {"memory": "1Gi"}})
    d = _with(d, ["labels"], {"bank.example/cost-center": "cc-42"})
    k = parse_stack(d).kubernetes
    assert k.gpu_nodes.proc_attribution
    assert k.scheduler.resources.requests == {"cpu": "500m", "memory": "1Gi"}
    assert k.labels == {"bank.example/cost-center": "cc-42"}


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        (["version"], 1.3, "kubernetes.version", 'quoted string like "1.30"'),
        (["version"], "1.24", "kubernetes.version", '"1.27" or newer'),
        (["version"], "v1.30", "kubernetes.version", "minor version"),
        (["install_namespace"], "Bad_NS", "kubernetes.install_namespace", "must match"),
        (["install_namespace"], "monitoring", "kubernetes.install_namespace", "must differ"),
        (["image_pull_policy"], "Sometimes", "kubernetes.image_pull_policy", "IfNotPresent"),
        (["labels"], {"team": True}, "kubernetes.labels.team", "must be a string"),
        (["labels"], {"bad key!": "x"}, "kubernetes.labels.bad key!", "label key"),
        (["labels"], {"team": "-x"}, "kubernetes.labels.team", "label value"),
        (["gpu_nodes", "node_selector"], {"nvidia.com/gpu.present": True}, "kubernetes.gpu_nodes.node_selector.nvidia.com/gpu.present", "quote it"),
        (["gpu_nodes", "proc_attribution"], "yes", "kubernetes.gpu_nodes.proc_attribution", "true or false"),
        (["gpu_nodes", "pod_resources_dir"], "var/lib", "kubernetes.gpu_nodes.pod_resources_dir", "absolute"),
        (["gpu_nodes", "tolerations"], [{"key": "k", "operator": "Equal"}], "kubernetes.gpu_nodes.tolerations[0].value", "is required"),
        (["gpu_nodes", "tolerations"], [{"key": "k", "effect": "Never"}], "kubernetes.gpu_nodes.tolerations[0].effect", "NoSchedule"),
        (["gpu_nodes", "resources", "limits"], {"memory": "64Mi"}, "kubernetes.gpu_nodes.resources.limits.memory", "below the request (128Mi)"),
        (["gpu_nodes", "resources", "requests"], {"cpu": "lots"}, "kubernetes.gpu_nodes.resources.requests.cpu", "quantity"),
        (["gpu_nodes", "resources", "requests"], {"gpu": "1"}, "kubernetes.gpu_nodes.resources.requests.gpu", "unknown field"),
        (["gpu_nodes", "runtimeclass"], "nvidia", "kubernetes.gpu_nodes.runtimeclass", "unknown field"),
        (["scheduler", "storage"], "10", "kubernetes.scheduler.storage", "too small"),
        (["scheduler", "api_clients"], [{"name": "a", "namespace": "x"}] * 2, "kubernetes.scheduler.api_clients[1].name", "duplicate"),
        (["monitoring", "labels"], {"release": 1}, "kubernetes.monitoring.labels.release", "must be a string"),
        (["model_servers", "port"], "", "kubernetes.model_servers.port", "non-empty"),
    ],
)  # fmt: skip
def test_every_mistake_names_its_field(
    doc: dict[str, Any], path: list[Any], value: Any, field: str, words: str
) -> None:
    with pytest.raises(StackError) as e:
        parse_stack(_with(doc, path, value))
    assert e.value.path == field
    assert words in e.value.message
