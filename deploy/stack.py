"""The stack file: the one source of truth for pools, models, SLOs, policy, RBAC and Grafana.

Loaded and validated here and nowhere else. Every validation error names the
field by its path in the file (``pools[1].lending_limit``) so that the CLI can
print it and exit 2. Values are small frozen dataclasses; everything generated
(rules, Alertmanager and Prometheus config, dashboards, scheduler policy) is
derived from a ``Stack``.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, time
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from deploy.stack_fields import MAX_NUMBER, Fields, show, url_problem, user_name_problem
from deploy.stack_fields import Bound as Bound  # re-exported: the API reads POLICY_BOUNDS
from deploy.stack_fields import StackError as StackError  # re-exported: what load_stack raises
from deploy.stack_yaml import read_document

DEFAULT_STACK_PATH = Path("deploy/stack.yaml")
ROLES = ("viewer", "operator", "admin", "alertmanager")
ACTIONS = ("rebalance", "scale")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Patterns match the whole value (fullmatch): "$" alone would accept a trailing newline.
_NAME = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")  # a DNS label, as Kubernetes names
_CLASS = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]{0,62}")
_SHA256 = re.compile(r"[0-9a-f]{64}")
# The fast alert window, in scrapes (alerts.rules): rules must be evaluated at least
# once per window, or what happens between two evaluations is missed.
FAST_WINDOW_SCRAPES = 4

# Every numeric policy setting: the stack's ``scheduler`` section and
# ``PATCH /api/v1/policy`` take the same values.
POLICY_BOUNDS: Mapping[str, Bound] = {
    # Aging is how nothing starves: it cannot be switched off (and the starvation
    # alert fires after fairness_cap / fairness_factor_per_hour hours).
    "fairness_factor_per_hour": Bound(1, MAX_NUMBER),
    "fairness_cap": Bound(1, MAX_NUMBER),
    "min_runtime_seconds": Bound(0, MAX_NUMBER),
    "preemption_budget": Bound(1, 1000, integer=True),
    "preemption_budget_window_seconds": Bound(1, MAX_NUMBER),
    "cycle_window_seconds": Bound(1, MAX_NUMBER),  # also the preemption-storm alert's window
    "default_grace_seconds": Bound(0, MAX_NUMBER),
    "rebalance_step_gpus": Bound(1, 4096, integer=True),
    "return_stabilization_seconds": Bound(0, MAX_NUMBER),
    "scale_up_stabilization_seconds": Bound(0, MAX_NUMBER),
    "scale_down_stabilization_seconds": Bound(0, MAX_NUMBER),
    "scale_down_unneeded_seconds": Bound(0, MAX_NUMBER),
    "scale_up_wait_seconds": Bound(0, MAX_NUMBER),
    # Lost work bounded for a job's whole life, and no starvation behind smaller jobs
    # (0 turns each off): README and docs/scheduling.md.
    "preemption_priority_boost": Bound(0, MAX_NUMBER),
    "max_preemptions_checkpointing": Bound(0, 1000, integer=True),
    "max_preemptions_non_checkpointing": Bound(0, 1000, integer=True),
    "drain_after_seconds": Bound(0, MAX_NUMBER),
    # P0 borrows what its SLO needs: grants keep the predicted quantile this share
    # under the threshold, and go back once the load is served so without them.
    "grant_slo_margin": Bound(0, 0.9),
}


@dataclass(frozen=True)
class NodeGroup:
    name: str
    count: int
    gpus_per_node: int
    gpu_model: str
    gpu_memory_bytes: int

    def node_names(self) -> list[str]:
        return [f"{self.name}-{i}" for i in range(1, self.count + 1)]


@dataclass(frozen=True)
class GpuSlot:
    """One physical GPU of the cluster as the stack describes it.

    The uuid is derived deterministically from the stack and node names so that
    the simulated NVML backend, the scheduler and every join on uuid agree.
    """

    node: str
    index: int
    uuid: str
    model: str
    memory_bytes: int


@dataclass(frozen=True)
class LendingWindow:
    """When a pool may lend up to ``gpus`` of its GPUs, past its usual ``lending_limit``."""

    gpus: int
    days: tuple[str, ...]  # the days a window starts on
    windows: tuple[tuple[int, int], ...]  # minutes after local midnight; end <= start: next day
    timezone: str  # default: alerting.timezone, the stack's timezone
    drain_lead_seconds: float  # borrowers are drained this long before the window ends


@dataclass(frozen=True)
class Pool:
    name: str
    priority: str  # a key of Stack.priority_classes
    team: str
    nominal_gpus: int
    guaranteed_gpus: int  # never lent, but inside a lending window
    lending_limit: int  # at most this many of the nominal GPUs are lent out
    borrowing_limit: int  # at most this many GPUs are borrowed beyond nominal
    preemptible: bool
    min_nodes: int
    max_nodes: int
    lending_windows: tuple[LendingWindow, ...] = ()


@dataclass(frozen=True)
class Slo:
    latency_threshold_seconds: float
    latency_quantile: float  # the alert's quantile, e.g. 0.99 for p99
    latency_target: float  # fraction of requests that must finish under the threshold
    availability_target: float


@dataclass(frozen=True)
class Serving:
    """How one replica of a model serves requests.

    The one description of a model's capacity: the scheduler sizes P0 grants from
    it, and the simulators (model server, trace replay) serve with it, so what
    the scheduler predicts and what the demo measures come from the same numbers.
    """

    service_time_seconds: float  # mean time a request holds a replica slot
    gpus_per_replica: int  # one replica (one pod) spans this many GPUs
    replica_concurrency: int  # requests one replica serves at a time


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    pool: str
    slo: Slo
    action: str | None  # scheduler action an SLO breach may trigger
    min_qps: float  # below this for a while means "no traffic" where traffic is expected
    llm: bool
    serving: Serving | None = None  # absent: capacity unknown, grants fall back to fixed steps


@dataclass(frozen=True)
class Policy:
    fairness_factor_per_hour: float
    fairness_cap: float
    min_runtime_seconds: float
    preemption_budget: int
    preemption_budget_window_seconds: float
    cycle_window_seconds: float
    default_grace_seconds: float
    rebalance_step_gpus: int
    return_stabilization_seconds: float
    scale_up_stabilization_seconds: float
    scale_down_stabilization_seconds: float
    scale_down_unneeded_seconds: float
    scale_up_wait_seconds: float  # a pool's oldest job waits this long before a node is asked for
    dry_run: bool
    cost_before_class: bool  # victims losing least go first, whatever their class
    preemption_priority_boost: float  # effective priority gained per preemption suffered
    max_preemptions_checkpointing: int  # lifetime cap (0: none) for jobs that checkpoint
    max_preemptions_non_checkpointing: int  # ... and for jobs that cannot
    drain_after_seconds: float  # a queue head waiting this long gets the GPUs that free up
    grant_slo_margin: float  # grants keep the predicted quantile this share under the threshold


@dataclass(frozen=True)
class Reservation:
    name: str
    pool: str
    gpus: int
    timezone: str
    days: tuple[str, ...]
    windows: tuple[tuple[time, time], ...]
    drain_lead_seconds: float


@dataclass(frozen=True)
class User:
    name: str
    role: str
    token_sha256: str


@dataclass(frozen=True)
class EmailChannel:
    """SMTP through a smarthost; the password, if any, is read by Alertmanager from a file."""

    to: tuple[str, ...]
    sender: str  # the From address (``from`` in the stack file)
    smarthost: str  # host:port
    require_tls: bool
    auth_username: str | None = None
    auth_password_file: str | None = None
    ca_file: str | None = None  # verify the smarthost's certificate against this CA


@dataclass(frozen=True)
class WechatChannel:
    """WeCom (企业微信) application messages through Alertmanager's ``wechat_configs``."""

    corp_id: str
    agent_id: str
    api_secret_file: str
    to_user: str | None = None
    to_party: str | None = None
    to_tag: str | None = None
    api_url: str | None = None  # None: WeCom's own API


