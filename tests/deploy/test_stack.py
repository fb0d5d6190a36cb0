"""The stack file: the committed example loads, and every kind of mistake names its field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from deploy.stack import (
    DEFAULT_STACK_PATH,
    POLICY_BOUNDS,
    Stack,
    StackError,
    load_stack,
    parse_stack,
)

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
        (["pools", 0, "guaranteed_gpus"], -1, "pools[0].guaranteed_gpus", "between 0 and"),
        (["pools", 0, "preemptible"], "no", "pools[0].preemptible", "true or false"),
        (["models", 0, "pool"], "nowhere", "models[0].pool", "unknown pool"),
        (
            ["models", 0, "slo", "latency_threshold_seconds"],
            0,
            "models[0].slo.latency_threshold_seconds",
            ">= 0.001",
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
        (
            ["pools", 0, "lending_windows", 0, "gpus"],
            9,
            "pools[0].lending_windows[0].gpus",
            "between 1 and 8",
        ),
        (
            ["pools", 0, "lending_windows", 0, "times", 0],
            "18:00-18:00",
            "pools[0].lending_windows[0].times[0]",
            "same time",
        ),
        (
            ["pools", 0, "lending_windows", 0, "times", 0],
            "25:00-08:30",
            "pools[0].lending_windows[0].times[0]",
            "like 18:00-08:30",
        ),
        (
            ["pools", 0, "lending_windows", 1, "days", 0],
            "saturday",
            "pools[0].lending_windows[1].days[0]",
            "must be one of",
        ),
        (
            ["pools", 0, "lending_windows", 0, "timezone"],
            "Mars/Olympus",
            "pools[0].lending_windows[0].timezone",
            "unknown IANA",
        ),
        (
            ["pools", 0, "lending_windows", 0, "lends"],
            6,
            "pools[0].lending_windows[0].lends",
            "unknown field",
        ),
        (
            ["scheduler", "max_preemptions_non_checkpointing"],
            -1,
            "scheduler.max_preemptions_non_checkpointing",
            "between 0 and 1000",
        ),
        (
            ["scheduler", "drain_after_seconds"],
            "1h",
            "scheduler.drain_after_seconds",
            "must be a number",
        ),
        (["scheduler", "cost_before_class"], "yes", "scheduler.cost_before_class", "true or false"),
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


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize(
    ("path", "value", "field", "words"),
    [
        # Not finite: NaN compares false with every bound, inf passes every lower one.
        (["models", 0, "slo", "latency_threshold_seconds"], NAN, "", "finite"),
        (["models", 0, "slo", "latency_target"], INF, "", "finite"),
        (["scheduler", "fairness_cap"], NAN, "", "finite"),
        (["scheduler", "min_runtime_seconds"], -INF, "", "finite"),
        (["audit", "retention_days"], NAN, "", "finite"),
        (["prometheus", "scrape_interval_seconds"], INF, "", "finite"),
        # Integers where integers are meant: bool is not one, nor is 1.0.
        (["version"], True, "", "must be 1"),
        (["version"], 1.0, "", "must be 1"),
        (["pools", 0, "nominal_gpus"], True, "", "must be an integer"),
        (["scheduler", "preemption_budget"], 2.0, "", "must be an integer"),
        # The API's bounds, from the same definition.
        (["scheduler", "rebalance_step_gpus"], 10**30, "", "between 1 and 4096"),
        (["scheduler", "rebalance_step_gpus"], 4097, "", "between 1 and 4096"),
        (["scheduler", "preemption_budget"], 1001, "", "between 1 and 1000"),
        (["scheduler", "cycle_window_seconds"], 1e10, "", "<= 1000000000"),
        (["priority_classes", "P0"], 10**30, "", "between 0 and"),
        # Whole-string patterns: a trailing newline is not part of a valid value.
        (["rbac", "users", 0, "token_sha256"], "a" * 64 + "\n", "", "must match"),
        (["pools", 0, "team"], "risk\n", "", "must match"),
        (["models", 0, "name"], "risk-scorer\n", "", "must match"),
        (["models", 0, "version"], "v3\n", "", "must match"),
        (["name"], "novabrain\n", "", "must match"),
        (["reservations", 0, "windows", 0], "09:15-09:45\n", "", "must look like"),
        (["rbac", "users", 1, "name"], "sre\nviewer", "", "printable text on one line"),
        (["rbac", "users", 1, "name"], " sre", "", "space"),
        (["rbac", "users", 1, "name"], "x" * 129, "", "at most 128"),
        (["grafana", "folder"], "Nova\tBrain", "", "printable text on one line"),
        (["alerting", "oncall", 0, "teams", 0], "risk\n", "", "must match"),
        # URLs that Alertmanager and Grafana clients would choke on.
        (["grafana", "url"], "not a url", "", "http:// or https://"),
        (["alerting", "scheduler_webhook_url"], "ftp://x/y", "", "http:// or https://"),
        (["alerting", "alertmanager_url"], "http://h:99999/x", "", "not a URL"),
        (["alerting", "group_interval_seconds"], 0, "", ">= 0.001"),
        (["alerting", "latency_alert_for_seconds"], 0.0001, "", "0 or at least 0.001"),
        (["scheduler", "fairness_factor_per_hour"], 0, "", ">= 1"),
        (["scheduler", "cycle_window_seconds"], 0, "", ">= 1"),
        (["prometheus", "evaluation_interval_seconds"], 61, "", "fast alert window"),
        # A list where a name is meant (the property test's find: a TypeError, not an error).
        (["alerting", "oncall", 0, "channels", 0, "type"], ["email"], "", "must be one of"),
    ],
)
def test_values_the_api_or_later_steps_would_refuse(
    doc: dict[str, Any], path: list[Any], value: Any, field: str, words: str
) -> None:
    with pytest.raises(StackError) as e:
        parse_stack(_mutate(doc, path, value))
    expected = ".".join(str(k) for k in path).replace(".0", "[0]").replace(".1", "[1]")
    assert e.value.path == (field or expected)
    assert words in str(e.value)


def test_a_priority_class_name_must_be_a_string(doc: dict[str, Any]) -> None:
    d = copy.deepcopy(doc)
    d["priority_classes"][7] = 100
    with pytest.raises(StackError, match="class name 7"):
        parse_stack(d)


# Ten levels of ten aliases each: a value of 10**10 strings in a 500-byte file.
_LAUGHS = (
    b"l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
    + b"".join(
        b"l%d: &l%d [%s]\n" % (i, i, b", ".join([b"*l%d" % (i - 1)] * 10)) for i in range(1, 10)
    )
    + b"version: *l9\n"
)


def _load(tmp_path: Path, data: bytes) -> Stack:
    p = tmp_path / "stack.yaml"
    p.write_bytes(data)
    return load_stack(p)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "is empty"),
        (b"- a\n- b\n", "must be a mapping, got list"),
        (
            b"version: 1\nname: a\nversion: 1\n",
            "line 3, column 1: duplicate key 'version' (first given at line 1)",
        ),
        (
            b"a:\n  b: 1\n  c: 2\n  b: 3\n",
            "line 4, column 3: duplicate key 'b' (first given at line 2)",
        ),
        ("name: caf\u00e9\n".encode("utf-16"), "is UTF-16; save it as UTF-8"),
        ("name: caf\u00e9\n".encode("utf-16-be"), "is not UTF-8"),
        ("version: 1\nname: caf\u00e9\n".encode("latin-1"), "is not UTF-8: byte 0xe9 at line 2"),
        (b"a: [" * 5000 + b"]" * 5000, "nested deeper than 32 levels"),
        (b"a:\n" + b"".join(b" " * i + b"- \n" for i in range(1, 200)), "nested deeper than 32"),
        (b"version: &x [*x]\n", "version: must be 1, got [[[[...]]]]"),
        (_LAUGHS, "version: must be 1, got [[[[...], [...], [...], [...], ...], "),
        (b"name: a\x00b\n", "not valid YAML"),
        (b"pools: [\n", "not valid YAML at line 2"),
        (b"# " + b"x" * (1 << 20) + b"\n", "larger than 1048576 bytes"),
    ],
    ids=[
        "empty",
        "list",
        "duplicate-top",
        "duplicate-nested",
        "utf16",
        "utf16-no-bom",
        "latin1",
        "deep-flow",
        "deep-block",
        "recursive-alias",
        "billion-laughs",
        "nul",
        "truncated",
        "huge",
    ],
)
def test_unreadable_files_are_one_error_naming_the_problem(
    tmp_path: Path, data: bytes, words: str
) -> None:
    with pytest.raises(StackError) as e:
        _load(tmp_path, data)
    assert words in str(e.value)
    assert "\n" not in str(e.value) and len(str(e.value)) < 300


def test_merge_keys_may_override_what_they_merge(tmp_path: Path) -> None:
    """A key given by "<<: *anchor" and again beside it is an override, not a duplicate."""
    text = (ROOT / DEFAULT_STACK_PATH).read_text()
    text = text.replace(
        "  - name: p1-train\n    priority: P1\n",
        "  - <<: {priority: P2, team: nobody}\n    name: p1-train\n    priority: P1\n    team: ml-platform\n",
    )
    text = text.replace("    team: ml-platform\n    nominal_gpus: 16", "    nominal_gpus: 16", 1)
    s = _load(tmp_path, text.encode())
    assert s.pool("p1-train").priority == "P1" and s.pool("p1-train").team == "ml-platform"


def test_a_utf8_byte_order_mark_is_fine(tmp_path: Path) -> None:
    s = _load(tmp_path, b"\xef\xbb\xbf" + (ROOT / DEFAULT_STACK_PATH).read_bytes())
    assert s.name == "novabrain"


@pytest.mark.parametrize(
    "name",
    [
        "x, role: admin",
        "# not a comment",
        "*alias",
        "ops: team",
        "'quoted'",
        "null",
        "1e3",
        "Zoë 李",
    ],
)
def test_any_printable_user_name_is_fine(doc: dict[str, Any], name: str) -> None:
    s = parse_stack(_mutate(doc, ["rbac", "users", 1, "name"], name))
    assert s.users[1].name == name


def test_the_stack_and_the_policy_api_take_the_same_values(doc: dict[str, Any]) -> None:
    """At each bound of each policy setting, the stack file and PATCH /api/v1/policy agree."""
    from scheduler.service.errors import PayloadError
    from scheduler.service.routes import POLICY_PATCH
    from scheduler.service.validation import validate

    def stack_takes(key: str, value: Any) -> bool:
        try:
            parse_stack(_mutate(doc, ["scheduler", key], value))
        except StackError:
            return False
        return True

    def api_takes(key: str, value: Any) -> bool:
        try:
            validate({key: value}, POLICY_PATCH)
        except PayloadError:
            return False
        return True

    settings = [k for k in POLICY_PATCH["properties"] if k != "dry_run"]
    assert len(settings) >= 12
    for key in settings:
        bound = POLICY_BOUNDS[key]
        step = 1 if bound.integer else 1e-3
        values = [bound.min, bound.max, bound.min - step, bound.max + step, float("nan"), True]
        if bound.integer:
            values += [int(bound.min) + 0.5, 10**30]
        for value in values:
            assert stack_takes(key, value) == api_takes(key, value), (key, value)
        assert stack_takes(key, bound.max) and not stack_takes(key, bound.max + step), key


def test_p0_lends_while_the_market_is_closed(doc: dict[str, Any]) -> None:
    """The committed example: p0-risk lends up to 6 GPUs on weeknights and all weekend, in
    the stack's timezone; the policy bounds lost work and drains for starving heads."""
    s = parse_stack(doc)
    nights, weekend = s.pool("p0-risk").lending_windows
    assert (nights.gpus, nights.windows, nights.timezone) == (
        6,
        ((18 * 60, 8 * 60 + 30),),
        "Asia/Shanghai",
    )
    assert nights.days == ("sun", "mon", "tue", "wed", "thu", "fri")
    assert (weekend.days, weekend.windows) == (("sat", "sun"), ((0, 24 * 60),))
    assert nights.drain_lead_seconds == 300
    assert s.pool("p1-train").lending_windows == ()
    p = s.policy
    assert (p.max_preemptions_non_checkpointing, p.max_preemptions_checkpointing) == (1, 5)
    assert (p.cost_before_class, p.preemption_priority_boost, p.drain_after_seconds) == (
        True,
        100.0,
        3600.0,
    )
    # A window may name its own timezone.
    own = _mutate(doc, ["pools", 0, "lending_windows", 0, "timezone"], "Europe/London")
    assert parse_stack(own).pool("p0-risk").lending_windows[0].timezone == "Europe/London"
