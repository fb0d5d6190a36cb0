"""`novabrain scheduler --actuator kubernetes` builds its actuator from the stack's kubernetes section."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client as k8s
from test_kubernetes_recorded import Exchange, Replayer, decision, scale, view

from deploy.stack import load_stack
from scheduler.actuators.kubernetes import from_stack
from scheduler.core.model import Action, JobKind

ROOT = Path(__file__).resolve().parents[3]


def test_p0_growth_acts_on_the_stacks_namespace_and_deployment_in_replicas() -> None:
    stack = load_stack(ROOT / "deploy/stack.yaml")
    ns, deployment = stack.kubernetes.namespace, stack.kubernetes.deployments["p0-risk"]
    node = stack.gpus()[-1].node
    uuids = tuple(g.uuid for g in stack.gpus() if g.node == node)
    per = next(m.serving.gpus_per_replica for m in stack.models if m.serving is not None)
    scale_path = f"/apis/apps/v1/namespaces/{ns}/deployments/{deployment}/scale"
    api = k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:1"))
    grant = len(uuids)
    replayer = Replayer(
        [
            # A grant of whole replicas of the stack's model: 8 GPUs, 4 per replica.
            Exchange("GET", scale_path, response=scale(8)),
            Exchange(
                "PATCH", scale_path, {"spec": {"replicas": 8 + grant // per}}, response=scale(10)
            ),
        ]
    )
    api.rest_client.pool_manager = replayer
    act = from_stack(stack, clock=lambda: 1_800_000_000.0, api_client=api)
    burst = view("p0-risk/burst-1", JobKind.INFERENCE, pool="p0-risk", elastic=True)
    act.apply(decision(Action.PLACE, "p0-risk", job=burst.id, gpus=grant, gpu_ids=uuids), burst)
    assert not replayer.recording
