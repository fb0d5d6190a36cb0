"""Least privilege, proven: the scheduler's RBAC grants exactly the API calls the actuator makes.

The calls are not listed here: every test of the actuator's recorded-request
suite (``tests/scheduler/actuators/test_kubernetes_recorded.py``) is run with
its replayer recording each request, and each request is turned into the
(API group, resource, verb) the API server authorizes it as. A new call in the
actuator, with its recorded test, that no rule grants fails here; so does a rule
that no call uses. The GPU exporter's pod-resources client is checked the same
way against a recording gRPC server: it only ever talks to the kubelet's local
socket, so it needs no rule, and its pods get no API token at all.
"""

from __future__ import annotations

import importlib.util
import inspect
import sys
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from manifest_testkit import GENERATED, ROOT, kustomize_build

from deploy.manifests import exporter, rbac, scheduler
from deploy.stack import Stack
from exporters.gpu.podresources import KubeletPodResources
from scheduler.actuators import kubernetes as actuator

RECORDED = ROOT / "tests/scheduler/actuators/test_kubernetes_recorded.py"
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch"}


@dataclass(frozen=True)
class Call:
    group: str
    resource: str
    verb: str
    namespace: str | None  # None: cluster-scoped
    name: str | None


def authorized_as(method: str, url: str) -> Call:
    """The request attributes the API server's authorizer sees for an HTTP request."""
    parts = urlsplit(url)
    segs = [s for s in parts.path.split("/") if s]
    if segs[0] == "api":
        group, rest = "", segs[2:]
    else:
        assert segs[0] == "apis", url
        group, rest = segs[1], segs[3:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        namespace, rest = rest[1], rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else None
    if len(rest) > 2:
        resource = f"{resource}/{rest[2]}"
    if method == "GET":
        watch = dict(parse_qsl(parts.query)).get("watch") in ("true", "1")
        verb = "get" if name else ("watch" if watch else "list")
    elif method == "DELETE":
        verb = "delete" if name else "deletecollection"
    else:
        verb = _VERBS[method]
    return Call(group, resource, verb, namespace, name)


def test_request_attributes() -> None:
    assert authorized_as("PATCH", "http://h/api/v1/nodes/n1") == Call(
        "", "nodes", "patch", None, "n1"
    )
    assert authorized_as("GET", "http://h/apis/batch/v1/namespaces/x/jobs?labelSelector=a") == Call(
        "batch", "jobs", "list", "x", None
    )
    assert authorized_as("GET", "http://h/api/v1/namespaces/x/pods?watch=true").verb == "watch"
    assert authorized_as("POST", "http://h/api/v1/namespaces/x/pods/p/eviction") == Call(
        "", "pods/eviction", "create", "x", "p"
    )
    assert authorized_as("DELETE", "http://h/api/v1/namespaces/x/pods").verb == "deletecollection"


@pytest.fixture(scope="module")
def actuator_calls() -> set[Call]:
    """Run the actuator's recorded-request tests, recording every request they make."""
    spec = importlib.util.spec_from_file_location("_recorded_for_rbac", RECORDED)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    calls: set[Call] = set()
    replay = module.Replayer.request

    def recording(self: Any, method: str, url: str, **kw: Any) -> Any:
        calls.add(authorized_as(method, url))
        return replay(self, method, url, **kw)

    module.Replayer.request = recording
    tests = [f for n, f in vars(module).items() if n.startswith("test_") and callable(f)]
    assert tests
    for test in tests:
        # Run as pytest would: these tests take no fixtures (one that does must be
        # taught here, or its calls would go unchecked).
        assert not inspect.signature(test).parameters, f"{test.__name__} takes fixtures"
        test()
    return calls


@pytest.fixture(scope="module")
def production() -> list[dict[str, Any]]:
    return kustomize_build(GENERATED / "overlays/production")


def _granted(role: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {
        (g, r, v)
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
        for v in rule["verbs"]
    }


def _one(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    (o,) = [o for o in objects if o["kind"] == kind]
    return o


def test_rbac_grants_exactly_the_calls_the_actuator_makes(
    actuator_calls: set[Call], production: list[dict[str, Any]]
) -> None:
    role = _one(production, "Role")
    cluster_roles = [o for o in production if o["kind"] == "ClusterRole"]
    cluster_granted = set().union(*(_granted(c) for c in cluster_roles))
    called = {(c.group, c.resource, c.verb) for c in actuator_calls}
    granted = cluster_granted | _granted(role)
    assert called - granted == set(), "calls no rule grants"
    assert granted - called == set(), "rules no call uses"
    # Cluster-scoped calls in a ClusterRole, namespaced ones in the Role only. The
    # actuator touches no node (pool membership is the scheduler's accounting): no
    # cluster-scoped call, so no ClusterRole at all.
    cluster = {(c.group, c.resource, c.verb) for c in actuator_calls if c.namespace is None}
    assert cluster_granted == cluster == set()
    assert not cluster_roles and not [o for o in production if o["kind"] == "ClusterRoleBinding"]
    assert _granted(role) == called - cluster


def test_no_wildcard_no_secrets_no_escalation(production: list[dict[str, Any]]) -> None:
    for o in production:
        for rule in o.get("rules", []):
            values = [*rule["apiGroups"], *rule["resources"], *rule["verbs"]]
            assert "*" not in values, o["metadata"]["name"]
            assert not {"secrets", "serviceaccounts/token"} & set(rule["resources"])
            assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])


def test_scaled_deployments_are_named(actuator_calls: set[Call], stack: Stack) -> None:
    role = next(r for r in rbac.objects(stack) if r["kind"] == "Role")
    (scale,) = [r for r in role["rules"] if r["resources"] == ["deployments/scale"]]
    scaled = {c.name for c in actuator_calls if c.resource == "deployments/scale"}
    assert scaled <= set(scale["resourceNames"]) == set(stack.kubernetes.deployments.values())


def test_the_role_is_where_the_actuator_acts_and_bound_to_the_scheduler(
    production: list[dict[str, Any]], stack: Stack
) -> None:
    k = stack.kubernetes
    role, binding = _one(production, "Role"), _one(production, "RoleBinding")
    assert role["metadata"]["namespace"] == binding["metadata"]["namespace"] == k.namespace
    for b in (binding,):
        assert b["subjects"] == [
            {
                "kind": "ServiceAccount",
                "name": scheduler.SERVICE_ACCOUNT,
                "namespace": k.install_namespace,
            }
        ]
    sts = _one(production, "StatefulSet")["spec"]["template"]["spec"]
    assert sts["serviceAccountName"] == scheduler.SERVICE_ACCOUNT
    assert sts["automountServiceAccountToken"] is True  # production only: demo mounts none


def test_the_balloon_priority_class_is_the_actuators(production: list[dict[str, Any]]) -> None:
    pc = _one(production, "PriorityClass")
    assert pc["metadata"]["name"] == actuator.BALLOON_PRIORITY_CLASS
    assert pc["value"] < 0 and pc["preemptionPolicy"] == "Never"


# --------------------------------------------------------------------------- pod-resources


@pytest.fixture
def recording_kubelet(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    import grpc

    sock = tmp_path / "kubelet.sock"
    methods: list[str] = []

    class Recorder(grpc.GenericRpcHandler):  # type: ignore[misc]
        def service(self, details: Any) -> Any:
            methods.append(details.method)
            return grpc.unary_unary_rpc_method_handler(
                lambda request, context: b"",
                request_deserializer=lambda b: b,
                response_serializer=lambda b: b,
            )

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    server.add_generic_rpc_handlers((Recorder(),))
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    try:
        yield sock, methods
    finally:
        server.stop(grace=None)


def test_the_pod_resources_client_needs_no_api_rule(
    recording_kubelet: tuple[Path, list[str]], production: list[dict[str, Any]]
) -> None:
    sock, methods = recording_kubelet
    client = KubeletPodResources(sock)
    try:
        assert client.gpu_pods() == {}
    finally:
        client.close()
    # Its one call is the kubelet's local List, over the node's unix socket.
    assert methods == ["/v1.PodResourcesLister/List"]
    ds = _one(production, "DaemonSet")["spec"]["template"]["spec"]
    sa = next(
        o
        for o in production
        if o["kind"] == "ServiceAccount" and o["metadata"]["name"] == exporter.SERVICE_ACCOUNT
    )
    assert ds["serviceAccountName"] == exporter.SERVICE_ACCOUNT
    assert (
        ds["automountServiceAccountToken"] is False and sa["automountServiceAccountToken"] is False
    )
    assert not [
        b
        for b in production
        if b["kind"].endswith("Binding")
        for s in b["subjects"]
        if s["name"] == exporter.SERVICE_ACCOUNT
    ]