@dataclass(frozen=True)
class WebhookChannel:
    url: str
    credentials_file: str | None = None  # bearer token, read by Alertmanager


@dataclass(frozen=True)
class PagerDutyChannel:
    routing_key_file: str
    url: str | None = None  # None: PagerDuty's Events API v2


Channel = EmailChannel | WechatChannel | WebhookChannel | PagerDutyChannel
LANGUAGES = ("zh", "en")


@dataclass(frozen=True)
class Receiver:
    """One on-call team's receiver: the teams it covers, its language and its channels."""

    name: str
    teams: tuple[str, ...]
    channels: tuple[Channel, ...]
    language: str = "en"


@dataclass(frozen=True)
class WeeklyWindow:
    """Every ``days`` from ``start`` to ``end`` local time; an ``end`` at or before
    ``start`` runs past midnight into the next day."""

    days: tuple[str, ...]
    start: time
    end: time | None  # None: midnight at the end of the day (24:00)


@dataclass(frozen=True)
class Maintenance:
    """Planned work during which alerts matching ``matchers`` do not page on-call.

    Times are local to ``Alerting.timezone``. The scheduler's P0 action route is never
    muted, whatever the matchers say.
    """

    name: str
    matchers: tuple[str, ...]  # Alertmanager matchers, e.g. ``node=~"gpu-node-3|gpu-node-4"``
    once: tuple[tuple[datetime, datetime], ...] = ()  # naive local start, end
    weekly: tuple[WeeklyWindow, ...] = ()


@dataclass(frozen=True)
class Alerting:
    scheduler_webhook_url: str
    webhook_credentials_file: str
    latency_alert_for_seconds: float
    group_wait_seconds: float
    group_interval_seconds: float
    repeat_interval_seconds: float
    runbook_base_url: str
    oncall: tuple[Receiver, ...]
    timezone: str = "UTC"
    maintenance: tuple[Maintenance, ...] = ()
    alertmanager_url: str = "http://127.0.0.1:9093"
    prometheus_url: str = "http://127.0.0.1:9090"


@dataclass(frozen=True)
class Ports:
    scheduler: int
    gpu_exporter: int
    model_server: int


@dataclass(frozen=True)
class Grafana:
    url: str
    folder: str
    datasource_uid: str
    token_file: str


@dataclass(frozen=True)
class Prometheus:
    scrape_interval_seconds: float
    evaluation_interval_seconds: float


@dataclass(frozen=True)
class Resources:
    """A container's requests and limits, as Kubernetes quantities (``500m``, ``256Mi``)."""

    requests: Mapping[str, str]
    limits: Mapping[str, str]


@dataclass(frozen=True)
class Peer:
    """Pods allowed to reach the scheduler's port: a namespace and a pod label selector."""

    name: str
    namespace: str
    pod_labels: Mapping[str, str]


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: str  # Exists or Equal
    value: str | None
    effect: str | None  # None tolerates every effect


@dataclass(frozen=True)
class Monitoring:
    """Where the Prometheus Operator, Alertmanager and Grafana run, and how they find our objects."""

    namespace: str
    # Put on ServiceMonitors, PrometheusRules and AlertmanagerConfigs: the labels
    # the Prometheus and Alertmanager resources' selectors match.
    labels: Mapping[str, str]
    prometheus_pods: Mapping[str, str]
    alertmanager_pods: Mapping[str, str]
    dashboards_namespace: str  # a namespace Grafana's dashboard sidecar watches
    folder_annotation: str  # the sidecar's folderAnnotation


@dataclass(frozen=True)
class GpuNodes:
    """Where the GPU exporter runs, and what it may see of the node."""

    node_selector: Mapping[str, str]
    tolerations: tuple[Toleration, ...]
    runtime_class: str | None  # the NVIDIA container runtime's RuntimeClass
    # Attribution of GPU processes through /proc/<pid>/cgroup needs the host's
    # PID namespace (hostPID); off, pods are named from the kubelet alone.
    proc_attribution: bool
    pod_resources_dir: str  # the kubelet's pod-resources socket directory
    resources: Resources


@dataclass(frozen=True)
class SchedulerPod:
    storage: str  # the state volume's size (SQLite state and audit log)
    storage_class: str | None  # None: the cluster's default StorageClass
    resources: Resources
    api_clients: tuple[Peer, ...]  # besides Prometheus and Alertmanager


@dataclass(frozen=True)
class ModelScrape:
    """How Prometheus finds the bank's model servers: Services with these labels, this port."""

    service_labels: Mapping[str, str]
    port: str


def _default_resources(cpu: str, memory: str, cpu_limit: str, memory_limit: str) -> Resources:
    return Resources({"cpu": cpu, "memory": memory}, {"cpu": cpu_limit, "memory": memory_limit})


@dataclass(frozen=True)
class Kubernetes:
    """The cluster: where the actuator acts and how ``novabrain generate`` deploys the stack."""

    namespace: str = "novabrain"  # where the actuator acts: the pools' Jobs, Deployments, balloons
    # pool -> the inference Deployment whose replicas it grows
    deployments: Mapping[str, str] = field(default_factory=dict)
    balloon_image: str = "registry.k8s.io/pause:3.9"
    version: str = "1.30"  # the target Kubernetes minor version the manifests are validated for
    install_namespace: str = "novabrain-system"  # where novabrain's own pods run
    image: str = "novabrain-ops:0.1.0"
    image_pull_policy: str = "IfNotPresent"
    labels: Mapping[str, str] = field(default_factory=dict)  # on every generated object
    monitoring: Monitoring = Monitoring(
        namespace="monitoring",
        labels={"release": "kube-prometheus-stack"},
        prometheus_pods={"app.kubernetes.io/name": "prometheus"},
        alertmanager_pods={"app.kubernetes.io/name": "alertmanager"},
        dashboards_namespace="monitoring",
        folder_annotation="grafana_folder",
    )
    gpu_nodes: GpuNodes = GpuNodes(
        node_selector={"nvidia.com/gpu.present": "true"},
        tolerations=(Toleration("nvidia.com/gpu", "Exists", None, "NoSchedule"),),
        runtime_class="nvidia",
        proc_attribution=False,
        pod_resources_dir="/var/lib/kubelet/pod-resources",
        resources=_default_resources("100m", "128Mi", "500m", "256Mi"),
    )
    scheduler: SchedulerPod = SchedulerPod(
        storage="10Gi",
        storage_class=None,
        resources=_default_resources("500m", "512Mi", "2", "1Gi"),
        api_clients=(),
    )
    model_servers: ModelScrape = ModelScrape({"novabrain.io/scrape": "model-server"}, "metrics")


