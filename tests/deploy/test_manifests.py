"""What the generated manifests say: the same rules, routes and dashboards, the pods as designed."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from manifest_testkit import GENERATED, ROOT, kustomize_build

from alerts.alertmanager import route_cases
from alerts.prometheus_config import JOBS, MODEL_SERVER_JOB
from deploy.cli import build_parser
from deploy.manifests import exporter, scheduler
from deploy.manifests.alertmanager import alert_names, matcher
from deploy.manifests.kustomize import DEMO_NODE_LABEL, layout
from deploy.manifests.objects import IMAGE_UID, STACK_HASH_ANNOTATION
from deploy.stack import Stack, load_stack
from exporters.gpu.podresources import DEFAULT_SOCKET

STACK_TEXT = (ROOT / "deploy/stack.yaml").read_text()


@pytest.fixture(scope="module")
def builds() -> dict[str, list[dict[str, Any]]]:
    return {o: kustomize_build(GENERATED / "overlays" / o) for o in ("demo", "production")}


def _get(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    (o,) = [o for o in objects if o["kind"] == kind and name in (None, o["metadata"]["name"])]
    return o


def _pod(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    spec: dict[str, Any] = _get(objects, kind)["spec"]["template"]["spec"]
    return spec


def _base(stack: Stack, text: str = STACK_TEXT) -> list[dict[str, Any]]:
    return [
        d
        for rel, d in layout(stack, text).items()
        if rel.startswith("base/") and "kustom" not in rel
    ]


# --------------------------------------------------------------------------- rules and routes


def _rules(builds: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in builds["production"] if o["kind"] == "PrometheusRule"}


def test_prometheus_rules_are_the_groups_promtool_tests(
    builds: dict[str, list[dict[str, Any]]],
) -> None:
    rules = _rules(builds)
    files = sorted((ROOT / "deploy/generated/rules").glob("*.yml"))
    assert len(rules) == len(files)
    for f in files:
        committed = yaml.safe_load(f.read_bytes())["groups"]
        assert rules["novabrain-" + f.name.split(".", 1)[0]]["spec"]["groups"] == committed, f.name


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_promtool_accepts_each_prometheus_rule(
    builds: dict[str, list[dict[str, Any]]], tmp_path: Path
) -> None:
    for name, rule in _rules(builds).items():
        out = tmp_path / f"{name}.yml"
        out.write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))
        res = subprocess.run(
            ["promtool", "check", "rules", str(out)], capture_output=True, text=True
        )
        assert res.returncode == 0, res.stdout + res.stderr


def _quote(m: dict[str, str]) -> str:
    value = m["value"].replace("\\", "\\\\").replace('"', '\\"')
    return f'{m["name"]}{m["matchType"]}"{value}"'


def _native_route(r: dict[str, Any]) -> dict[str, Any]:
    keys = {"groupBy": "group_by", "groupWait": "group_wait", "groupInterval": "group_interval"}
    keys |= {"repeatInterval": "repeat_interval", "receiver": "receiver", "continue": "continue"}
    out = {keys[k]: v for k, v in r.items() if k in keys}
    out["matchers"] = [_quote(m) for m in r.get("matchers", [])]
    out["routes"] = [_native_route(c) for c in r.get("routes", [])]
    return out


def _as_the_operator_renders_it(amc: dict[str, Any]) -> dict[str, Any]:
    """alertmanager.yml as the operator nests an AlertmanagerConfig (matcher strategy None)."""
    receivers = [{"name": "outside"}]
    for r in amc["spec"]["receivers"]:
        hooks = []
        for w in r.get("webhookConfigs", []):
            hook = {"url": w["url"], "send_resolved": w["sendResolved"]}
            if "httpConfig" in w:
                hook["http_config"] = {"authorization": {"credentials": "from-the-secret"}}
            hooks.append(hook)
        receivers.append({"name": r["name"], **({"webhook_configs": hooks} if hooks else {})})
    ours = {**_native_route(amc["spec"]["route"]), "continue": True}
    return {"route": {"receiver": "outside", "routes": [ours]}, "receivers": receivers}


@pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed")
def test_alertmanager_config_routes_every_case_as_alertmanager_yml_does(
    builds: dict[str, list[dict[str, Any]]], stack: Stack, tmp_path: Path
) -> None:
    config = tmp_path / "alertmanager.yml"
    config.write_text(
        yaml.safe_dump(
            _as_the_operator_renders_it(_get(builds["production"], "AlertmanagerConfig"))
        )
    )
    ours = alert_names(stack)[0]
    cases = [(dict(c.labels, alertname=ours), c.receivers) for c in route_cases(stack)]
    # The cluster's other alerts never reach our receivers.
    cases.append(
        ({"alertname": "KubePodCrashLooping", "severity": "critical", "team": "risk"}, ("outside",))
    )
    for labels, receivers in cases:
        res = subprocess.run(
            [
                "amtool", "config", "routes", "test", f"--config.file={config}",
                f"--verify.receivers={','.join(receivers)}", *(f"{k}={v}" for k, v in labels.items()),
            ],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert res.returncode == 0, f"{labels}: {res.stdout}{res.stderr}"


def test_the_webhook_credential_comes_from_the_secret(
    builds: dict[str, list[dict[str, Any]]], stack: Stack
) -> None:
    amc = _get(builds["production"], "AlertmanagerConfig")
    (hook,) = next(r for r in amc["spec"]["receivers"] if r["name"] == "novabrain-scheduler")[
        "webhookConfigs"
    ]
    assert hook["httpConfig"]["authorization"]["credentials"] == {
        "name": scheduler.WEBHOOK_SECRET,
        "key": scheduler.WEBHOOK_SECRET_KEY,
    }
    ns = stack.kubernetes.install_namespace
    assert (
        hook["url"] == f"http://novabrain-scheduler.{ns}.svc:{stack.ports.scheduler}/api/v1/alerts"
    )
    assert amc["metadata"]["namespace"] == ns  # beside the Secret it refers to
    # No plaintext credential is ever generated.
    assert not [o for o in builds["production"] if o["kind"] == "Secret"]


def test_matchers_convert_as_alertmanager_parses_them() -> None:
    assert matcher('pool=~"p0\\.risk|x"') == {
        "name": "pool",
        "matchType": "=~",
        "value": "p0\\.risk|x",
    }
    assert matcher('a!="say \\"hi\\""') == {"name": "a", "matchType": "!=", "value": 'say "hi"'}
    assert matcher('b="c\\\\d"')["value"] == "c\\d"


# --------------------------------------------------------------------------- scheduler


def test_scheduler_is_one_writer_with_its_state_on_a_volume(
    builds: dict[str, list[dict[str, Any]]], stack: Stack
) -> None:
    sts = _get(builds["production"], "StatefulSet")
    assert sts["spec"]["replicas"] == 1
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert claim["spec"]["resources"]["requests"]["storage"] == stack.kubernetes.scheduler.storage
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    (c,) = sts["spec"]["template"]["spec"]["containers"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert f"--state-dir={mounts[claim['metadata']['name']]}" in c["args"]
    pdb = _get(builds["production"], "PodDisruptionBudget")
    assert pdb["spec"]["selector"] == sts["spec"]["selector"] and pdb["spec"]["maxUnavailable"] == 0


def test_the_pods_read_the_stack_file_itself_and_roll_when_it_changes(
    builds: dict[str, list[dict[str, Any]]], stack: Stack
) -> None:
    cm = _get(builds["production"], "ConfigMap", "novabrain-stack")
    assert cm["data"]["stack.yaml"] == STACK_TEXT
    digest = hashlib.sha256(STACK_TEXT.encode()).hexdigest()
    for kind in ("StatefulSet", "DaemonSet"):
        template = _get(builds["production"], kind)["spec"]["template"]
        assert template["metadata"]["annotations"][STACK_HASH_ANNOTATION] == digest
    changed = _base(stack, STACK_TEXT + "# edited\n")
    sts = next(o for o in changed if o["kind"] == "StatefulSet")
    assert sts["spec"]["template"]["metadata"]["annotations"][STACK_HASH_ANNOTATION] != digest


def test_network_policy_admits_prometheus_alertmanager_and_the_api_clients_only(
    builds: dict[str, list[dict[str, Any]]], stack: Stack
) -> None:
    np = _get(builds["production"], "NetworkPolicy", scheduler.NAME)
    (rule,) = np["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": stack.ports.scheduler}]
    sources = {
        (
            p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
            tuple(p["podSelector"]["matchLabels"].items()),
        )
        for p in rule["from"]
    }
    mon = stack.kubernetes.monitoring
    want = {
        (mon.namespace, tuple(mon.prometheus_pods.items())),
        (mon.namespace, tuple(mon.alertmanager_pods.items())),
        *(
            (c.namespace, tuple(c.pod_labels.items()))
            for c in stack.kubernetes.scheduler.api_clients
        ),
    }
    assert sources == want and len(rule["from"]) == len(want)
    assert (
        np["spec"]["podSelector"] == _get(builds["production"], "StatefulSet")["spec"]["selector"]
    )


# --------------------------------------------------------------------------- exporter


def test_exporter_runs_on_the_gpu_nodes_with_the_kubelet_socket_read_only(
    builds: dict[str, list[dict[str, Any]]], stack: Stack
) -> None:
    pod = _pod(builds["production"], "DaemonSet")
    nodes = stack.kubernetes.gpu_nodes
    assert pod["nodeSelector"] == nodes.node_selector
    assert pod["runtimeClassName"] == nodes.runtime_class
    assert "hostPID" not in pod  # /proc attribution is off in the committed stack
    (c,) = pod["containers"]
    (mount,) = [m for m in c["volumeMounts"] if m["name"] == exporter.POD_RESOURCES_VOLUME]
    assert mount == {
        "name": "pod-resources",
        "mountPath": str(DEFAULT_SOCKET.parent),
        "readOnly": True,
    }
    (vol,) = [v for v in pod["volumes"] if v["name"] == exporter.POD_RESOURCES_VOLUME]
    assert vol["hostPath"]["path"] == nodes.pod_resources_dir
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["readinessProbe"]["httpGet"]["path"] == "/metrics"
    assert c["resources"] == {
        "requests": dict(nodes.resources.requests),
        "limits": dict(nodes.resources.limits),
    }


def test_host_pid_only_with_proc_attribution(stack: Stack) -> None:
    k = stack.kubernetes
    on = replace(
        stack, kubernetes=replace(k, gpu_nodes=replace(k.gpu_nodes, proc_attribution=True))
    )
    ds = next(o for o in _base(on) if o["kind"] == "DaemonSet")
    assert ds["spec"]["template"]["spec"]["hostPID"] is True
    demo = layout(on, STACK_TEXT)["overlays/demo/kustomization.yaml"]
    assert "/spec/template/spec/hostPID" in str(demo["patches"])  # the demo drops it again


def test_targets_keep_the_job_names_the_rules_expect(
    builds: dict[str, list[dict[str, Any]]],
) -> None:
    objs = builds["production"]
    monitors = {o["metadata"]["name"]: o for o in objs if o["kind"] == "ServiceMonitor"}
    assert set(monitors) == set(JOBS)
    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    for job in set(JOBS) - {MODEL_SERVER_JOB}:
        # The operator names a ServiceMonitor's job after the Service it selects.
        assert monitors[job]["spec"]["selector"]["matchLabels"] == services[job]["spec"]["selector"]
    (endpoint,) = monitors[MODEL_SERVER_JOB]["spec"]["endpoints"]
    assert {"action": "replace", "targetLabel": "job", "replacement": MODEL_SERVER_JOB} in endpoint[
        "relabelings"
    ]


# --------------------------------------------------------------------------- dashboards, overlays, pods


def test_dashboards_are_the_committed_json_for_the_sidecar(
    builds: dict[str, list[dict[str, Any]]], stack: Stack
) -> None:
    maps = [
        o
        for o in builds["production"]
        if o["kind"] == "ConfigMap" and "grafana_dashboard" in o["metadata"]["labels"]
    ]
    files = sorted((ROOT / "deploy/generated/dashboards").glob("*.json"))
    assert len(maps) == len(files)
    mon = stack.kubernetes.monitoring
    for m in maps:
        assert m["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert m["metadata"]["annotations"] == {mon.folder_annotation: stack.grafana.folder}
        assert m["metadata"]["namespace"] == mon.dashboards_namespace
        ((name, text),) = m["data"].items()
        assert text == (ROOT / "deploy/generated/dashboards" / name).read_text()


def test_overlays_differ_in_backend_actuator_and_gpu_plumbing(
    builds: dict[str, list[dict[str, Any]]],
) -> None:
    prod, demo = builds["production"], builds["demo"]
    assert "--actuator=kubernetes" in _pod(prod, "StatefulSet")["containers"][0]["args"]
    assert "--actuator=simulated" in _pod(demo, "StatefulSet")["containers"][0]["args"]
    assert "--backend=nvml" in _pod(prod, "DaemonSet")["containers"][0]["args"]
    demo_pod = _pod(demo, "DaemonSet")
    assert "--backend=sim" in demo_pod["containers"][0]["args"]
    assert "runtimeClassName" not in demo_pod and "tolerations" not in demo_pod
    assert demo_pod["nodeSelector"] == {DEMO_NODE_LABEL: "true"}
    assert all("hostPath" not in v for v in demo_pod["volumes"])
    assert all(m["name"] != "pod-resources" for m in demo_pod["containers"][0]["volumeMounts"])
    assert _pod(demo, "StatefulSet")["automountServiceAccountToken"] is False


@pytest.mark.parametrize("overlay", ["demo", "production"])
def test_every_container_runs_a_real_novabrain_command(
    overlay: str, builds: dict[str, list[dict[str, Any]]], stack: Stack
) -> None:
    for kind in ("StatefulSet", "DaemonSet"):
        (c,) = _pod(builds[overlay], kind)["containers"]
        assert c["image"] == stack.kubernetes.image
        args = [re.sub(r"\$\(\w+\)", "gpu-node-1", a) for a in c["args"]]
        build_parser().parse_args(args)  # exits 2 on a flag the CLI does not have


@pytest.mark.parametrize("overlay", ["demo", "production"])
def test_every_pod_is_locked_down(overlay: str, builds: dict[str, list[dict[str, Any]]]) -> None:
    for kind in ("StatefulSet", "DaemonSet"):
        pod = _pod(builds[overlay], kind)
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
            assert sc["capabilities"] == {"drop": ["ALL"]} and "privileged" not in sc
            assert "limits" in c["resources"]
    sched = _pod(builds[overlay], "StatefulSet")["securityContext"]
    assert sched["runAsNonRoot"] and sched["runAsUser"] == IMAGE_UID


def test_the_image_user_is_the_one_the_pods_run_as() -> None:
    text = (ROOT / "deploy/Dockerfile").read_text()
    (user,) = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user == f"{IMAGE_UID}:{IMAGE_UID}"


def test_generate_writes_the_committed_manifests(tmp_path: Path) -> None:
    """`novabrain generate`, as an operator runs it, writes the same tree as the committed one."""
    exe = Path(sys.executable).parent / "novabrain"
    res = subprocess.run(
        [str(exe), "generate", "--stack", "deploy/stack.yaml", "--out", str(tmp_path / "gen"),
         "--provisioning-out", str(tmp_path / "grafana")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    ours = {
        p.relative_to(tmp_path / "gen/kubernetes"): p.read_bytes()
        for p in (tmp_path / "gen/kubernetes").rglob("*.yaml")
    }
    committed = {p.relative_to(GENERATED): p.read_bytes() for p in GENERATED.rglob("*.yaml")}
    assert ours == committed
    assert load_stack(ROOT / "deploy/stack.yaml").kubernetes.version == "1.30"
