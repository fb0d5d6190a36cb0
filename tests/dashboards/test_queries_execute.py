"""Every dashboard query and rule expression parses and runs on a real Prometheus.

With an empty TSDB this proves syntax and types (a vector where a scalar is
needed, a bad matcher, an unknown function, a variable left unsubstituted);
the live check against the simulated stack proves the series exist.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from alerts.rules import rule_files
from dashboards.build import build_all
from dashboards.queries import BUILTINS, Query, queries, substitute
from deploy.procs import ProcessError, PrometheusProcess
from deploy.stack import Stack

pytestmark = pytest.mark.skipif(
    shutil.which("prometheus") is None, reason="prometheus not installed"
)

ALL = {"pool": ".*", "node": ".*", "model": ".*", **dict.fromkeys(BUILTINS, "1m")}


def test_substitution() -> None:
    assert substitute('x{pool=~"$pool"}[$__rate_interval]', ALL) == 'x{pool=~".*"}[1m]'
    assert substitute("${model} $unknown", ALL) == ".* $unknown"


def test_every_expression_runs(stack: Stack, tmp_path: Path) -> None:
    exprs = [q for d in build_all(stack).values() for q in queries(d, ALL)]
    for doc in rule_files(stack).values():
        for g in doc["groups"]:
            for r in g["rules"]:
                exprs.append(Query(f"rule {r.get('alert') or r.get('record')}", r["expr"]))
    assert len(exprs) > 50
    failures = []
    with PrometheusProcess({"global": {"scrape_interval": "15s"}}, tmp_path) as prom:
        for q in exprs:
            try:
                prom.query(q.expr)
            except ProcessError as e:
                failures.append(f"{q.where}: {e}")
        # The check can fail: a typo'd function is reported.
        with pytest.raises(ProcessError):
            prom.query("rat(up[1m])")
    assert failures == []