@dataclass(frozen=True)
class AuditForward:
    """Where each audit record goes as it is appended: a copy off the box (PCI DSS 10.3.3)."""

    to: str  # "syslog" (RFC 5424 over TCP) or "file" (JSON Lines, for a shipper to tail)
    address: str = ""  # syslog: host:port
    path: str = ""  # file


@dataclass(frozen=True)
class Audit:
    # Records are kept retention_days, then purged; the latest online_days stay in
    # the live log, older ones move, unchanged and still verifiable as one chain,
    # to an archive next to it (PCI DSS 10.5.1: a year, three months at hand).
    retention_days: float = 365.0
    online_days: float = 90.0
    forward: AuditForward | None = None


@dataclass(frozen=True)
class Spike:
    """A daily spike of a model's load: from ``start`` (local) for ``minutes``, at ``rps``."""

    start: time
    minutes: float
    rps: float


@dataclass(frozen=True)
class LoadProfile:
    """A P0 model's load in the trace replay: a base rate and spikes on ``days``."""

    model: str
    base_rps: float
    spikes: tuple[Spike, ...]  # explicit, or one per window of the model's pool's reservations
    days: tuple[str, ...]


@dataclass(frozen=True)
class Simulation:
    """What ``novabrain simulate`` assumes about the world a trace is replayed in (set once here)."""

    start: datetime  # local to the stack's timezone: day one of a trace with relative times
    training_pool: str  # trace jobs without a pool column: the large ones (and a share) train
    batch_pool: str
    training_min_gpus: int
    training_share_percent: int
    checkpoint_interval_seconds: float  # training jobs save a checkpoint this often
    ack_seconds: float  # a victim checkpoints and acknowledges this long after the signal
    scale_up_delay_seconds: float  # a node asked of the autoscaler joins this much later
    slo_margin: float  # P0 is sized so its predicted quantile stays this share under the threshold
    p0_load: tuple[LoadProfile, ...]


@dataclass(frozen=True)
class Stack:
    name: str
    priority_classes: Mapping[str, int]
    node_groups: tuple[NodeGroup, ...]
    pools: tuple[Pool, ...]
    models: tuple[Model, ...]
    policy: Policy
    reservations: tuple[Reservation, ...]
    users: tuple[User, ...]
    alerting: Alerting
    ports: Ports
    prometheus: Prometheus
    grafana: Grafana
    audit: Audit = Audit()
    kubernetes: Kubernetes = Kubernetes()
    simulation: Simulation | None = None  # None: derived from the rest (see _simulation)
    source: str = field(default="<memory>", compare=False)

    @property
    def total_gpus(self) -> int:
        return sum(g.count * g.gpus_per_node for g in self.node_groups)

    def gpus(self) -> tuple[GpuSlot, ...]:
        """Every GPU of the cluster, in node then index order."""
        out = []
        for g in self.node_groups:
            for node in g.node_names():
                for i in range(g.gpus_per_node):
                    u = uuid.uuid5(uuid.NAMESPACE_URL, f"novabrain://{self.name}/{node}/{i}")
                    out.append(GpuSlot(node, i, f"GPU-{u}", g.gpu_model, g.gpu_memory_bytes))
        return tuple(out)

    def pool(self, name: str) -> Pool:
        for p in self.pools:
            if p.name == name:
                return p
        raise KeyError(name)

    def priority_of(self, pool: str) -> int:
        return self.priority_classes[self.pool(pool).priority]

    def top_priority_class(self) -> str:
        return max(self.priority_classes, key=lambda k: self.priority_classes[k])

    def with_timing(
        self,
        *,
        scrape_interval_seconds: float,
        latency_alert_for_seconds: float,
        group_wait_seconds: float,
        group_interval_seconds: float,
        return_stabilization_seconds: float,
    ) -> Stack:
        """The same stack on a faster clock: the demo and the e2e test run the real loop in seconds."""
        return replace(
            self,
            prometheus=Prometheus(scrape_interval_seconds, scrape_interval_seconds),
            alerting=replace(
                self.alerting,
                latency_alert_for_seconds=latency_alert_for_seconds,
                group_wait_seconds=group_wait_seconds,
                group_interval_seconds=group_interval_seconds,
            ),
            policy=replace(self.policy, return_stabilization_seconds=return_stabilization_seconds),
        )


# --------------------------------------------------------------------------- parsing

T = TypeVar("T")


def _node_group(n: Fields) -> NodeGroup:
    return NodeGroup(
        name=n.text("name", pattern=_NAME),
        count=n.integer("count", min=1, max=10_000),
        gpus_per_node=n.integer("gpus_per_node", min=1, max=16),
        gpu_model=n.text("gpu_model", "NVIDIA H100 80GB HBM3"),
        gpu_memory_bytes=n.integer("gpu_memory_bytes", 80 * 1024**3, min=1, max=1 << 50),
    )


_LENDING_TIMES = re.compile(
    r"(?P<h1>[01]\d|2[0-3]):(?P<m1>[0-5]\d)-(?:(?P<h2>[01]\d|2[0-3]):(?P<m2>[0-5]\d)|24:00)"
)


def _weekdays(n: Fields, default: tuple[str, ...]) -> tuple[str, ...]:
    """``days``: names of weekdays."""
    days = n.str_list("days", list(default))
    for i, d in enumerate(days):
        if d not in DAYS:
            raise StackError(
                f"{n.at('days')}[{i}]", f"must be one of {', '.join(DAYS)}, got {show(d)}"
            )
    return days


def _zone(n: Fields) -> str:
    """``timezone``: an IANA timezone."""
    tz = n.text("timezone")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise StackError(n.at("timezone"), f"unknown IANA timezone {show(tz)}") from None
    return tz


def _lending_window(n: Fields, nominal: int) -> LendingWindow:
    days = _weekdays(n, DAYS)
    windows = []
    for i, w in enumerate(n.str_list("times")):
        m = _LENDING_TIMES.fullmatch(w)
        if not m:
            raise StackError(
                f"{n.at('times')}[{i}]", f"must look like 18:00-08:30 or 00:00-24:00, got {show(w)}"
            )
        start = int(m["h1"]) * 60 + int(m["m1"])
        end = 24 * 60 if m["h2"] is None else int(m["h2"]) * 60 + int(m["m2"])
        if end == start:
            raise StackError(f"{n.at('times')}[{i}]", "must not start and end at the same time")
        windows.append((start, end))
    return LendingWindow(
        gpus=n.integer("gpus", min=1, max=max(1, nominal)),
        days=days,
        windows=tuple(windows),
        # Without one of its own, alerting.timezone (filled in by parse_stack).
        timezone="" if n.raw("timezone", None) is None else _zone(n),
        drain_lead_seconds=n.seconds("drain_lead_seconds", 300.0, max=86400),
    )


