"""The Kubernetes actuator, on the official ``kubernetes`` client.

How decisions map onto the API (namespace ``namespace``; every object the
scheduler manages carries the label ``novabrain.io/managed=true``):

* placement, pod by pod: pool membership is the scheduler's own accounting (which
  pool claims which GPU), not a node label, so a node may hold GPUs of two pools.
  The core places each pod of a job on one node and lists the job's GPUs pod by
  pod (``JobView.pods``). ``place`` of a training/batch job un-suspends its Job in
  one PATCH that also sets, on the pod template, a required node affinity on
  ``kubernetes.io/hostname`` to the nodes its pods were given, ``parallelism`` to
  its pod count, and the annotation ``novabrain.io/placement`` (each pod's node and
  GPU uuids, for people and audits). Node affinity, not ``nodeName``: Kubernetes
  lets the scheduling directives of a suspended Job's pod template change (node
  affinity, node selector, tolerations; KEP-2926, GA in 1.27) but not
  ``nodeName``; and ``nodeName`` bypasses kube-scheduler, so a pod bound to a node
  whose GPUs a victim still holds in its grace period fails with
  ``OutOfnvidia.com/gpu`` instead of staying Pending until they free. What it
  does not pin: which of the job's nodes each of its pods lands on (one template
  for all pods); kube-scheduler fits each pod whole on one of them.
* preemption, never a bare delete: a training/batch Job (named after the job id)
  is suspended (``PATCH .spec.suspend=true``; the Job controller stops its pods
  with their ``terminationGracePeriodSeconds``); an inference replica pod is
  evicted through the Eviction API with the victim's grace period (PDBs apply).
* resumption: ``place`` of a training/batch job un-suspends its Job.
* P0 growth: ``place`` of a rebalance burst raises the replicas of the pool's
  inference Deployment by its pods (the model's GPUs per replica each); ``return``
  lowers them again. A Deployment's replicas share one template, so they are not
  pinned to the burst's nodes (changing it would roll every replica).
* scale-up: one balloon pod per node wanted, priority class
  ``novabrain-balloon`` (a negative priority), requesting a node's worth of
  GPUs, so the Cluster Autoscaler adds a node and any real pod preempts the
  balloon. Scale-down deletes one of
  the pool's balloon pods (a placeholder, not a workload).
* feedback (``poll``): managed Jobs map back to job ids by the annotation
  ``novabrain.io/job-id`` (else their name); a managed Job's annotation
  ``novabrain.io/last-checkpoint`` (epoch seconds) is reported as a checkpoint;
  a suspended Job with no active pods acknowledges its preemption.

What is verified here (tests/scheduler/actuators): the exact requests the
client library sends for each decision (verb, path, query and JSON body) and
that the responses are parsed, against request/response pairs written from the
Kubernetes API reference and replayed through the client's HTTP layer. What is
NOT verified, since no API server or cluster can run here: server-side
behaviour (admission, RBAC, the Job controller honouring ``suspend`` and
accepting the template's new node affinity, kube-scheduler fitting each pod on
one of the given nodes,
PodDisruptionBudgets turning an eviction into a 429, the Cluster Autoscaler
reacting to balloon pods), and the
``novabrain-balloon`` PriorityClass existing (it must be created at install).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from deploy.stack import Stack
from scheduler.actuators.base import Actuator, Feedback, FeedbackKind
from scheduler.actuators.errors import ActuatorConfigError
from scheduler.core.errors import ActuatorError
from scheduler.core.model import Action, Decision, JobKind, JobView, Result

HOSTNAME_LABEL = "kubernetes.io/hostname"
PLACEMENT_ANNOTATION = "novabrain.io/placement"
# The decisions ``_apply`` turns into API calls; the others (rebalance, reserve, ...) it skips.
_ACTED_ON = frozenset(
    {Action.PLACE, Action.PREEMPT, Action.RETURN, Action.CANCEL, Action.SCALE_UP, Action.SCALE_DOWN}
)
MANAGED_LABEL = "novabrain.io/managed"
CHECKPOINT_ANNOTATION = "novabrain.io/last-checkpoint"
BALLOON_PRIORITY_CLASS = "novabrain-balloon"
GPU_RESOURCE = "nvidia.com/gpu"


def k8s_name(job_id: str) -> str:
    """Job ids may contain '/', Kubernetes names may not."""
    return job_id.replace("/", "-").lower()


class KubernetesActuator(Actuator):
    def __init__(
        self,
        api_client: k8s.ApiClient,
        *,
        namespace: str,
        gpu_nodes: Mapping[str, str],  # GPU uuid -> node name
        deployments: Mapping[str, str],  # pool -> its inference Deployment
        gpus_per_node: int,
        replica_gpus: Mapping[str, int] | None = None,  # pool -> its model's GPUs per replica
        clock: Callable[[], float],
        balloon_image: str = "registry.k8s.io/pause:3.9",
    ) -> None:
        self._core = k8s.CoreV1Api(api_client)
        self._batch = k8s.BatchV1Api(api_client)
        self._apps = k8s.AppsV1Api(api_client)
        self._ns = namespace
        self._gpu_nodes = dict(gpu_nodes)
        self._deployments = dict(deployments)
        self._gpus_per_node = gpus_per_node
        self._replica_gpus = dict(replica_gpus or {})
        self._clock = clock
        self._balloon_image = balloon_image
        self._reported: dict[str, float] = {}

    # ------------------------------------------------------------------ decisions

    def acts_on(self, decision: Decision) -> bool:
        return not decision.dry_run and decision.action in _ACTED_ON

    def apply(self, decision: Decision, job: JobView | None) -> None:
        if decision.dry_run:
            return
        try:
            self._apply(decision, job)
        except ApiException as e:
            if e.status == 404 and decision.action in (Action.PREEMPT, Action.CANCEL):
                return  # already gone: the decision's effect holds
            raise ActuatorError(
                f"{decision.action} {decision.job or decision.pool}: {e.status} {e.reason}"
            ) from e

    def _apply(self, d: Decision, job: JobView | None) -> None:
        if d.action == Action.PLACE and job is not None:
            if job.elastic:
                self._scale_deployment(d.pool, self._replicas(d.pool, d.gpus))
            elif job.kind in (JobKind.TRAINING, JobKind.BATCH):
                self._start(job.id, self.pod_nodes(job, d.gpu_ids))
        elif d.action == Action.PREEMPT and job is not None:
            if job.kind in (JobKind.TRAINING, JobKind.BATCH):
                self._suspend(job.id, True)
            elif job.elastic:
                self._scale_deployment(job.pool, -self._replicas(job.pool, job.gpus))
            elif job.kind is JobKind.INFERENCE:
                self._evict(job.id, d.grace_seconds)
        elif d.action == Action.RETURN and d.gpus:
            self._scale_deployment(d.pool, -self._replicas(d.pool, d.gpus))
        elif (
            d.action == Action.CANCEL
            and job is not None
            and job.kind in (JobKind.TRAINING, JobKind.BATCH)
        ):
            self._suspend(job.id, True)
        elif d.action == Action.SCALE_UP and d.result == Result.OK:
            self.scale_up(d.pool, max(1, d.gpus // self._gpus_per_node), d.correlation_id)
        elif d.action == Action.SCALE_DOWN and d.result == Result.OK:
            for node in d.nodes:
                self.scale_down(d.pool, node, d.correlation_id)

    def _replicas(self, pool: str, gpus: int) -> int:
        """Inference replicas (pods) of ``pool`` that ``gpus`` GPUs make."""
        return max(1, gpus // self._replica_gpus.get(pool, 1))

    def pod_nodes(self, job: JobView, gpu_ids: Sequence[str]) -> list[tuple[str, tuple[str, ...]]]:
        """(node, GPU uuids) of each of ``job``'s pods: ``gpu_ids`` lists them pod by pod."""
        out = []
        at = 0
        for size in job.pods or (len(gpu_ids),):
            gpus = tuple(gpu_ids[at : at + size])
            at += size
            nodes = {self._gpu_nodes[u] for u in gpus if u in self._gpu_nodes}
            if len(nodes) != 1:
                raise ActuatorError(
                    f"{job.id}: a pod's GPUs {', '.join(gpus)} are not on one known node"
                )
            out.append((nodes.pop(), gpus))
        return out

    def _start(self, job_id: str, pods: list[tuple[str, tuple[str, ...]]]) -> None:
        """Un-suspend the Job with its pods held to the nodes the scheduler gave them."""
        nodes = sorted({node for node, _ in pods})
        placement = [{"pod": i, "node": n, "gpus": list(g)} for i, (n, g) in enumerate(pods)]
        affinity = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": HOSTNAME_LABEL, "operator": "In", "values": nodes}
                            ]
                        }
                    ]
                }
            }
        }
        self._batch.patch_namespaced_job(
            k8s_name(job_id),
            self._ns,
            {
                "metadata": {
                    "annotations": {PLACEMENT_ANNOTATION: json.dumps(placement, sort_keys=True)}
                },
                "spec": {
                    "suspend": False,
                    "parallelism": len(pods),
                    "template": {"spec": {"affinity": affinity}},
                },
            },
        )

    def _suspend(self, job_id: str, suspend: bool) -> None:
        self._batch.patch_namespaced_job(k8s_name(job_id), self._ns, {"spec": {"suspend": suspend}})

    def _evict(self, job_id: str, grace: float) -> None:
        name = k8s_name(job_id)
        body = k8s.V1Eviction(
            metadata=k8s.V1ObjectMeta(name=name, namespace=self._ns),
            delete_options=k8s.V1DeleteOptions(grace_period_seconds=int(grace)),
        )
        self._core.create_namespaced_pod_eviction(name, self._ns, body)

    def _scale_deployment(self, pool: str, delta: int) -> None:
        name = self._deployments.get(pool)
        if name is None:
            raise ActuatorError(f"pool {pool} has no inference Deployment to scale")
        scale = self._apps.read_namespaced_deployment_scale(name, self._ns)
        current = scale.spec.replicas if scale.spec is not None else 0
        replicas = max(0, int(current or 0) + delta)
        self._apps.patch_namespaced_deployment_scale(
            name, self._ns, {"spec": {"replicas": replicas}}
        )

    # ------------------------------------------------------------------ autoscaler

    def scale_up(self, pool: str, nodes: int, correlation_id: str) -> None:
        for i in range(nodes):
            name = f"balloon-{pool}-{int(self._clock() * 1000)}-{i}"
            self._core.create_namespaced_pod(self._ns, self._balloon(name, pool))  # type: ignore[arg-type]

    def _balloon(self, name: str, pool: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": self._ns,
                "labels": {MANAGED_LABEL: "true", "novabrain.io/balloon": pool},
            },
            "spec": {
                "priorityClassName": BALLOON_PRIORITY_CLASS,
                "terminationGracePeriodSeconds": 0,
                "containers": [
                    {
                        "name": "balloon",
                        "image": self._balloon_image,
                        "resources": {
                            "requests": {GPU_RESOURCE: str(self._gpus_per_node)},
                            "limits": {GPU_RESOURCE: str(self._gpus_per_node)},
                        },
                    }
                ],
            },
        }

    def scale_down(self, pool: str, node: str, correlation_id: str) -> None:
        pods = self._core.list_namespaced_pod(
            self._ns, label_selector=f"novabrain.io/balloon={pool}"
        )
        names = sorted(str(p.metadata.name) for p in pods.items if p.metadata is not None)
        if names:
            self._core.delete_namespaced_pod(names[0], self._ns)

    # ------------------------------------------------------------------ feedback

    def poll(self, now: float) -> list[Feedback]:
        try:
            jobs = self._batch.list_namespaced_job(self._ns, label_selector=f"{MANAGED_LABEL}=true")
        except ApiException as e:
            raise ActuatorError(f"list jobs: {e.status} {e.reason}") from e
        out = []
        for j in jobs.items:
            meta = j.metadata
            if meta is None or meta.name is None:
                continue
            annotations = meta.annotations or {}
            job_id = str(annotations.get("novabrain.io/job-id", meta.name))
            raw = annotations.get(CHECKPOINT_ANNOTATION)
            if raw is not None:
                try:
                    at: float | None = float(raw)
                except ValueError:
                    at = None
                if at is not None and self._reported.get(job_id) != at:
                    self._reported[job_id] = at
                    out.append(Feedback(FeedbackKind.CHECKPOINT, job=job_id, at=at))
            suspended = j.spec is not None and bool(j.spec.suspend)
            if suspended and not (j.status and j.status.active):
                out.append(Feedback(FeedbackKind.ACK, job=job_id))
        return out


