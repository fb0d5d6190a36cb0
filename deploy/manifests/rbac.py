"""What the Kubernetes actuator may do, and nothing more (production overlay only).

``RULES`` is every API call ``scheduler/actuators/kubernetes.py`` makes, as
(API group, resource, verb); ``tests/deploy/test_manifests_rbac.py`` collects
the calls from the actuator's recorded-request tests and fails when the two
differ in either direction. Every rule is a Role in the namespace the actuator
acts in, so the scheduler cannot create or delete pods anywhere else; it touches
no node (pool membership is its own accounting, not a node label), so it has no
ClusterRole (a cluster-scoped rule would bring one back). The inference Deployments it scales are named.
The exporter's pod-resources client talks to the kubelet's local socket, not
the API server, and needs no rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deploy.manifests.objects import meta, obj
from deploy.manifests.scheduler import COMPONENT, SERVICE_ACCOUNT
from deploy.stack import Stack

RBAC_API = "rbac.authorization.k8s.io/v1"
CLUSTER_ROLE = "novabrain-scheduler-nodes"
ROLE = "novabrain-scheduler"
# The actuator's balloon pods (scale-up for the Cluster Autoscaler) use this class.
BALLOON_PRIORITY_CLASS = "novabrain-balloon"
BALLOON_PRIORITY = -10


@dataclass(frozen=True)
class Rule:
    group: str
    resource: str
    verbs: tuple[str, ...]
    cluster_scoped: bool = False


RULES: tuple[Rule, ...] = (
    Rule("batch", "jobs", ("list", "patch")),  # poll; suspend, resume on its pods' nodes
    Rule("", "pods", ("create", "delete", "list")),  # balloon pods
    Rule("", "pods/eviction", ("create",)),  # preempt an inference replica
    Rule("apps", "deployments/scale", ("get", "patch")),  # P0 growth and return
)


def _policy_rules(stack: Stack, cluster_scoped: bool) -> list[dict[str, Any]]:
    out = []
    for r in RULES:
        if r.cluster_scoped != cluster_scoped:
            continue
        rule: dict[str, Any] = {"apiGroups": [r.group], "resources": [r.resource]}
        if r.resource == "deployments/scale":
            names = sorted(set(stack.kubernetes.deployments.values()))
            if not names:
                continue  # an empty resourceNames would mean every Deployment
            rule["resourceNames"] = names
        rule["verbs"] = list(r.verbs)
        out.append(rule)
    return out


def _subject(stack: Stack) -> dict[str, str]:
    return {
        "kind": "ServiceAccount",
        "name": SERVICE_ACCOUNT,
        "namespace": stack.kubernetes.install_namespace,
    }


def objects(stack: Stack) -> list[dict[str, Any]]:
    workloads = stack.kubernetes.namespace
    cluster_rules = _policy_rules(stack, cluster_scoped=True)
    cluster_role = [
        obj(
            RBAC_API,
            "ClusterRole",
            meta(stack, CLUSTER_ROLE, COMPONENT, namespace=""),
            rules=cluster_rules,
        ),
        obj(
            RBAC_API,
            "ClusterRoleBinding",
            meta(stack, CLUSTER_ROLE, COMPONENT, namespace=""),
            roleRef={
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": CLUSTER_ROLE,
            },
            subjects=[_subject(stack)],
        ),
    ]
    return [
        *(cluster_role if cluster_rules else []),
        obj(
            RBAC_API,
            "Role",
            meta(stack, ROLE, COMPONENT, namespace=workloads),
            rules=_policy_rules(stack, cluster_scoped=False),
        ),
        obj(
            RBAC_API,
            "RoleBinding",
            meta(stack, ROLE, COMPONENT, namespace=workloads),
            roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
            subjects=[_subject(stack)],
        ),
        obj(
            "scheduling.k8s.io/v1",
            "PriorityClass",
            meta(stack, BALLOON_PRIORITY_CLASS, COMPONENT, namespace=""),
            value=BALLOON_PRIORITY,
            globalDefault=False,
            # A balloon never preempts anything; any real pod preempts it.
            preemptionPolicy="Never",
            description="novabrain placeholder pods that make the Cluster Autoscaler add a node",
        ),
    ]