def _pool(n: Fields) -> Pool:
    nominal = n.integer("nominal_gpus", min=0)
    pool = Pool(
        name=n.text("name", pattern=_NAME),
        priority=n.text("priority"),
        team=n.text("team", pattern=_NAME),
        nominal_gpus=nominal,
        guaranteed_gpus=n.integer("guaranteed_gpus", 0, min=0),
        lending_limit=n.integer("lending_limit", nominal, min=0),
        borrowing_limit=n.integer("borrowing_limit", 0, min=0),
        preemptible=n.flag("preemptible", True),
        min_nodes=n.integer("min_nodes", 0, min=0),
        max_nodes=n.integer("max_nodes", 0, min=0),
        lending_windows=n.items("lending_windows", lambda w: _lending_window(w, nominal), []),
    )
    if pool.guaranteed_gpus > nominal:
        raise StackError(n.at("guaranteed_gpus"), f"must be <= nominal_gpus ({nominal})")
    if pool.lending_limit > nominal - pool.guaranteed_gpus:
        raise StackError(
            n.at("lending_limit"),
            f"must be <= nominal_gpus - guaranteed_gpus ({nominal - pool.guaranteed_gpus}): "
            "the guaranteed floor is never lent",
        )
    if pool.max_nodes < pool.min_nodes:
        raise StackError(n.at("max_nodes"), f"must be >= min_nodes ({pool.min_nodes})")
    return pool


def _model(n: Fields) -> Model:
    s = n.child("slo")
    slo = Slo(
        latency_threshold_seconds=s.number("latency_threshold_seconds", min=0.001, max=600),
        latency_quantile=s.number("latency_quantile", 0.99, min=0.5, max=0.999),
        latency_target=s.number("latency_target", 0.99, min=0.5, max=0.99999),
        availability_target=s.number("availability_target", 0.999, min=0.5, max=0.99999),
    )
    s.done()
    action = n.raw("action", None)
    if action is not None and action not in ACTIONS:
        raise StackError(
            n.at("action"), f"must be one of {', '.join(ACTIONS)} or absent, got {show(action)}"
        )
    serving = None
    if n.raw("serving", None) is not None:
        sv = n.child("serving")
        serving = Serving(
            service_time_seconds=sv.number(
                "service_time_seconds", min=0, max=3600, exclusive_min=True
            ),
            gpus_per_replica=sv.integer("gpus_per_replica", 1, min=1, max=64),
            replica_concurrency=sv.integer("replica_concurrency", 1, min=1, max=4096),
        )
        sv.done()
    return Model(
        name=n.text("name", pattern=_NAME),
        version=n.text("version", "v1", pattern=_VERSION),
        pool=n.text("pool"),
        slo=slo,
        action=action,
        min_qps=n.number("min_qps", 0.0, max=1e6),
        llm=n.flag("llm", False),
        serving=serving,
    )


_POLICY_DEFAULTS: Mapping[str, float] = {
    "fairness_factor_per_hour": 100.0,
    "fairness_cap": 400.0,
    "min_runtime_seconds": 300.0,
    "preemption_budget": 3,
    "preemption_budget_window_seconds": 3600.0,
    "cycle_window_seconds": 900.0,
    "default_grace_seconds": 30.0,
    "rebalance_step_gpus": 8,
    "return_stabilization_seconds": 300.0,
    "scale_up_stabilization_seconds": 0.0,
    "scale_down_stabilization_seconds": 300.0,
    "scale_down_unneeded_seconds": 600.0,
    "scale_up_wait_seconds": 60.0,
    "preemption_priority_boost": 100.0,
    "max_preemptions_checkpointing": 5,
    "max_preemptions_non_checkpointing": 1,
    "drain_after_seconds": 3600.0,
    "grant_slo_margin": 0.2,
}


def _policy(n: Fields) -> Policy:
    values: dict[str, Any] = {
        key: n.bounded(key, _POLICY_DEFAULTS[key], bound) for key, bound in POLICY_BOUNDS.items()
    }
    return Policy(
        **values,
        dry_run=n.flag("dry_run", False),
        cost_before_class=n.flag("cost_before_class", True),
    )


_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def _reservation(n: Fields) -> Reservation:
    tz = _zone(n)
    days = _weekdays(n, DAYS[:5])
    windows = []
    for i, w in enumerate(n.str_list("windows")):
        m = _WINDOW.fullmatch(w)
        if not m:
            raise StackError(
                f"{n.at('windows')}[{i}]", f"must look like 09:15-09:45, got {show(w)}"
            )
        start, end = time(int(m[1]), int(m[2])), time(int(m[3]), int(m[4]))
        if end <= start:
            raise StackError(f"{n.at('windows')}[{i}]", "must end after it starts")
        windows.append((start, end))
    return Reservation(
        name=n.text("name", pattern=_NAME),
        pool=n.text("pool"),
        gpus=n.integer("gpus", min=1),
        timezone=tz,
        days=days,
        windows=tuple(windows),
        drain_lead_seconds=n.seconds("drain_lead_seconds", 300.0, max=86400),
    )


def _user(n: Fields) -> User:
    role = n.text("role")
    if role not in ROLES:
        raise StackError(n.at("role"), f"must be one of {', '.join(ROLES)}, got {show(role)}")
    name = n.text("name")
    if (problem := user_name_problem(name)) is not None:
        raise StackError(n.at("name"), f"{problem}, got {show(name)}")
    return User(
        name=name,
        role=role,
        # Only the hash is ever stored: the file can be committed and read by
        # anyone who may read the configuration.
        token_sha256=n.text("token_sha256", pattern=_SHA256),
    )


DEFAULT_RUNBOOK_BASE_URL = "docs/runbooks"  # the repository's own runbooks (alerts.runbooks)
_EMAIL = re.compile(r"^[^@\s<>]+@[^@\s<>]+$")
_HOSTPORT = re.compile(r"^[A-Za-z0-9.-]+:\d{1,5}$|^\[[0-9A-Fa-f:]+\]:\d{1,5}$")
_DIGITS = re.compile(r"^\d+$")
# Fields that hold a secret in Alertmanager's receiver configs: never in the stack.
_SECRET_FIELDS = (
    "auth_password",
    "auth_secret",
    "api_secret",
    "routing_key",
    "service_key",
    "password",
    "token",
    "credentials",
    "bearer_token",
)
_SECRET_QUERY = ("key", "token", "access_token", "secret", "password", "sig", "signature")
_LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
MATCHER = re.compile(rf'^\s*({_LABEL})\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$')
_DATETIME = re.compile(r"^(\d{4})-(\d{2})-(\d{2}) ([01]\d|2[0-3]):([0-5]\d)$")
_TIMES = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-4]):([0-5]\d)$")


def _no_inline_secrets(n: Fields) -> None:
    """A secret written in the stack would be committed with it: refuse it, naming the field."""
    for key in _SECRET_FIELDS:
        if key in n.value:
            raise StackError(
                n.at(key),
                "secrets are never written in the stack file: put it in a file only "
                f"Alertmanager can read and name that file in {key}_file",
            )


