"""Triton's counters in our catalog's terms, checked by promtool on synthetic Triton series."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alerts.triton import (
    FAILURE,
    QUEUE_DURATION_US,
    REQUEST_DURATION_US,
    SUCCESS,
    model_rules,
    triton_rule_group,
)
from deploy.stack import Stack
from exporters.catalog import PREFIX
from exporters.catalog.model import (
    MODEL_ERRORS,
    MODEL_QUEUE_WAIT,
    MODEL_REQUEST_DURATION,
    MODEL_REQUESTS,
)

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")

NEW = 'job="triton",instance="t1",model="risk-scorer",version="1"'  # Triton with the reason label
OLD = 'job="triton",instance="t0",model="risk-scorer",version="1"'  # before the reason label


def _promtool(tmp_path: Path, stack: Stack, tests: list[dict[str, object]]) -> None:
    (tmp_path / "triton.yml").write_text(yaml.safe_dump({"groups": [triton_rule_group(stack)]}))
    doc = {"rule_files": ["triton.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "test.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    for argv in (["check", "rules", "triton.yml"], ["test", "rules", "test.yml"]):
        r = subprocess.run(
            ["promtool", *argv], cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0, r.stdout + r.stderr


def test_rules_are_valid_for_every_model_once(rich_stack: Stack, tmp_path: Path) -> None:
    group = triton_rule_group(rich_stack)
    # risk-scorer has two versions in this stack: still one rule set per name.
    models = {r["expr"].split('model="')[1].split('"')[0] for r in group["rules"]}
    assert models == {"risk-scorer", "chat-llm"}
    per_model = len(model_rules(rich_stack.models[0]))
    assert per_model >= 10 and len(group["rules"]) == len(models) * per_model
    _promtool(tmp_path, rich_stack, [])


def test_triton_counters_become_catalog_series(stack: Stack, tmp_path: Path) -> None:
    def series(name: str, labels: str, values: str) -> dict[str, str]:
        return {"series": f"{name}{{{labels}}}", "values": values}

    inputs = [
        series(SUCCESS, NEW, "0+10x10"),
        series(FAILURE, NEW + ',reason="REJECTED"', "0+1x10"),
        series(FAILURE, NEW + ',reason="BACKEND"', "0+2x10"),
        series(FAILURE, NEW + ',reason="CANCELED"', "0+3x10"),
        series(FAILURE, NEW + ',reason="OTHER"', "0+4x10"),
        series(FAILURE, OLD, "0+5x10"),
        series(SUCCESS, OLD, "0+20x10"),
        # 10 successes a minute take 0.1 s in all: 10 ms each; 2 ms of it queued.
        series(REQUEST_DURATION_US, NEW, "0+100000x10"),
        series(QUEUE_DURATION_US, NEW, "0+20000x10"),
        # A model the stack does not declare.
        series(SUCCESS, 'job="triton",instance="t1",model="not-ours",version="1"', "0+1x10"),
    ]
    common = 'job="triton",model="risk-scorer",pool="p0-risk",source="triton",version="1"'

    def sample(name: str, instance: str, value: float, **extra: str) -> dict[str, object]:
        more = "".join(f',{k}="{v}"' for k, v in extra.items())
        return {"labels": f'{name}{{{common},instance="{instance}"{more}}}', "value": value}

    req, err = MODEL_REQUESTS.series, MODEL_ERRORS.series
    checks = [
        (
            req,
            [
                sample(req, "t0", 50, outcome="error"),
                sample(req, "t0", 200, outcome="ok"),
                sample(req, "t1", 30, outcome="cancelled"),
                sample(req, "t1", 70, outcome="error"),  # rejected + backend + other
                sample(req, "t1", 100, outcome="ok"),
            ],
        ),
        (
            err,
            [
                sample(err, "t0", 50, reason="other"),
                sample(err, "t1", 20, reason="backend"),
                sample(err, "t1", 40, reason="other"),
                sample(err, "t1", 10, reason="rejected"),
            ],
        ),
        (
            f'{MODEL_REQUEST_DURATION.sum}{{instance="t1"}}',
            [sample(MODEL_REQUEST_DURATION.sum, "t1", 1.0)],
        ),
        (
            f'{MODEL_QUEUE_WAIT.sum}{{instance="t1"}}',
            [sample(MODEL_QUEUE_WAIT.sum, "t1", 0.2)],
        ),
    ]
    dur = MODEL_REQUEST_DURATION
    tests: list[dict[str, object]] = [
        {
            "interval": "1m",
            "input_series": inputs,
            "promql_expr_test": [
                *({"expr": e, "eval_time": "10m", "exp_samples": s} for e, s in checks),
                # What the dashboards compute: average latency and QPS by model.
                {
                    "expr": f'sum by (model) (rate({dur.sum}{{instance="t1"}}[5m]))'
                    f' / sum by (model) (rate({dur.count}{{instance="t1"}}[5m]))',
                    "eval_time": "10m",
                    "exp_samples": [{"labels": '{model="risk-scorer"}', "value": 0.01}],
                },
                {
                    "expr": f'count({{__name__=~"{PREFIX}.+",model="not-ours"}})',
                    "eval_time": "10m",
                    "exp_samples": [],
                },
            ],
        }
    ]
    _promtool(tmp_path, stack, tests)
