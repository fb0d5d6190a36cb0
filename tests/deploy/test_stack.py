"""The stack file: the committed example loads, and every kind of mistake names its field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.stack import DEFAULT_STACK_PATH, StackError, load_stack, parse_stack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return yaml.safe_load((ROOT / DEFAULT_STACK_PATH).read_text())


def test_example_stack_describes_the_bank() -> None:
    s = load_stack(ROOT / DEFAULT_STACK_PATH)
    assert [p.name for p in s.pools] == ["p0-risk", "p1-train", "p2-batch"]
    assert [s.pool(p.name).priority for p in s.pools] == ["P0", "P1", "P2"]
    assert s.total_gpus == 32 and len({g.node for g in s.gpus()}) == 4
    (m,) = s.models
    assert (m.name, m.pool, m.slo.latency_threshold_seconds, m.slo.latency_quantile) == (
        "risk-scorer",
        "p0-risk",
        0.05,
        0.99,
    )
    assert s.top_priority_class() == "P0"
    assert m.serving is not None
    assert (m.serving.service_time_seconds, m.serving.gpus_per_replica) == (0.008, 4)


def test_gpu_uuids_are_unique_and_stable() -> None:
    a = load_stack(ROOT / DEFAULT_STACK_PATH).gpus()
    b = load_stack(ROOT / DEFAULT_STACK_PATH).gpus()
    assert a == b
    assert len({g.uuid for g in a}) == len(a)
    assert all(g.uuid.startswith("GPU-") for g in a)


def _mutate(doc: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    d = copy.deepcopy(doc)
    cur = d
    for k in path[:-1]:
        cur = cur[k]
    if value is _DELETE:
        del cur[path[-1]]
    else:
        cur[path[-1]] = value
    return d


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        (["version"], 2, "version", "must be 1"),
        (["pools", 1, "lending_limit"], 15, "pools[1].lending_limit", "guaranteed floor"),
        (["pools", 1, "priority"], "P9", "pools[1].priority", "unknown priority class"),
        (["pools", 0, "nominal_gpus"], 9, "pools", "add up to 33"),
        (["pools", 2, "name"], "p1-train", "pools[2].name", "duplicate"),
        (["pools", 0, "guaranteed_gpus"], -1, "pools[0].guaranteed_gpus", ">= 0"),
        (["pools", 0, "preemptible"], "no", "pools[0].preemptible", "true or false"),
        (["models", 0, "pool"], "nowhere", "models[0].pool", "unknown pool"),
        (
            ["models", 0, "slo", "latency_threshold_seconds"],
            0,
            "models[0].slo.latency_threshold_seconds",
            "> 0",
        ),
        (
            ["models", 0, "slo", "latency_treshold_seconds"],
            1,
            "models[0].slo.latency_treshold_seconds",
            "unknown field",
        ),
        (["models", 0, "action"], "reboot", "models[0].action", "must be one of"),
        (
            ["models", 0, "serving", "service_time_seconds"],
            0,
            "models[0].serving.service_time_seconds",
            "> 0",
        ),
        (
            ["models", 0, "serving", "gpus_per_replica"],
            0,
            "models[0].serving.gpus_per_replica",
            "between 1 and 64",
        ),
        (
            ["models", 0, "serving", "replicas"],
            2,
            "models[0].serving.replicas",
            "unknown field",
        ),
        (
            ["reservations", 0, "timezone"],
            "Mars/Olympus",
            "reservations[0].timezone",
            "unknown IANA",
        ),
        (
            ["reservations", 0, "windows", 1],
            "15:15-14:45",
            "reservations[0].windows[1]",
            "end after",
        ),
        (["reservations", 0, "days", 0], "monday", "reservations[0].days[0]", "must be one of"),
        (["rbac", "users", 1, "role"], "root", "rbac.users[1].role", "must be one of"),
        (
            ["rbac", "users", 1, "token_sha256"],
            "plaintext-token",
            "rbac.users[1].token_sha256",
            "must match",
        ),
        (["scheduler", "fairness_factor"], 1, "scheduler.fairness_factor", "unknown field"),
        (
            ["cluster", "node_groups", 0, "gpus_per_node"],
            0,
            "cluster.node_groups[0].gpus_per_node",
            "between 1 and 16",
        ),
        (["grafana", "url"], _DELETE, "grafana.url", "is required"),
        (["ports", "scheduler"], 70000, "ports.scheduler", "between 1 and 65535"),
        (["audit", "retention_days"], 0, "audit.retention_days", ">= 1"),
        (
            ["kubernetes", "deployments", "nowhere"],
            "x",
            "kubernetes.deployments.nowhere",
            "unknown pool",
        ),
        (["kubernetes", "namespace"], "Bad_NS", "kubernetes.namespace", "must match"),
    ],
)
def test_errors_name_the_field(
    doc: dict[str, Any], path: list[Any], value: Any, field: str, words: str
) -> None:
    with pytest.raises(StackError) as e:
        parse_stack(_mutate(doc, path, value))
    assert e.value.path == field
    assert words in str(e.value)


def test_invalid_yaml_and_missing_file_are_stack_errors(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text("pools: [\n")
    with pytest.raises(StackError, match="not valid YAML at line"):
        load_stack(bad)
    with pytest.raises(StackError, match="cannot read"):
        load_stack(tmp_path / "missing.yaml")


def test_with_timing_changes_only_the_clock(doc: dict[str, Any]) -> None:
    s = parse_stack(doc)
    fast = s.with_timing(
        scrape_interval_seconds=1,
        latency_alert_for_seconds=3,
        group_wait_seconds=1,
        group_interval_seconds=2,
        return_stabilization_seconds=10,
    )
    assert fast.prometheus.scrape_interval_seconds == 1
    assert fast.alerting.latency_alert_for_seconds == 3
    assert fast.policy.return_stabilization_seconds == 10
    assert fast.pools == s.pools and fast.models == s.models
