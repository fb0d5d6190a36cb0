"""The live check: every PromQL expression of the dashboards and rules, against a real
Prometheus scraping the simulated stack (``deploy.demo.SimulatedStack``, demo clock).

For every expression, with Grafana's variables substituted:

1. it runs (parses, types check);
2. every metric family it names is exported by some scraped target (Prometheus'
   metadata API knows its HELP/TYPE; prometheus_client announces a labelled
   family before its first sample, and an XID and a GPU process are injected
   for the GPU exporter's event-only families);
3. it returns data, unless one of the series it reads has no sample at all
   (events a calm run does not have: preemptions, scale events, webhook
   calls). An expression that comes back empty although all its series exist
   has a wrong matcher or join, and fails here.

It also checks that each P0 model's histogram has a bucket exactly at its
latency SLO threshold, which the SLO rules count.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from alerts.promql import le, sel
from alerts.rules import TRITON_FILE, build, fast_window, p0_models, rule_files
from dashboards.audit import CHAIN_TITLE, LAG_TITLE, SEQ_TITLE
from dashboards.build import build_all
from dashboards.queries import BUILTINS, Query, queries
from deploy.demo import SimulatedStack
from deploy.procs import ProcessError
from deploy.stack import AuditForward, Stack
from exporters.catalog import ALL, MetricKind
from exporters.catalog.gpu import GPU_PROCESS_MEMORY, GPU_UTILIZATION, GPU_XID_LAST_SEEN
from exporters.catalog.model import MODEL_REQUEST_DURATION, MODEL_REQUESTS
from exporters.catalog.scheduler import GPU_POOL_INFO

pytestmark = pytest.mark.e2e
AUDIT_TITLES = (CHAIN_TITLE, SEQ_TITLE, LAG_TITLE)

_SAMPLES: dict[str, str] = {}
for _m in ALL:
    if _m.kind is MetricKind.HISTOGRAM:
        _SAMPLES.update({_m.bucket: _m.name, _m.count: _m.name, _m.sum: _m.name})
    else:
        _SAMPLES[_m.series] = _m.name
_NAME = re.compile(
    r"\b(" + "|".join(sorted(map(re.escape, _SAMPLES), key=len, reverse=True)) + r")\b"
)
_RECORDED = re.compile(r"\bmodel:[a-z0-9_]+:[a-z0-9_]+\b")


def _expressions(stack: Stack, rate_interval: str) -> list[Query]:
    values = {"pool": ".*", "node": ".*", "model": ".*", **dict.fromkeys(BUILTINS, rate_interval)}
    out = [q for d in build_all(stack).values() for q in queries(d, values)]
    for file, doc in rule_files(stack).items():
        if file == TRITON_FILE:
            continue  # no Triton in the simulated stack: its rules run in test_queries_execute
        for g in doc["groups"]:
            for r in g["rules"]:
                if "record" in r:
                    out.append(Query(f"record {r['record']}", r["expr"]))
                    out.append(Query(f"recorded {r['record']}", r["record"]))
    cases, _ = build(stack)
    # Alert expressions are empty while nothing is wrong: check what they compare instead.
    out += [Query(f"alert {c.alertname} {c.title}", c.signal) for c in cases]
    return out


async def test_every_expression_runs_on_the_live_stack(stack: Stack, tmp_path: Path) -> None:
    # With the audit log's off-box copy (a file here), as a bank runs it: its position is
    # exported only then, and the forwarding panel and alert read it.
    copy = AuditForward("file", path=str(tmp_path / "audit-copy.jsonl"))
    stack = dataclasses.replace(stack, audit=dataclasses.replace(stack.audit, forward=copy))
    async with SimulatedStack(stack, tmp_path, fast=True) as env:
        assert env.prometheus is not None
        prom = env.prometheus
        await prom.await_for("count(up == 1) == 3", timeout=60)
        model = next(m for m in env.stack.models if m.action)
        env.start_load(
            model.name,
            0.5 * env.model_server.capacity_qps(model.name, env.runtime.serving_gpus(model.pool)),
        )
        window = fast_window(env.stack)
        await prom.await_for(f"sum(rate({MODEL_REQUESTS.series}[{window}])) > 0", timeout=60)
        await prom.await_for(f"count({GPU_POOL_INFO.series})", timeout=60)
        # Events a calm cluster does not have, so that their panels and alerts have series:
        # an XID and a process on one simulated GPU.
        gpu = env.stack.gpus()[0]
        env.backend.xid(gpu.uuid, 79)
        env.backend.set_processes(gpu.uuid, [(4242, 2 * 1024**3)])
        await prom.await_for(GPU_XID_LAST_SEEN.series, timeout=60)
        await prom.await_for(GPU_PROCESS_MEMORY.series, timeout=60)

        # A latency SLO counts the bucket at its threshold: that bucket must exist.
        for m in p0_models(env.stack):
            bucket = sel(
                MODEL_REQUEST_DURATION.bucket, model=m.name, le=le(m.slo.latency_threshold_seconds)
            )
            assert await prom.aquery(bucket), f"{m.name}: no histogram bucket at its SLO threshold"

        metadata: dict[str, Any] = (await prom.aget_json("/api/v1/metadata"))["data"]
        present: dict[str, bool] = {}

        async def has_samples(name: str) -> bool:
            if name not in present:
                present[name] = bool(await prom.aquery(f'count({{__name__="{name}"}})'))
            return present[name]

        async def check(q: Query) -> tuple[list[str], bool]:
            """Problems with ``q``, and whether it returned data."""
            problems = []
            names = set(_NAME.findall(q.expr))
            for name in sorted(names):
                if _SAMPLES[name] not in metadata and name not in metadata:
                    problems.append(f"{q.where}: no target exports {_SAMPLES[name]}")
            try:
                result = await prom.aquery(q.expr)
            except ProcessError as e:
                return [*problems, f"{q.where}: {e}"], False
            if result:
                return problems, True
            read = names | set(_RECORDED.findall(q.expr)) | ({"up"} if "up{" in q.expr else set())
            if all([await has_samples(n) for n in sorted(read)]):
                problems.append(
                    f"{q.where}: no data although every series it reads exists: {q.expr}"
                )
            return problems, False

        exprs = _expressions(env.stack, window)
        assert len(exprs) > 80
        problems: list[str] = []
        with_data = 0
        answered = set()
        for q in exprs:
            found, had_data = await check(q)
            problems += found
            with_data += had_data
            if had_data:
                answered.add(q.where)
        assert problems == [], "\n".join(problems)
        # The audit log's panels always have data on a running scheduler that forwards.
        audit = [q.where for q in exprs if any(f" / {t} / " in q.where for t in AUDIT_TITLES)]
        assert len(audit) == 4 and set(audit) <= answered, set(audit) - answered
        # The check can fail: a join on a label value no series has, a syntax error.
        wrong_pool = f'{GPU_UTILIZATION.series} * on(uuid) group_left(pool) {GPU_POOL_INFO.series}{{pool="nope"}}'
        assert (await check(Query("probe", wrong_pool)))[0]
        assert (await check(Query("probe", f"sum({GPU_UTILIZATION.series}")))[0]
        # Not vacuous: on a calm stack with steady load most expressions have data.
        assert with_data > len(exprs) // 2, f"only {with_data} of {len(exprs)} had data"
