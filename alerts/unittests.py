"""promtool unit tests generated from the alert cases: every alert both fires and stays quiet.

``promtool test rules`` evaluates the committed rule files over synthetic
series; one test file per rule file, named ``<rules>.test.yml`` and kept in
``tests/`` next to ``rules/`` (rule paths are relative to the test file).
"""

from __future__ import annotations

from typing import Any

from alerts.promql import dur
from alerts.rules import Case, build
from deploy.stack import Stack


def test_file_name(rule_file: str) -> str:
    return rule_file.removesuffix(".yml") + ".test.yml"


def _series(fixture: tuple[tuple[str, str], ...], samples: int) -> list[dict[str, str]]:
    return [{"series": s, "values": v.format(n=samples, late=samples - 7)} for s, v in fixture]


def _tests(case: Case, step: float) -> list[dict[str, Any]]:
    # One sample per scrape, as Prometheus would have them, a few past eval_time.
    samples = round(case.eval_seconds / step) + 5
    interval = dur(step)
    what = f"{case.alertname} {case.title}".strip()
    eval_time = dur(case.eval_seconds)
    firing = [
        {"exp_labels": dict(e.labels), "exp_annotations": dict(e.annotations)}
        for e in case.expected
    ]
    return [
        {
            "name": f"{what} fires",
            "interval": interval,
            "input_series": _series(case.firing, samples),
            "alert_rule_test": [
                {"eval_time": eval_time, "alertname": case.alertname, "exp_alerts": firing}
            ],
        },
        {
            "name": f"{what} stays quiet",
            "interval": interval,
            "input_series": _series(case.quiet, samples),
            "alert_rule_test": [
                {"eval_time": eval_time, "alertname": case.alertname, "exp_alerts": []}
            ],
        },
    ]


def promtool_tests(stack: Stack, rules_dir: str = "../rules") -> dict[str, dict[str, Any]]:
    """Test file name -> promtool test document, for every rule file that has alerts."""
    cases, _ = build(stack)
    step = stack.prometheus.scrape_interval_seconds
    out: dict[str, dict[str, Any]] = {}
    for case in cases:
        name = test_file_name(case.file)
        doc = out.setdefault(
            name,
            {
                "rule_files": [f"{rules_dir}/{case.file}"],
                "evaluation_interval": dur(stack.prometheus.evaluation_interval_seconds),
                "tests": [],
            },
        )
        doc["tests"].extend(_tests(case, step))
    return out