def _url(n: Fields, key: str, default: Any = ...) -> str:
    """An http(s) URL that carries no secret (no password, no key or token in its query)."""
    v = n.text(key, default)
    if (problem := url_problem(v)) is not None:
        raise StackError(n.at(key), f"{show(v)} {problem}")
    parts = urlsplit(v)
    if parts.password is not None:
        raise StackError(
            n.at(key), "secrets are never written in the stack file: the URL has a password"
        )
    for q, _ in parse_qsl(parts.query, keep_blank_values=True):
        if q.lower() in _SECRET_QUERY:
            raise StackError(
                n.at(key),
                f"secrets are never written in the stack file: the URL's {show(q)} parameter is one "
                "(Alertmanager 0.25 reads no URL from a file; use a bearer credentials_file)",
            )
    return v


def _optional(n: Fields, key: str, **kw: Any) -> str | None:
    return None if n.raw(key, None) is None else n.text(key, **kw)


def _email(n: Fields) -> EmailChannel:
    to = n.str_list("to")
    if not to:
        raise StackError(n.at("to"), "must name at least one address")
    for i, addr in enumerate(to):
        if not _EMAIL.fullmatch(addr):
            raise StackError(f"{n.at('to')}[{i}]", f"not an email address: {show(addr)}")
    user = _optional(n, "auth_username")
    password_file = _optional(n, "auth_password_file")
    if (user is None) != (password_file is None):
        missing = "auth_password_file" if password_file is None else "auth_username"
        raise StackError(n.at(missing), "is required with auth_username and auth_password_file")
    return EmailChannel(
        to=to,
        sender=n.text("from", pattern=_EMAIL),
        smarthost=n.text("smarthost", pattern=_HOSTPORT),
        require_tls=n.flag("require_tls", True),
        auth_username=user,
        auth_password_file=password_file,
        ca_file=_optional(n, "ca_file"),
    )


def _wechat(n: Fields) -> WechatChannel:
    agent = n.raw("agent_id")
    if isinstance(agent, int) and not isinstance(agent, bool):
        agent = str(agent)
    if not isinstance(agent, str) or not _DIGITS.fullmatch(agent):
        raise StackError(
            n.at("agent_id"), f"must be the WeCom application's numeric id, got {show(agent)}"
        )
    ch = WechatChannel(
        corp_id=n.text("corp_id"),
        agent_id=agent,
        api_secret_file=n.text("api_secret_file"),
        to_user=_optional(n, "to_user"),
        to_party=_optional(n, "to_party"),
        to_tag=_optional(n, "to_tag"),
        api_url=None if n.raw("api_url", None) is None else _url(n, "api_url"),
    )
    if ch.to_user is None and ch.to_party is None and ch.to_tag is None:
        raise StackError(n.at("to_party"), "name at least one of to_user, to_party, to_tag")
    return ch


def _webhook_channel(n: Fields) -> WebhookChannel:
    return WebhookChannel(url=_url(n, "url"), credentials_file=_optional(n, "credentials_file"))


def _pagerduty(n: Fields) -> PagerDutyChannel:
    return PagerDutyChannel(
        routing_key_file=n.text("routing_key_file"),
        url=None if n.raw("url", None) is None else _url(n, "url"),
    )


_CHANNELS: dict[str, Callable[[Fields], Channel]] = {
    "email": _email,
    "wechat": _wechat,
    "webhook": _webhook_channel,
    "pagerduty": _pagerduty,
}


def _channel(n: Fields) -> Channel:
    kind = n.raw("type")
    if not isinstance(kind, str) or kind not in _CHANNELS:
        raise StackError(n.at("type"), f"must be one of {', '.join(_CHANNELS)}, got {show(kind)}")
    _no_inline_secrets(n)
    return _CHANNELS[kind](n)


def _receiver(n: Fields) -> Receiver:
    language = n.text("language", "en")
    if language not in LANGUAGES:
        raise StackError(
            n.at("language"), f"must be one of {', '.join(LANGUAGES)}, got {show(language)}"
        )
    channels = n.items("channels", _channel)
    if not channels:
        raise StackError(n.at("channels"), "must list at least one channel")
    return Receiver(
        name=n.text("name", pattern=_NAME),
        teams=n.str_list("teams", [], pattern=_NAME),
        channels=channels,
        language=language,
    )


def _matchers(n: Fields, key: str) -> tuple[str, ...]:
    out = n.str_list(key)
    if not out:
        raise StackError(n.at(key), 'must list at least one matcher, e.g. node=~"gpu-node-3"')
    for i, m in enumerate(out):
        found = MATCHER.fullmatch(m)
        if not found:
            raise StackError(
                f"{n.at(key)}[{i}]", f'must look like label="value" (or !=, =~, !~), got {show(m)}'
            )
        if found[2] in ("=~", "!~"):
            try:
                re.compile(found[3])
            except re.error as e:
                raise StackError(f"{n.at(key)}[{i}]", f"bad regular expression: {e}") from None
    return out


def _local(value: Any, path: str) -> datetime:
    m = _DATETIME.fullmatch(value) if isinstance(value, str) else None
    if m is None:
        raise StackError(
            path, f'must be a quoted local time like "2025-07-12 22:00", got {show(value)}'
        )
    try:
        return datetime(int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]))
    except ValueError as e:
        raise StackError(path, str(e)) from None


def _once(n: Fields) -> tuple[datetime, datetime]:
    start = _local(n.raw("start"), n.at("start"))
    end = _local(n.raw("end"), n.at("end"))
    if end <= start:
        raise StackError(n.at("end"), "must be after start")
    return start, end


def _weekly(n: Fields) -> WeeklyWindow:
    days = n.str_list("days")
    if not days:
        raise StackError(n.at("days"), "must name at least one day")
    for i, d in enumerate(days):
        if d not in DAYS:
            raise StackError(
                f"{n.at('days')}[{i}]", f"must be one of {', '.join(DAYS)}, got {show(d)}"
            )
    w = n.text("times")
    m = _TIMES.fullmatch(w)
    if not m or (m[3] == "24" and m[4] != "00"):
        raise StackError(
            n.at("times"), f"must look like 02:00-04:00 (end up to 24:00), got {show(w)}"
        )
    start = time(int(m[1]), int(m[2]))
    end = None if m[3] == "24" else time(int(m[3]), int(m[4]))
    if end == start:
        raise StackError(n.at("times"), "must not start and end at the same time")
    return WeeklyWindow(days=days, start=start, end=end)


def _maintenance(n: Fields) -> Maintenance:
    mw = Maintenance(
        name=n.text("name", pattern=_NAME),
        matchers=_matchers(n, "matchers"),
        once=n.items("once", _once, []),
        weekly=n.items("weekly", _weekly, []),
    )
    if not mw.once and not mw.weekly:
        raise StackError(n.at("once"), "a maintenance window needs once or weekly times")
    return mw


