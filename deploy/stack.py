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
from datetime import time
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

DEFAULT_STACK_PATH = Path("deploy/stack.yaml")
ROLES = ("viewer", "operator", "admin", "alertmanager")
ACTIONS = ("rebalance", "scale")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class StackError(ValueError):
    """A stack file that cannot be used; ``path`` names the offending field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
        self.message = message


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
class Pool:
    name: str
    priority: str  # a key of Stack.priority_classes
    team: str
    nominal_gpus: int
    guaranteed_gpus: int  # never lent
    lending_limit: int  # at most this many of the nominal GPUs are lent out
    borrowing_limit: int  # at most this many GPUs are borrowed beyond nominal
    preemptible: bool
    min_nodes: int
    max_nodes: int


@dataclass(frozen=True)
class Slo:
    latency_threshold_seconds: float
    latency_quantile: float  # the alert's quantile, e.g. 0.99 for p99
    latency_target: float  # fraction of requests that must finish under the threshold
    availability_target: float


@dataclass(frozen=True)
class Model:
    name: str
    version: str
    pool: str
    slo: Slo
    action: str | None  # scheduler action an SLO breach may trigger
    min_qps: float  # below this for a while means "no traffic" where traffic is expected
    llm: bool


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
class Receiver:
    name: str
    webhook_url: str
    teams: tuple[str, ...]


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
class Kubernetes:
    """Where the Kubernetes actuator acts (``novabrain scheduler --actuator kubernetes``)."""

    namespace: str
    deployments: Mapping[str, str]  # pool -> the inference Deployment whose replicas it grows
    balloon_image: str


@dataclass(frozen=True)
class Audit:
    # None keeps every record in the live log; otherwise older records move,
    # unchanged and still verifiable as one chain, to an archive next to it.
    retention_days: float | None


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
    audit: Audit = Audit(retention_days=None)
    kubernetes: Kubernetes = Kubernetes("novabrain", {}, "registry.k8s.io/pause:3.9")
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


class _Node:
    """A mapping in the YAML document, with its path, that records which keys were read."""

    def __init__(self, value: Any, path: str) -> None:
        if not isinstance(value, dict):
            raise StackError(path, f"must be a mapping, got {type(value).__name__}")
        self.value: dict[str, Any] = value
        self.path = path
        self._read: set[str] = set()

    def _p(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def raw(self, key: str, default: Any = ..., *, required: bool = True) -> Any:
        self._read.add(key)
        if key not in self.value:
            if default is ... and required:
                raise StackError(self._p(key), "is required")
            return None if default is ... else default
        return self.value[key]

    def text(self, key: str, default: Any = ..., *, pattern: re.Pattern[str] | None = None) -> str:
        v = self.raw(key, default)
        if not isinstance(v, str) or not v:
            raise StackError(self._p(key), f"must be a non-empty string, got {v!r}")
        if pattern is not None and not pattern.match(v):
            raise StackError(self._p(key), f"{v!r} must match {pattern.pattern}")
        return v

    def integer(self, key: str, default: Any = ..., *, min: int = 0, max: int | None = None) -> int:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, int):
            raise StackError(self._p(key), f"must be an integer, got {v!r}")
        if v < min or (max is not None and v > max):
            bound = f">= {min}" if max is None else f"between {min} and {max}"
            raise StackError(self._p(key), f"must be {bound}, got {v}")
        return v

    def number(
        self,
        key: str,
        default: Any = ...,
        *,
        min: float = 0.0,
        max: float | None = None,
        exclusive_min: bool = False,
    ) -> float:
        v = self.raw(key, default)
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise StackError(self._p(key), f"must be a number, got {v!r}")
        low_bad = v <= min if exclusive_min else v < min
        if low_bad or (max is not None and v > max):
            op = ">" if exclusive_min else ">="
            bound = f"{op} {min}" + ("" if max is None else f" and <= {max}")
            raise StackError(self._p(key), f"must be {bound}, got {v}")
        return float(v)

    def flag(self, key: str, default: Any = ...) -> bool:
        v = self.raw(key, default)
        if not isinstance(v, bool):
            raise StackError(self._p(key), f"must be true or false, got {v!r}")
        return v

    def child(self, key: str, default: Any = ...) -> _Node:
        return _Node(self.raw(key, default), self._p(key))

    def items(self, key: str, build: Callable[[_Node], T], default: Any = ...) -> tuple[T, ...]:
        v = self.raw(key, default)
        if not isinstance(v, list):
            raise StackError(self._p(key), f"must be a list, got {type(v).__name__}")
        out = []
        for i, item in enumerate(v):
            node = _Node(item, f"{self._p(key)}[{i}]")
            out.append(build(node))
            node.done()
        return tuple(out)

    def str_list(self, key: str, default: Any = ...) -> tuple[str, ...]:
        v = self.raw(key, default)
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
            raise StackError(self._p(key), "must be a list of strings")
        return tuple(v)

    def done(self) -> None:
        """Unknown keys are errors: a misspelt field must not silently fall back to a default."""
        for key in self.value:
            if key not in self._read:
                raise StackError(self._p(str(key)), "unknown field")


def _node_group(n: _Node) -> NodeGroup:
    return NodeGroup(
        name=n.text("name", pattern=_NAME),
        count=n.integer("count", min=1, max=10_000),
        gpus_per_node=n.integer("gpus_per_node", min=1, max=16),
        gpu_model=n.text("gpu_model", "NVIDIA H100 80GB HBM3"),
        gpu_memory_bytes=n.integer("gpu_memory_bytes", 80 * 1024**3, min=1),
    )


def _pool(n: _Node) -> Pool:
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
    )
    if pool.guaranteed_gpus > nominal:
        raise StackError(n._p("guaranteed_gpus"), f"must be <= nominal_gpus ({nominal})")
    if pool.lending_limit > nominal - pool.guaranteed_gpus:
        raise StackError(
            n._p("lending_limit"),
            f"must be <= nominal_gpus - guaranteed_gpus ({nominal - pool.guaranteed_gpus}): "
            "the guaranteed floor is never lent",
        )
    if pool.max_nodes < pool.min_nodes:
        raise StackError(n._p("max_nodes"), f"must be >= min_nodes ({pool.min_nodes})")
    return pool


def _model(n: _Node) -> Model:
    s = n.child("slo")
    slo = Slo(
        latency_threshold_seconds=s.number("latency_threshold_seconds", min=0, exclusive_min=True),
        latency_quantile=s.number("latency_quantile", 0.99, min=0.5, max=0.999),
        latency_target=s.number("latency_target", 0.99, min=0.5, max=0.99999),
        availability_target=s.number("availability_target", 0.999, min=0.5, max=0.99999),
    )
    s.done()
    action = n.raw("action", None)
    if action is not None and action not in ACTIONS:
        raise StackError(
            n._p("action"), f"must be one of {', '.join(ACTIONS)} or absent, got {action!r}"
        )
    return Model(
        name=n.text("name", pattern=_NAME),
        version=n.text("version", "v1"),
        pool=n.text("pool"),
        slo=slo,
        action=action,
        min_qps=n.number("min_qps", 0.0),
        llm=n.flag("llm", False),
    )


def _policy(n: _Node) -> Policy:
    return Policy(
        fairness_factor_per_hour=n.number("fairness_factor_per_hour", 100.0),
        fairness_cap=n.number("fairness_cap", 400.0),
        min_runtime_seconds=n.number("min_runtime_seconds", 300.0),
        preemption_budget=n.integer("preemption_budget", 3, min=1),
        preemption_budget_window_seconds=n.number(
            "preemption_budget_window_seconds", 3600.0, min=1
        ),
        cycle_window_seconds=n.number("cycle_window_seconds", 900.0),
        default_grace_seconds=n.number("default_grace_seconds", 30.0),
        rebalance_step_gpus=n.integer("rebalance_step_gpus", 8, min=1),
        return_stabilization_seconds=n.number("return_stabilization_seconds", 300.0),
        scale_up_stabilization_seconds=n.number("scale_up_stabilization_seconds", 0.0),
        scale_down_stabilization_seconds=n.number("scale_down_stabilization_seconds", 300.0),
        scale_down_unneeded_seconds=n.number("scale_down_unneeded_seconds", 600.0),
        scale_up_wait_seconds=n.number("scale_up_wait_seconds", 60.0),
        dry_run=n.flag("dry_run", False),
    )


_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")


def _reservation(n: _Node) -> Reservation:
    tz = n.text("timezone")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise StackError(n._p("timezone"), f"unknown IANA timezone {tz!r}") from None
    days = n.str_list("days", list(DAYS[:5]))
    for i, d in enumerate(days):
        if d not in DAYS:
            raise StackError(f"{n._p('days')}[{i}]", f"must be one of {', '.join(DAYS)}, got {d!r}")
    windows = []
    for i, w in enumerate(n.str_list("windows")):
        m = _WINDOW.match(w)
        if not m:
            raise StackError(f"{n._p('windows')}[{i}]", f"must look like 09:15-09:45, got {w!r}")
        start, end = time(int(m[1]), int(m[2])), time(int(m[3]), int(m[4]))
        if end <= start:
            raise StackError(f"{n._p('windows')}[{i}]", "must end after it starts")
        windows.append((start, end))
    return Reservation(
        name=n.text("name", pattern=_NAME),
        pool=n.text("pool"),
        gpus=n.integer("gpus", min=1),
        timezone=tz,
        days=days,
        windows=tuple(windows),
        drain_lead_seconds=n.number("drain_lead_seconds", 300.0),
    )


def _user(n: _Node) -> User:
    role = n.text("role")
    if role not in ROLES:
        raise StackError(n._p("role"), f"must be one of {', '.join(ROLES)}, got {role!r}")
    return User(
        name=n.text("name"),
        role=role,
        # Only the hash is ever stored: the file can be committed and read by
        # anyone who may read the configuration.
        token_sha256=n.text("token_sha256", pattern=_SHA256),
    )


def _receiver(n: _Node) -> Receiver:
    return Receiver(
        name=n.text("name", pattern=_NAME),
        webhook_url=n.text("webhook_url"),
        teams=n.str_list("teams", []),
    )


def _alerting(n: _Node) -> Alerting:
    return Alerting(
        scheduler_webhook_url=n.text("scheduler_webhook_url"),
        webhook_credentials_file=n.text("webhook_credentials_file"),
        latency_alert_for_seconds=n.number("latency_alert_for_seconds", 60.0),
        group_wait_seconds=n.number("group_wait_seconds", 10.0),
        group_interval_seconds=n.number("group_interval_seconds", 30.0),
        repeat_interval_seconds=n.number("repeat_interval_seconds", 4 * 3600.0),
        runbook_base_url=n.text("runbook_base_url"),
        oncall=n.items("oncall", _receiver),
    )


def _unique(items: tuple[Any, ...], path: str, what: str = "name") -> None:
    seen: set[str] = set()
    for i, it in enumerate(items):
        key = getattr(it, what)
        if key in seen:
            raise StackError(f"{path}[{i}].{what}", f"duplicate {what} {key!r}")
        seen.add(key)


def parse_stack(doc: Any, source: str = "<memory>") -> Stack:
    """Build a validated ``Stack`` from a parsed YAML document."""
    root = _Node(doc, "")
    version = root.raw("version")
    if version != 1:
        raise StackError("version", f"must be 1, got {version!r}")

    pc_node = root.child("priority_classes")
    priority_classes: dict[str, int] = {}
    for key in list(pc_node.value):
        priority_classes[str(key)] = pc_node.integer(str(key), min=0)
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
                f"unknown priority class {p.priority!r} (known: {', '.join(priority_classes)})",
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
            raise StackError(f"models[{i}].pool", f"unknown pool {m.pool!r}")

    policy_node = root.child("scheduler", {})
    policy = _policy(policy_node)
    policy_node.done()

    reservations = root.items("reservations", _reservation, [])
    _unique(reservations, "reservations")
    for i, r in enumerate(reservations):
        if r.pool not in pool_names:
            raise StackError(f"reservations[{i}].pool", f"unknown pool {r.pool!r}")
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

    ports_node = root.child("ports", {})
    ports = Ports(
        scheduler=ports_node.integer("scheduler", 9470, min=1, max=65535),
        gpu_exporter=ports_node.integer("gpu_exporter", 9471, min=1, max=65535),
        model_server=ports_node.integer("model_server", 9472, min=1, max=65535),
    )
    ports_node.done()

    prom_node = root.child("prometheus", {})
    prometheus = Prometheus(
        scrape_interval_seconds=prom_node.number("scrape_interval_seconds", 15.0, min=0.1),
        evaluation_interval_seconds=prom_node.number("evaluation_interval_seconds", 15.0, min=0.1),
    )
    prom_node.done()

    g = root.child("grafana")
    grafana = Grafana(
        url=g.text("url"),
        folder=g.text("folder", "NovaBrain"),
        datasource_uid=g.text("datasource_uid", "prometheus"),
        token_file=g.text("token_file", "/etc/novabrain/grafana-token"),
    )
    g.done()

    audit_node = root.child("audit", {})
    retention = audit_node.raw("retention_days", None)
    if retention is not None:
        retention = audit_node.number("retention_days", min=1)
    audit_node.done()

    k = root.child("kubernetes", {})
    dep_node = k.child("deployments", {})
    deployments: dict[str, str] = {}
    for pool_name in list(dep_node.value):
        if pool_name not in pool_names:
            raise StackError(f"kubernetes.deployments.{pool_name}", f"unknown pool {pool_name!r}")
        deployments[str(pool_name)] = dep_node.text(str(pool_name), pattern=_NAME)
    dep_node.done()
    kubernetes = Kubernetes(
        namespace=k.text("namespace", "novabrain", pattern=_NAME),
        deployments=deployments,
        balloon_image=k.text("balloon_image", "registry.k8s.io/pause:3.9"),
    )
    k.done()

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
        audit=Audit(retention_days=retention),
        kubernetes=kubernetes,
        source=source,
    )
    root.done()
    return stack


def load_stack(path: str | Path = DEFAULT_STACK_PATH) -> Stack:
    """Read and validate a stack file. Raises ``StackError`` naming the bad field."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise StackError("", f"cannot read stack file {p}: {e.strerror}") from None
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise StackError("", f"{p} is not valid YAML{where}") from None
    return parse_stack(doc, source=str(p))
