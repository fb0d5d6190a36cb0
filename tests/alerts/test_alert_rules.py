"""Rules: promtool accepts them, and promtool's unit tests fire and quiet every alert."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from alerts.generate import write_all
from alerts.promql import dur, le, num, sel
from alerts.rules import (
    CRITICAL,
    INFO,
    PLATFORM_TEAM,
    TRITON_FILE,
    WARNING,
    build,
    fast_window,
    latency_alert_name,
    p0_models,
    quantile_name,
    render,
    rule_files,
)
from deploy.demo import FAST_TIMING
from deploy.stack import Stack
from exporters.catalog.model import MODEL_REQUEST_DURATION
from scheduler.core.alerts import REQUEST_RATE_ANNOTATION

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")


def _promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_promtool_checks_and_unit_tests_pass(any_stack: Stack, tmp_path: Path) -> None:
    write_all(any_stack, tmp_path)
    rules = sorted(p.name for p in (tmp_path / "rules").glob("*.yml"))
    checked = _promtool("check", "rules", *(f"rules/{r}" for r in rules), cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tests = sorted(f"tests/{p.name}" for p in (tmp_path / "tests").glob("*.yml"))
    # Triton's recording rules are tested by their owner; every other file has alerts and tests.
    assert len(tests) == len([r for r in rules if r != TRITON_FILE])
    tested = _promtool("test", "rules", *tests, cwd=tmp_path)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    config = _promtool("check", "config", "prometheus.yml", cwd=tmp_path)
    assert config.returncode == 0, config.stdout + config.stderr


def test_a_broken_rule_fails_its_unit_test(stack: Stack, tmp_path: Path) -> None:
    """The generated tests can fail: raise the P0 latency threshold tenfold and the firing case breaks."""
    write_all(stack, tmp_path)
    path = tmp_path / "rules/slo.rules.yml"
    doc = yaml.safe_load(path.read_text())
    model = next(m for m in stack.models if m.action)
    thr = num(model.slo.latency_threshold_seconds)
    for group in doc["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == latency_alert_name(model):
                rule["expr"] = rule["expr"].replace(f"> {thr}", f"> {num(10 * float(thr))}")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    res = _promtool("test", "rules", "tests/slo.rules.test.yml", cwd=tmp_path)
    assert res.returncode != 0
    assert f"{latency_alert_name(model)} {model.name} fires" in res.stdout + res.stderr


def test_every_alert_has_a_firing_and_a_quiet_case(any_stack: Stack) -> None:
    cases, _ = build(any_stack)
    names = set()
    for case in cases:
        assert case.expected, case.alertname
        assert case.firing and case.quiet
        assert case.firing != case.quiet
        names.add(case.alertname)
    rules = [
        r["alert"]
        for doc in rule_files(any_stack).values()
        for g in doc["groups"]
        for r in g["rules"]
        if "alert" in r
    ]
    assert set(rules) == names
    # Each case owns its rules: every alerting rule is tested by exactly one case.
    assert sum(len(c.rules) for c in cases) == len(rules)


def test_every_alert_carries_severity_annotations_and_routing_labels(stack: Stack) -> None:
    for doc in rule_files(stack).values():
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                labels, ann = rule["labels"], rule["annotations"]
                assert labels["severity"] in (CRITICAL, WARNING, INFO)
                # P0's latency alert carries its model's request rate as well (sizes the grant).
                extra = (
                    [REQUEST_RATE_ANNOTATION] if rule["labels"].get("action") == "rebalance" else []
                )
                assert list(ann) == [
                    "summary",
                    "summary_zh",
                    "description",
                    "description_zh",
                    "value",
                    "runbook_url",
                    "dashboard_url",
                    *extra,
                ]
                assert ann["runbook_url"] == f"{stack.alerting.runbook_base_url}/{rule['alert']}.md"
                assert ann["dashboard_url"].startswith(stack.grafana.url)
                assert "team" in labels
                if labels["team"] != PLATFORM_TEAM:
                    assert labels["team"] == stack.pool(labels["pool"]).team
                if "action" in labels:
                    # Only the fast latency alert of a model with an action may trigger the scheduler.
                    assert rule["alert"] == latency_alert_name(stack.models[0])
                    model = next(m for m in stack.models if m.name == labels["model"])
                    assert labels["action"] == model.action


def test_p0_latency_alert_reads_the_stack(any_stack: Stack) -> None:
    model = next(m for m in any_stack.models if m.action)
    rules = [
        r
        for g in rule_files(any_stack)["slo.rules.yml"]["groups"]
        for r in g["rules"]
        if r.get("alert") == latency_alert_name(model)
    ]
    assert len(rules) == 1
    rule = rules[0]
    assert rule["for"] == dur(any_stack.alerting.latency_alert_for_seconds)
    # Where the threshold lies is behaviour, checked by promtool in test_alert_boundaries.
    assert f"[{fast_window(any_stack)}]" in rule["expr"]
    assert rule["labels"]["action"] == "rebalance"
    assert rule["labels"]["severity"] == CRITICAL


def test_fast_window_follows_the_scrape_interval(stack: Stack) -> None:
    assert fast_window(stack) == "1m"  # 4 x 15 s
    assert fast_window(stack.with_timing(**FAST_TIMING)) == "4s"  # the demo scrapes every 1 s


def test_latency_slo_counts_the_threshold_bucket(stack: Stack) -> None:
    model = stack.models[0]
    expr = yaml.safe_dump(rule_files(stack)["slo.rules.yml"])
    bucket = sel(
        MODEL_REQUEST_DURATION.bucket, model=model.name, le=le(model.slo.latency_threshold_seconds)
    )
    assert bucket in expr.replace("\n      ", " ")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(60, "1m"), (4, "4s"), (150, "150s"), (0.5, "500ms"), (86400 * 3, "3d"), (3600 * 6, "6h")],
)
def test_durations(seconds: float, text: str) -> None:
    assert dur(seconds) == text


def test_helpers() -> None:
    assert le(0.05) == "0.05" and le(1) == "1.0" and le(float("inf")) == "+Inf"
    assert num(14.4 * (1 - 0.999)) == "0.0144"
    assert quantile_name(0.99) == "p99" and quantile_name(0.999) == "p99.9"
    assert render("{{ $labels.a }}-{{ $labels.b }}", {"a": "x"}) == "x-<no value>"
    assert sel("m", {"r": "!~a|b"}, p="x") == 'm{p="x",r!~"a|b"}'


def test_burn_rate_pages_need_both_windows(stack: Stack, tmp_path: Path) -> None:
    """An hour of 50% slow requests, then ten good minutes: the 1h/5m page has recovered (its
    short window is clean) while the 6h/30m page and both tickets still fire."""
    write_all(stack, tmp_path)
    model = next(m for m in stack.models if m.action)
    labels = {"model": model.name, "version": model.version, "pool": model.pool}
    thr = model.slo.latency_threshold_seconds
    b = MODEL_REQUEST_DURATION
    doc = {
        "rule_files": ["../rules/slo.rules.yml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": sel(b.bucket, **labels, le=le(thr)),
                        "values": "0+50x60 3100+100x15",
                    },
                    {"series": sel(b.bucket, **labels, le="+Inf"), "values": "0+100x75"},
                    {"series": sel(b.count, **labels), "values": "0+100x75"},
                ],
                "promql_expr_test": [
                    {
                        "expr": f"count(ALERTS{{alertname='NovabrainModelLatencyBudgetBurn',alertstate='firing',long_window='{w}'}})",
                        "eval_time": "70m",
                        "exp_samples": [{"labels": "{}", "value": 1}],
                    }
                    for w in ("6h", "1d", "3d")
                ]
                + [
                    {
                        "expr": "ALERTS{alertname='NovabrainModelLatencyBudgetBurn',long_window='1h'}",
                        "eval_time": "70m",
                        "exp_samples": [],
                    },
                    {
                        "expr": "count(ALERTS{alertname='NovabrainModelLatencyBudgetBurn',alertstate='firing'}) == 3",
                        "eval_time": "70m",
                        "exp_samples": [{"labels": "{}", "value": 3}],
                    },
                ],
            }
        ],
    }
    (tmp_path / "tests/windows.test.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    res = _promtool("test", "rules", "tests/windows.test.yml", cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_slo_thresholds_are_bucket_bounds_the_model_server_exports(stack: Stack) -> None:
    """The latency SLO counts ``le="<threshold>"``: the instrumentation must export exactly that
    bucket (and 4x it, which the promtool fixtures use), spelt the same way."""
    from exporters.instrument.buckets import buckets_for

    for m in p0_models(stack):
        bounds = {le(b) for b in buckets_for(m).request_duration}
        assert le(m.slo.latency_threshold_seconds) in bounds
        assert le(4 * m.slo.latency_threshold_seconds) in bounds


@settings(max_examples=50, deadline=None)
@given(st.floats(min_value=0.001, max_value=30.0).map(lambda x: float(f"{x:.3g}")))
def test_any_threshold_is_a_bucket_bound(threshold: float) -> None:
    from exporters.instrument.buckets import latency_buckets

    assert le(threshold) in {le(b) for b in latency_buckets(threshold)}