def _alerting(n: Fields) -> Alerting:
    tz = n.text("timezone", "UTC")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise StackError(n.at("timezone"), f"unknown IANA timezone {show(tz)}") from None
    alerting = Alerting(
        scheduler_webhook_url=_url(n, "scheduler_webhook_url"),
        webhook_credentials_file=n.text("webhook_credentials_file"),
        latency_alert_for_seconds=n.seconds("latency_alert_for_seconds", 60.0, max=86400),
        # Alertmanager refuses a zero group_wait, group_interval or repeat_interval.
        group_wait_seconds=n.seconds("group_wait_seconds", 10.0, min=0.001, max=86400),
        group_interval_seconds=n.seconds("group_interval_seconds", 30.0, min=0.001, max=86400),
        repeat_interval_seconds=n.seconds(
            "repeat_interval_seconds", 4 * 3600.0, min=0.001, max=30 * 86400
        ),
        runbook_base_url=n.text("runbook_base_url", DEFAULT_RUNBOOK_BASE_URL),
        oncall=n.items("oncall", _receiver),
        timezone=tz,
        maintenance=n.items("maintenance", _maintenance, []),
        alertmanager_url=_url(n, "alertmanager_url", "http://127.0.0.1:9093"),
        prometheus_url=_url(n, "prometheus_url", "http://127.0.0.1:9090"),
    )
    if not alerting.oncall:
        raise StackError(n.at("oncall"), "must list at least one receiver")
    _unique(alerting.oncall, n.at("oncall"))
    _unique(alerting.maintenance, n.at("maintenance"))
    return alerting


# Kubernetes label keys (an optional DNS-subdomain prefix and a name) and values.
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"^([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}$")
_LABEL_VALUE = re.compile(rf"^({_LABEL_NAME})?$")
_K8S_VERSION = re.compile(r"^1\.(\d+)$")
# Older than 1.27 lacks what the manifests rely on: the StatefulSet's PVC
# retention policy and the PodDisruptionBudget's unhealthy-pod eviction policy.
_MIN_K8S_MINOR = 27
_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$")
_QUANTITY_SCALE = {
    None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}  # fmt: skip
_RESOURCE_NAMES = ("cpu", "memory")
_TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")


def _string_map(n: Fields, key: str, default: Mapping[str, str]) -> dict[str, str]:
    """A mapping of Kubernetes label keys to label values (selectors, extra labels)."""
    m = n.child(key, dict(default))
    out: dict[str, str] = {}
    for k in list(m.value):
        path = m.at(str(k))
        if not isinstance(k, str) or not _LABEL_KEY.fullmatch(k):
            raise StackError(path, f"{show(k)} is not a Kubernetes label key")
        v = m.raw(k)
        if not isinstance(v, str):
            # YAML reads true, 1 or 1.30 unquoted as a boolean or a number.
            raise StackError(path, f"must be a string (quote it), got {show(v)}")
        if not _LABEL_VALUE.fullmatch(v):
            raise StackError(path, f"{show(v)} is not a Kubernetes label value")
        out[k] = v
    m.done()
    return out


def _quantity(n: Fields, key: str, default: str) -> tuple[str, float]:
    v = n.raw(key, default)
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise StackError(
            n.at(key), f"must be a Kubernetes quantity like 500m or 256Mi, got {show(v)}"
        )
    m = _QUANTITY.fullmatch(str(v))
    if m is None:
        raise StackError(n.at(key), f"{show(v)} is not a Kubernetes quantity (e.g. 500m, 2, 256Mi)")
    return str(v), float(m[1]) * _QUANTITY_SCALE[m[2]]


def _resources(parent: Fields, key: str, default: Resources) -> Resources:
    """requests and limits for cpu and memory; a limit below its request is refused."""
    n = parent.child(key, {})
    parsed: dict[str, dict[str, tuple[str, float]]] = {}
    for kind in ("requests", "limits"):
        q = n.child(kind, {})
        parsed[kind] = {
            r: _quantity(q, r, getattr(default, kind)[r])
            for r in _RESOURCE_NAMES
            if r in q.value or r in getattr(default, kind)
        }
        q.done()
    for r, (text, value) in parsed["limits"].items():
        request = parsed["requests"].get(r)
        if request is not None and value < request[1]:
            raise StackError(f"{n.at('limits')}.{r}", f"{text} is below the request ({request[0]})")
    n.done()
    return Resources(
        requests={r: t for r, (t, _) in parsed["requests"].items()},
        limits={r: t for r, (t, _) in parsed["limits"].items()},
    )


def _toleration(n: Fields) -> Toleration:
    op = n.text("operator", "Exists")
    if op not in ("Exists", "Equal"):
        raise StackError(n.at("operator"), f"must be Exists or Equal, got {show(op)}")
    value = n.raw("value", None)
    if op == "Equal" and not isinstance(value, str):
        raise StackError(n.at("value"), "is required (a string) with operator Equal")
    if op == "Exists" and value is not None:
        raise StackError(n.at("value"), "must be absent with operator Exists")
    effect = n.raw("effect", None)
    if effect is not None and effect not in _TAINT_EFFECTS:
        raise StackError(
            n.at("effect"),
            f"must be one of {', '.join(_TAINT_EFFECTS)} or absent, got {show(effect)}",
        )
    key = n.text("key")
    if not _LABEL_KEY.fullmatch(key):
        raise StackError(n.at("key"), f"{show(key)} is not a Kubernetes taint key")
    return Toleration(key=key, operator=op, value=value, effect=effect)


def _peer(n: Fields) -> Peer:
    return Peer(
        name=n.text("name", pattern=_NAME),
        namespace=n.text("namespace", pattern=_NAME),
        pod_labels=_string_map(n, "pod_labels", {}),
    )


def _monitoring(n: Fields, d: Monitoring) -> Monitoring:
    namespace = n.text("namespace", d.namespace, pattern=_NAME)
    return Monitoring(
        namespace=namespace,
        labels=_string_map(n, "labels", d.labels),
        prometheus_pods=_string_map(n, "prometheus_pods", d.prometheus_pods),
        alertmanager_pods=_string_map(n, "alertmanager_pods", d.alertmanager_pods),
        dashboards_namespace=n.text("dashboards_namespace", namespace, pattern=_NAME),
        folder_annotation=n.text("folder_annotation", d.folder_annotation, pattern=_LABEL_KEY),
    )


def _gpu_nodes(n: Fields, d: GpuNodes) -> GpuNodes:
    runtime_class = n.raw("runtime_class", d.runtime_class)
    if runtime_class is not None:
        runtime_class = n.text("runtime_class", runtime_class, pattern=_NAME)
    pod_resources_dir = n.text("pod_resources_dir", d.pod_resources_dir)
    if not pod_resources_dir.startswith("/"):
        raise StackError(n.at("pod_resources_dir"), "must be an absolute path")
    default_tolerations = [
        {k: v for k, v in vars(t).items() if v is not None} for t in d.tolerations
    ]
    return GpuNodes(
        node_selector=_string_map(n, "node_selector", d.node_selector),
        tolerations=n.items("tolerations", _toleration, default_tolerations),
        runtime_class=runtime_class,
        proc_attribution=n.flag("proc_attribution", d.proc_attribution),
        pod_resources_dir=pod_resources_dir,
        resources=_resources(n, "resources", d.resources),
    )