def from_stack(
    stack: Stack, *, clock: Callable[[], float], api_client: k8s.ApiClient | None = None
) -> KubernetesActuator:
    """The actuator the stack's ``kubernetes`` section describes.

    Without an ``api_client`` it uses the in-cluster service account when the
    scheduler runs in a pod, else the local kubeconfig.
    """
    if api_client is None:
        try:
            k8s_config.load_incluster_config()  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException as in_cluster:
            try:
                k8s_config.load_kube_config()  # type: ignore[no-untyped-call]
            except (k8s_config.ConfigException, OSError, TypeError, ValueError) as e:
                # The client raises TypeError on a kubeconfig that is not a mapping.
                where = os.environ.get("KUBECONFIG", "~/.kube/config")
                raise ActuatorConfigError(
                    f"no Kubernetes credentials: not in a pod ({in_cluster}) and "
                    f"no usable kubeconfig at {where} ({e})"
                ) from None
        api_client = k8s.ApiClient()
    return KubernetesActuator(
        api_client,
        namespace=stack.kubernetes.namespace,
        gpu_nodes={g.uuid: g.node for g in stack.gpus()},
        deployments=stack.kubernetes.deployments,
        # Balloon pods reserve whole nodes of the (first) node group the
        # Cluster Autoscaler scales.
        gpus_per_node=stack.node_groups[0].gpus_per_node,
        replica_gpus={
            m.pool: m.serving.gpus_per_replica for m in stack.models if m.serving is not None
        },
        clock=clock,
        balloon_image=stack.kubernetes.balloon_image,
    )
