"""The Kubernetes actuator against recorded API request/response pairs.

The official client runs for real down to its HTTP layer; the urllib3 pool
manager is replaced by a replayer that checks each request (verb, path, query,
JSON body) against the recording, in order, and answers with the recorded
response. The pairs were written from the Kubernetes API reference (no API
server can run here): this verifies what we send and that we parse what the
server answers, not what a server would do with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from kubernetes import client as k8s

from scheduler.actuators.base import FeedbackKind
from scheduler.actuators.kubernetes import KubernetesActuator
from scheduler.core.errors import ActuatorError
from scheduler.core.model import Action, Decision, JobKind, JobState, JobView, Result

NS = "novabrain"


@dataclass
class Exchange:
    method: str
    path: str
    body: Any = None
    query: dict[str, str] = field(default_factory=dict)
    status: int = 200
    response: Any = field(default_factory=dict)


class _Response:
    def __init__(self, status: int, data: Any) -> None:
        self.status = status
        self.reason = "OK" if status < 400 else "Error"
        self.data = json.dumps(data).encode()
        self.headers = {"content-type": "application/json"}


class Replayer:
    def __init__(self, recording: list[Exchange]) -> None:
        self.recording = list(recording)
        self.seen: list[tuple[str, str]] = []

    def request(self, method: str, url: str, **kw: Any) -> _Response:
        assert self.recording, f"unexpected request {method} {url}"
        want = self.recording.pop(0)
        parts = urlsplit(url)
        assert (method, parts.path) == (want.method, want.path)
        assert dict(parse_qsl(parts.query)) == want.query
        body = kw.get("body")
        sent = json.loads(body) if body else None
        assert sent == want.body, json.dumps(sent, indent=1)
        self.seen.append((method, parts.path))
        return _Response(want.status, want.response)


def actuator(
    recording: list[Exchange], gpu_nodes: dict[str, str] | None = None
) -> tuple[KubernetesActuator, Replayer]:
    api = k8s.ApiClient(k8s.Configuration(host="http://127.0.0.1:1"))
    replayer = Replayer(recording)
    api.rest_client.pool_manager = replayer
    act = KubernetesActuator(
        api,
        namespace=NS,
        gpu_nodes=gpu_nodes or {"GPU-a": "gpu-node-4", "GPU-b": "gpu-node-4"},
        deployments={"p0-risk": "risk-scorer"},
        gpus_per_node=8,
        clock=lambda: 1_800_000_000.0,
    )
    return act, replayer


def view(
    job_id: str, kind: JobKind, *, pool: str = "p2-batch", gpus: int = 2, elastic: bool = False
) -> JobView:
    return JobView(
        id=job_id,
        pool=pool,
        gpus=gpus,
        kind=kind,
        state=JobState.RUNNING,
        preemptible=True,
        checkpointable=True,
        grace_seconds=30.0,
        duration_seconds=None,
        submitted_at=0.0,
        queued_at=0.0,
        started_at=0.0,
        last_checkpoint=None,
        progress_seconds=0.0,
        checkpoint_progress_seconds=0.0,
        resume_count=0,
        preemptions=(),
        gpu_seconds_lost=0.0,
        gpu_ids=("GPU-a", "GPU-b"),
        held_gpu_ids=(),
        pending_victims=(),
        preempted_for=None,
        deadline=None,
        elastic=elastic,
        reservation=None,
    )


def decision(action: Action, pool: str, **kw: Any) -> Decision:
    return Decision(
        id="d-1",
        at=0.0,
        action=action,
        pool=pool,
        result=kw.pop("result", Result.OK),
        reason="",
        **kw,
    )


JOB_PATH = f"/apis/batch/v1/namespaces/{NS}/jobs/train-7"
SCALE_PATH = f"/apis/apps/v1/namespaces/{NS}/deployments/risk-scorer/scale"


def scale(replicas: int) -> dict[str, Any]:
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {"name": "risk-scorer", "namespace": NS},
        "spec": {"replicas": replicas},
    }


def test_preempting_a_training_job_suspends_it_never_deletes() -> None:
    act, rep = actuator(
        [
            Exchange(
                "PATCH",
                JOB_PATH,
                {"spec": {"suspend": True}},
                response={
                    "metadata": {"name": "train-7"},
                    "spec": {"suspend": True, "template": {}},
                },
            ),
        ]
    )
    act.apply(
        decision(Action.PREEMPT, "p1-train", job="train-7", grace_seconds=30),
        view("train-7", JobKind.TRAINING),
    )
    assert rep.seen == [("PATCH", JOB_PATH)] and not rep.recording


def test_preempting_an_inference_replica_evicts_it_with_its_grace() -> None:
    path = f"/api/v1/namespaces/{NS}/pods/p2-batch-replica-1/eviction"
    act, rep = actuator(
        [
            Exchange(
                "POST",
                path,
                {
                    "metadata": {"name": "p2-batch-replica-1", "namespace": NS},
                    "deleteOptions": {"gracePeriodSeconds": 30},
                },
                status=201,
                response={"kind": "Status", "status": "Success"},
            ),
        ]
    )
    act.apply(
        decision(Action.PREEMPT, "p2-batch", job="p2-batch-replica-1", grace_seconds=30),
        view("p2-batch-replica-1", JobKind.INFERENCE),
    )
    assert not rep.recording


def test_p0_growth_raises_the_deployment_replicas_and_touches_no_node() -> None:
    act, rep = actuator(
        [
            Exchange("GET", SCALE_PATH, response=scale(8)),
            Exchange("PATCH", SCALE_PATH, {"spec": {"replicas": 10}}, response=scale(10)),
        ]
    )
    burst = view("p0-risk/burst-17", JobKind.INFERENCE, pool="p0-risk", elastic=True)
    act.apply(
        decision(Action.PLACE, "p0-risk", job=burst.id, gpus=2, gpu_ids=("GPU-a", "GPU-b")), burst
    )
    assert not rep.recording
    # And back down when the borrowed GPUs are returned.
    act2, rep2 = actuator(
        [
            Exchange("GET", SCALE_PATH, response=scale(10)),
            Exchange("PATCH", SCALE_PATH, {"spec": {"replicas": 8}}, response=scale(8)),
        ]
    )
    act2.apply(decision(Action.RETURN, "p0-risk", job=burst.id, gpus=2), None)
    assert not rep2.recording


def start_patch(nodes: list[str], placement: list[dict[str, Any]]) -> dict[str, Any]:
    """The one PATCH that resumes a Job with its pods held to their nodes."""
    return {
        "metadata": {
            "annotations": {"novabrain.io/placement": json.dumps(placement, sort_keys=True)}
        },
        "spec": {
            "suspend": False,
            "parallelism": len(placement),
            "template": {
                "spec": {
                    "affinity": {
                        "nodeAffinity": {
                            "requiredDuringSchedulingIgnoredDuringExecution": {
                                "nodeSelectorTerms": [
                                    {
                                        "matchExpressions": [
                                            {
                                                "key": "kubernetes.io/hostname",
                                                "operator": "In",
                                                "values": nodes,
                                            }
                                        ]
                                    }
                                ]
                            }
                        }
                    }
                }
            },
        },
    }


def test_resuming_a_job_unsuspends_it_on_the_node_its_pod_was_given() -> None:
    placement = [{"pod": 0, "node": "gpu-node-4", "gpus": ["GPU-a", "GPU-b"]}]
    act, rep = actuator([Exchange("PATCH", JOB_PATH, start_patch(["gpu-node-4"], placement))])
    act.apply(
        decision(Action.PLACE, "p1-train", job="train-7", gpus=2, gpu_ids=("GPU-a", "GPU-b")),
        view("train-7", JobKind.TRAINING, pool="p1-train"),
    )
    assert not rep.recording


def test_a_multi_pod_job_gets_each_pods_node() -> None:
    gpu_nodes = {"GPU-a": "gpu-node-4", "GPU-b": "gpu-node-4", "GPU-c": "gpu-node-5"}
    gpu_nodes |= {"GPU-d": "gpu-node-5"}
    placement = [
        {"pod": 0, "node": "gpu-node-5", "gpus": ["GPU-c", "GPU-d"]},
        {"pod": 1, "node": "gpu-node-4", "gpus": ["GPU-a", "GPU-b"]},
    ]
    act, rep = actuator(
        [Exchange("PATCH", JOB_PATH, start_patch(["gpu-node-4", "gpu-node-5"], placement))],
        gpu_nodes=gpu_nodes,
    )
    job = replace(view("train-7", JobKind.TRAINING, pool="p1-train", gpus=4), pods=(2, 2))
    ids = ("GPU-c", "GPU-d", "GPU-a", "GPU-b")
    act.apply(decision(Action.PLACE, "p1-train", job="train-7", gpus=4, gpu_ids=ids), job)
    assert not rep.recording
    # A placement Kubernetes cannot run (a pod across two nodes) is refused, not sent.
    act2, rep2 = actuator([], gpu_nodes=gpu_nodes)
    spread = ("GPU-a", "GPU-c", "GPU-b", "GPU-d")
    with pytest.raises(ActuatorError, match="not on one known node"):
        act2.apply(decision(Action.PLACE, "p1-train", job="train-7", gpus=4, gpu_ids=spread), job)
    assert rep2.seen == []


def test_scale_up_creates_a_negative_priority_balloon_and_scale_down_removes_it() -> None:
    pods = f"/api/v1/namespaces/{NS}/pods"
    name = "balloon-p1-train-1800000000000-0"
    act, rep = actuator(
        [
            Exchange(
                "POST",
                pods,
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": name,
                        "namespace": NS,
                        "labels": {
                            "novabrain.io/managed": "true",
                            "novabrain.io/balloon": "p1-train",
                        },
                    },
                    "spec": {
                        "priorityClassName": "novabrain-balloon",
                        "terminationGracePeriodSeconds": 0,
                        "containers": [
                            {
                                "name": "balloon",
                                "image": "registry.k8s.io/pause:3.9",
                                "resources": {
                                    "requests": {"nvidia.com/gpu": "8"},
                                    "limits": {"nvidia.com/gpu": "8"},
                                },
                            }
                        ],
                    },
                },
                status=201,
                response={"metadata": {"name": name}},
            ),
            Exchange(
                "GET",
                pods,
                query={"labelSelector": "novabrain.io/balloon=p1-train"},
                response={"items": [{"metadata": {"name": name}}]},
            ),
            Exchange("DELETE", f"{pods}/{name}", response={"metadata": {"name": name}}),
        ]
    )
    act.apply(decision(Action.SCALE_UP, "p1-train", gpus=8), None)
    act.apply(decision(Action.SCALE_DOWN, "p1-train", nodes=("gpu-node-9",)), None)
    assert not rep.recording


def test_poll_reports_checkpoint_annotations_and_acks_suspended_jobs_once_idle() -> None:
    listing = {
        "items": [
            {
                "metadata": {
                    "name": "train-7",
                    "annotations": {
                        "novabrain.io/job-id": "train-7",
                        "novabrain.io/last-checkpoint": "1799999990.5",
                    },
                },
                "spec": {"suspend": True, "template": {}},
                "status": {"active": 0},
            },
            {
                "metadata": {"name": "train-8"},
                "spec": {"suspend": True, "template": {}},
                "status": {"active": 2},
            },
        ]
    }
    path = f"/apis/batch/v1/namespaces/{NS}/jobs"
    query = {"labelSelector": "novabrain.io/managed=true"}
    act, rep = actuator(
        [
            Exchange("GET", path, query=query, response=listing),
            Exchange("GET", path, query=query, response=listing),
        ]
    )
    fb = act.poll(0.0)
    assert [(f.kind, f.job, f.at) for f in fb] == [
        (FeedbackKind.CHECKPOINT, "train-7", 1799999990.5),
        (FeedbackKind.ACK, "train-7", None),
    ]
    # The same checkpoint is reported once; train-8 still has pods running.
    assert [f.kind for f in act.poll(0.0)] == [FeedbackKind.ACK]
    assert not rep.recording


def test_api_errors_become_actuator_errors_and_a_gone_victim_is_fine() -> None:
    act, _ = actuator(
        [
            Exchange(
                "PATCH",
                JOB_PATH,
                {"spec": {"suspend": True}},
                status=404,
                response={"kind": "Status", "code": 404},
            ),
            Exchange(
                "PATCH",
                JOB_PATH,
                {"spec": {"suspend": False}},
                status=403,
                response={"kind": "Status", "code": 403},
            ),
        ]
    )
    act.apply(
        decision(Action.PREEMPT, "p1-train", job="train-7"), view("train-7", JobKind.TRAINING)
    )
    with pytest.raises(ActuatorError):
        act.apply(
            decision(Action.PLACE, "p1-train", job="train-7", gpus=2),
            view("train-7", JobKind.TRAINING, pool="p1-train"),
        )


def test_dry_run_decisions_send_nothing() -> None:
    act, rep = actuator([])
    act.apply(
        decision(Action.PREEMPT, "p1-train", job="train-7", dry_run=True, result=Result.DRY_RUN),
        view("train-7", JobKind.TRAINING),
    )
    assert rep.seen == []