def _scheduler_pod(n: Fields, d: SchedulerPod) -> SchedulerPod:
    storage, size = _quantity(n, "storage", d.storage)
    if size < 2**20:
        raise StackError(n.at("storage"), f"{storage} is too small for the state volume")
    storage_class = n.raw("storage_class", d.storage_class)
    if storage_class is not None:
        storage_class = n.text("storage_class", storage_class, pattern=_NAME)
    resources = _resources(n, "resources", d.resources)
    clients = n.items("api_clients", _peer, [])
    _unique(clients, f"{n.path}.api_clients")
    return SchedulerPod(
        storage=storage, storage_class=storage_class, resources=resources, api_clients=clients
    )


def _section(parent: Fields, key: str, parse: Callable[[Fields], T]) -> T:
    """An optional sub-mapping, parsed, with its unknown keys refused."""
    node = parent.child(key, {})
    out = parse(node)
    node.done()
    return out


def _kubernetes(k: Fields, pool_names: set[str]) -> Kubernetes:
    d = Kubernetes()
    dep_node = k.child("deployments", {})
    deployments: dict[str, str] = {}
    for pool_name in list(dep_node.value):
        if not isinstance(pool_name, str) or pool_name not in pool_names:
            raise StackError(
                f"kubernetes.deployments.{pool_name}", f"unknown pool {show(pool_name)}"
            )
        deployments[str(pool_name)] = dep_node.text(str(pool_name), pattern=_NAME)
    dep_node.done()

    version = k.raw("version", d.version)
    if not isinstance(version, str):
        # 1.30 unquoted is the number 1.3 to YAML.
        raise StackError(
            k.at("version"), f'must be a quoted string like "1.30", got {show(version)}'
        )
    m = _K8S_VERSION.fullmatch(version)
    if m is None or int(m[1]) < _MIN_K8S_MINOR:
        raise StackError(
            k.at("version"),
            f'must be a Kubernetes minor version "1.{_MIN_K8S_MINOR}" or newer, got {show(version)}',
        )
    pull = k.text("image_pull_policy", d.image_pull_policy)
    if pull not in _PULL_POLICIES:
        raise StackError(
            k.at("image_pull_policy"),
            f"must be one of {', '.join(_PULL_POLICIES)}, got {show(pull)}",
        )
    kubernetes = Kubernetes(
        namespace=k.text("namespace", d.namespace, pattern=_NAME),
        deployments=deployments,
        balloon_image=k.text("balloon_image", d.balloon_image),
        version=version,
        install_namespace=k.text("install_namespace", d.install_namespace, pattern=_NAME),
        image=k.text("image", d.image),
        image_pull_policy=pull,
        labels=_string_map(k, "labels", d.labels),
        monitoring=_section(k, "monitoring", lambda n: _monitoring(n, d.monitoring)),
        gpu_nodes=_section(k, "gpu_nodes", lambda n: _gpu_nodes(n, d.gpu_nodes)),
        scheduler=_section(k, "scheduler", lambda n: _scheduler_pod(n, d.scheduler)),
        model_servers=_section(
            k,
            "model_servers",
            lambda n: ModelScrape(
                service_labels=_string_map(n, "service_labels", d.model_servers.service_labels),
                port=n.text("port", d.model_servers.port, pattern=_NAME),
            ),
        ),
    )
    if kubernetes.install_namespace == kubernetes.monitoring.namespace:
        raise StackError(
            "kubernetes.install_namespace",
            f"must differ from kubernetes.monitoring.namespace ({kubernetes.monitoring.namespace})",
        )
    return kubernetes


_HOST_PORT = re.compile(r"^[A-Za-z0-9.:\[\]-]+:\d{1,5}$")
FORWARD_TO = ("syslog", "file")


def _audit_forward(n: Fields) -> AuditForward:
    to = n.text("to")
    if to not in FORWARD_TO:
        raise StackError(n.at("to"), f"must be one of {', '.join(FORWARD_TO)}, got {show(to)}")
    if to == "syslog":
        return AuditForward(to, address=n.text("address", pattern=_HOST_PORT))
    return AuditForward(to, path=n.text("path"))


def _audit(n: Fields) -> Audit:
    online = n.number("online_days", 90.0, min=1, max=36500)
    retention = n.number("retention_days", 365.0, min=1, max=36500)
    if retention < online:
        raise StackError(
            n.at("retention_days"),
            f"must be >= online_days ({online:g}): archived records are kept",
        )
    forward = None
    if n.raw("forward", None) is not None:
        fwd = n.child("forward")
        forward = _audit_forward(fwd)
        fwd.done()
    return Audit(retention_days=retention, online_days=online, forward=forward)


_HHMM = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")


def _spike(n: Fields) -> Spike:
    start = n.text("start")
    m = _HHMM.fullmatch(start)
    if m is None:
        raise StackError(n.at("start"), f"must look like 09:15, got {show(start)}")
    return Spike(
        start=time(int(m[1]), int(m[2])),
        minutes=n.number("minutes", min=1, max=24 * 60),
        rps=n.number("rps"),
    )


def _load_profile(
    n: Fields, models: Mapping[str, Model], reservations: tuple[Reservation, ...]
) -> LoadProfile:
    name = n.text("model")
    model = models.get(name)
    if model is None:
        raise StackError(n.at("model"), f"unknown model {show(name)}")
    if model.serving is None:
        raise StackError(n.at("model"), f"{name} has no serving: its GPUs cannot be sized")
    days = n.str_list("days", list(DAYS[:5]))
    for i, d in enumerate(days):
        if d not in DAYS:
            raise StackError(
                f"{n.at('days')}[{i}]", f"must be one of {', '.join(DAYS)}, got {show(d)}"
            )
    if n.raw("spikes", None) is not None:
        if n.raw("spike_rps", None) is not None:
            raise StackError(n.at("spike_rps"), "give spikes or spike_rps, not both")
        spikes = n.items("spikes", _spike)
    else:
        # The market bell: a spike at each reservation window of the model's pool, as
        # long as the window unless spike_minutes says how long the spike outlasts it.
        rps = n.number("spike_rps", 0.0)
        minutes = n.raw("spike_minutes", None)
        spikes = tuple(
            Spike(
                start,
                (end.hour - start.hour) * 60.0 + end.minute - start.minute
                if minutes is None
                else n.number("spike_minutes", min=1, max=24 * 60),
                rps,
            )
            for r in reservations
            if r.pool == model.pool
            for start, end in r.windows
        )
    return LoadProfile(model=name, base_rps=n.number("base_rps"), spikes=spikes, days=days)


def _simulation(
    n: Fields,
    stack_tz: str,
    pools: tuple[Pool, ...],
    models: tuple[Model, ...],
    reservations: tuple[Reservation, ...],
) -> Simulation:
    names = [p.name for p in pools]
    start = _local(n.raw("start", "2025-03-03 00:00"), n.at("start"))
    by_name = {m.name: m for m in models}
    sim = Simulation(
        start=start.replace(tzinfo=ZoneInfo(stack_tz)),
        training_pool=n.text("training_pool", names[1] if len(names) > 1 else names[0]),
        batch_pool=n.text("batch_pool", names[-1]),
        training_min_gpus=n.integer("training_min_gpus", 4, min=1),
        training_share_percent=n.integer("training_share_percent", 50, min=0, max=100),
        checkpoint_interval_seconds=n.number("checkpoint_interval_seconds", 1800.0, min=1),
        ack_seconds=n.number("ack_seconds", 5.0),
        scale_up_delay_seconds=n.number("scale_up_delay_seconds", 300.0),
        slo_margin=n.number("slo_margin", 0.2, max=0.9),
        p0_load=n.items("p0_load", lambda m: _load_profile(m, by_name, reservations), []),
    )
    for key in ("training_pool", "batch_pool"):
        if getattr(sim, key) not in names:
            raise StackError(n.at(key), f"unknown pool {getattr(sim, key)!r}")
    _unique(sim.p0_load, n.at("p0_load"), "model")
    return sim


def _unique(items: tuple[Any, ...], path: str, what: str = "name") -> None:
    seen: set[str] = set()
    for i, it in enumerate(items):
        key = getattr(it, what)
        if key in seen:
            raise StackError(f"{path}[{i}].{what}", f"duplicate {what} {show(key)}")
        seen.add(key)


def parse_stack(doc: Any, source: str = "<memory>") -> Stack:
    """Build a validated ``Stack`` from a parsed YAML document."""
    if doc is None:
        raise StackError("", "the stack file is empty")
    if not isinstance(doc, dict):
        raise StackError("", f"the stack file must be a mapping, got {type(doc).__name__}")
    root = Fields(doc, "")
    version = root.raw("version")
    if isinstance(version, bool) or not isinstance(version, int) or version != 1:
        raise StackError("version", f"must be 1, got {show(version)}")

    pc_node = root.child("priority_classes")
    priority_classes: dict[str, int] = {}
    for key in list(pc_node.value):
        if not isinstance(key, str) or not _CLASS.fullmatch(key):
            raise StackError(
                f"priority_classes.{key}", f"class name {show(key)} must match {_CLASS.pattern}"
            )
        # Kubernetes' PriorityClass values are bounded the same way.
        priority_classes[key] = pc_node.integer(key, min=0, max=1_000_000_000)
    pc_node.done()
    if not priority_classes:
        raise StackError("priority_classes", "must name at least one class")

    cluster = root.child("cluster")
    node_groups = cluster.items("node_groups", _node_group)
    cluster.done()
    _unique(node_groups, "cluster.node_groups")

    pools = root.items("pools", _pool)
    _unique(pools, "pools")
    for i, p in enumerate(pools):
        if p.priority not in priority_classes:
            raise StackError(
                f"pools[{i}].priority",
                f"unknown priority class {show(p.priority)} (known: {', '.join(priority_classes)})",
            )
    total = sum(g.count * g.gpus_per_node for g in node_groups)
    nominal = sum(p.nominal_gpus for p in pools)
    if nominal != total:
        raise StackError(
            "pools", f"nominal_gpus add up to {nominal} but the cluster has {total} GPUs"
        )

    pool_names = {p.name for p in pools}
    models = root.items("models", _model)
    _unique(models, "models")
    for i, m in enumerate(models):
        if m.pool not in pool_names:
            raise StackError(f"models[{i}].pool", f"unknown pool {show(m.pool)}")

    policy_node = root.child("scheduler", {})
    policy = _policy(policy_node)
    policy_node.done()

    reservations = root.items("reservations", _reservation, [])
    _unique(reservations, "reservations")
    for i, r in enumerate(reservations):
        if r.pool not in pool_names:
            raise StackError(f"reservations[{i}].pool", f"unknown pool {show(r.pool)}")
        if r.gpus > total:
            raise StackError(f"reservations[{i}].gpus", f"exceeds the cluster's {total} GPUs")

    rbac = root.child("rbac")
    users = rbac.items("users", _user)
    rbac.done()
    _unique(users, "rbac.users")
    _unique(users, "rbac.users", "token_sha256")

    alerting_node = root.child("alerting")
    alerting = _alerting(alerting_node)
    alerting_node.done()
    # Lending windows without a timezone of their own are in the stack's.
    pools = tuple(
        replace(
            p,
            lending_windows=tuple(
                replace(w, timezone=w.timezone or alerting.timezone) for w in p.lending_windows
            ),
        )
        for p in pools
    )

    ports_node = root.child("ports", {})
    ports = Ports(
        scheduler=ports_node.integer("scheduler", 9470, min=1, max=65535),
        gpu_exporter=ports_node.integer("gpu_exporter", 9471, min=1, max=65535),
        model_server=ports_node.integer("model_server", 9472, min=1, max=65535),
    )
    ports_node.done()

    prom_node = root.child("prometheus", {})
    prometheus = Prometheus(
        scrape_interval_seconds=prom_node.seconds(
            "scrape_interval_seconds", 15.0, min=0.1, max=3600
        ),
        evaluation_interval_seconds=prom_node.seconds(
            "evaluation_interval_seconds", 15.0, min=0.1, max=3600
        ),
    )
    prom_node.done()
    window = FAST_WINDOW_SCRAPES * prometheus.scrape_interval_seconds
    if prometheus.evaluation_interval_seconds > window:
        raise StackError(
            "prometheus.evaluation_interval_seconds",
            f"must be <= {FAST_WINDOW_SCRAPES} x scrape_interval_seconds ({window:g}): "
            "the fast alert window; rules evaluated less often miss what happens between",
        )

    g = root.child("grafana")
    grafana = Grafana(
        url=_url(g, "url"),
        folder=g.text("folder", "NovaBrain"),
        datasource_uid=g.text("datasource_uid", "prometheus"),
        token_file=g.text("token_file", "/etc/novabrain/grafana-token"),
    )
    g.done()

    audit_node = root.child("audit", {})
    audit = _audit(audit_node)
    audit_node.done()

    k = root.child("kubernetes", {})
    kubernetes = _kubernetes(k, pool_names)
    k.done()

    sim_node = root.child("simulation", {})
    simulation = _simulation(sim_node, alerting.timezone, pools, models, reservations)
    sim_node.done()

    stack = Stack(
        name=root.text("name", pattern=_NAME),
        priority_classes=priority_classes,
        node_groups=node_groups,
        pools=pools,
        models=models,
        policy=policy,
        reservations=reservations,
        users=users,
        alerting=alerting,
        ports=ports,
        prometheus=prometheus,
        grafana=grafana,
        audit=audit,
        kubernetes=kubernetes,
        simulation=simulation,
        source=source,
    )
    root.done()
    return stack


def load_stack(path: str | Path = DEFAULT_STACK_PATH) -> Stack:
    """Read and validate a stack file. Raises ``StackError`` naming the bad field."""
    p = Path(path)
    return parse_stack(read_document(p), source=str(p))
