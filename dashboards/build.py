"""The three dashboards, built with grafanalib from the stack and the metric catalog.

``build_all(stack)`` returns file name -> normalised dashboard JSON (the current
Grafana schema, see ``dashboards.normalise``); ``write_all`` writes them with
sorted keys and fixed indentation so regenerating is byte-for-byte stable.

Pool-level GPU queries join exporter series on the scheduler's
``GPU_POOL_INFO`` by uuid: pool membership changes with every rebalance and
only the scheduler knows it.

The SLO panels read the recording rules ``alerts.rules`` generates; both take
the recorded series' names from ``exporters.catalog.recorded``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import grafanalib.core as G

from dashboards.audit import audit_panels
from dashboards.normalise import normalise, to_json
from dashboards.panels import (
    DATASOURCE,
    Query,
    Spec,
    annotation,
    bargauge,
    datasource_variable,
    gauge,
    heatmap,
    layout,
    query_variable,
    stat,
    table,
    timeseries,
)
from deploy.stack import Stack
from exporters.catalog import gpu as g
from exporters.catalog import model as m
from exporters.catalog import recorded
from exporters.catalog import scheduler as s
from exporters.catalog import service as svc

GPU_FLEET_UID = "novabrain-gpu-fleet"
MODEL_SLO_UID = "novabrain-model-slo"
SCHEDULER_UID = "novabrain-scheduler"
RATE = "$__rate_interval"
TAGS = ["novabrain"]


# ----------------------------------------------------------------------------- helpers

POOL = 'pool=~"$pool"'
NODE = 'node=~"$node"'
MODEL = 'model=~"$model"'


def _in_pool(expr: str) -> str:
    """Attach each GPU series' current pool, keeping only the selected pools."""
    return f"{expr} * on(uuid) group_left(pool) {s.GPU_POOL_INFO.series}{{{POOL}}}"


def _gpu(sample: str) -> str:
    return f"{sample}{{{NODE}}}"


def _annotations() -> list[dict[str, Any]]:
    return [
        annotation(
            "Preemptions",
            f"sum by (reason) (increase({s.PREEMPTIONS.series}[{RATE}])) > 0",
            "Preemption ({{reason}})",
            "orange",
        ),
        annotation(
            "Scale events",
            f"sum by (pool, direction, result) (increase({s.SCALE_EVENTS.series}{{{POOL}}}[{RATE}])) > 0",
            "Scale {{direction}} {{pool}}: {{result}}",
            "blue",
        ),
    ]


def _dashboard(
    stack: Stack, uid: str, title: str, specs: list[Spec], variables: list[G.Template]
) -> dict[str, Any]:
    dash = G.Dashboard(
        title=title,
        uid=uid,
        tags=TAGS,
        timezone="utc",
        refresh="30s",
        time=G.Time("now-6h", "now"),
        panels=layout(specs),
        templating=G.Templating([datasource_variable(), *variables]),
        description=f"Generated from the {stack.name} stack file; do not edit in Grafana.",
    )
    out = normalise(to_json(dash.to_json_data()), DATASOURCE)
    out["annotations"] = {"list": _annotations()}
    # The datasource variable starts on the stack's Prometheus (provisioned with that uid).
    uid = stack.grafana.datasource_uid
    out["templating"]["list"][0]["current"] = {"text": uid, "value": uid}
    out["editable"] = False
    return out


def _pool_var(stack: Stack) -> G.Template:
    return query_variable("pool", "Pool", f"label_values({s.GPU_POOL_INFO.series}, pool)")


# ----------------------------------------------------------------------------- GPU fleet


def gpu_fleet(stack: Stack) -> dict[str, Any]:
    up = _in_pool(_gpu(g.GPU_UP.series))
    util = _in_pool(_gpu(g.GPU_UTILIZATION.series))
    mem = _in_pool(_gpu(g.GPU_MEMORY_USED.series))
    per_gpu = "{{node}} GPU {{gpu}}"
    specs: list[Spec] = [
        stat(
            "GPUs up",
            [(f"sum({up})", "up")],
            "none",
            description="GPUs NVML can read, of the selected pools.",
        ),
        stat("GPUs down", [(f"count({up} == 0) or vector(0)", "down")], "none"),
        stat(
            "Exporter collection",
            [(f"min({g.EXPORTER_COLLECT_SUCCESS.series})", "ok")],
            "bool_yes_no",
        ),
        stat(
            "Exporter last collection age",
            [(f"time() - max({g.EXPORTER_LAST_COLLECT.series})", "age")],
            "s",
        ),
        timeseries("Utilization by pool", [(f"avg by (pool) ({util})", "{{pool}}")], "percentunit"),
        timeseries("Utilization by GPU", [(util, per_gpu)], "percentunit"),
        timeseries(
            "Framebuffer used by pool",
            [(f"sum by (pool) ({mem})", "{{pool}}")],
            "bytes",
            stack=True,
        ),
        timeseries(
            "Framebuffer used by GPU",
            [(f"{mem} / on(uuid) group_left() {g.GPU_MEMORY_TOTAL.series}", per_gpu)],
            "percentunit",
        ),
        timeseries("Temperature", [(_in_pool(_gpu(g.GPU_TEMPERATURE.series)), per_gpu)], "celsius"),
        timeseries(
            "Power by pool",
            [(f"sum by (pool) ({_in_pool(_gpu(g.GPU_POWER.series))})", "{{pool}}")],
            "watt",
        ),
        timeseries(
            "Clock throttling",
            [
                (
                    f"sum by (pool, reason) ({_in_pool(_gpu(g.GPU_THROTTLE.series))})",
                    "{{pool}} {{reason}}",
                )
            ],
            "none",
            description="GPUs with each throttle reason active.",
        ),
        timeseries(
            "ECC errors",
            [
                (
                    f"sum by (pool, type) ({_in_pool(f'rate({_gpu(g.GPU_ECC_ERRORS.series)}[{RATE}])')})",
                    "{{pool}} {{type}}",
                )
            ],
            "cps",
        ),
        timeseries(
            "XID errors",
            [
                (
                    f"sum by (pool, xid) ({_in_pool(f'rate({_gpu(g.GPU_XID_ERRORS.series)}[{RATE}])')})",
                    "{{pool}} XID {{xid}}",
                )
            ],
            "cps",
        ),
        bargauge("GPU up by node", [(f"min by (node) ({up})", "{{node}}")], "bool_yes_no"),
        heatmap(
            "Exporter collection time",
            [(f"sum by (le) (rate({g.EXPORTER_COLLECT_DURATION.bucket}[{RATE}]))", "{{le}}")],
            "s",
        ),
        timeseries(
            "NVML errors",
            [(f"sum by (error) (rate({g.EXPORTER_ERRORS.series}[{RATE}]))", "{{error}}")],
            "cps",
        ),
        table(
            "Top processes by GPU memory",
            [
                (
                    "topk(10, sum by (node, gpu, namespace, pod, job) "
                    f"({_in_pool(_gpu(g.GPU_PROCESS_MEMORY.series))}))",
                    "",
                )
            ],
            "bytes",
            w=24,
        ),
    ]
    node_var = query_variable(
        "node", "Node", f"label_values({s.GPU_POOL_INFO.series}{{{POOL}}}, node)"
    )
    return _dashboard(
        stack, GPU_FLEET_UID, "NovaBrain / GPU fleet", specs, [_pool_var(stack), node_var]
    )


# ----------------------------------------------------------------------------- model SLO


def _quantile(q: float, bucket: str) -> str:
    return f"histogram_quantile({q}, sum by (le, model) (rate({bucket}{{{MODEL}}}[{RATE}])))"


def model_slo(stack: Stack) -> dict[str, Any]:
    dur = m.MODEL_REQUEST_DURATION
    reqs = f"sum by (model) (rate({m.MODEL_REQUESTS.series}{{{MODEL}}}[{RATE}]))"
    errs = f"sum by (model) (rate({m.MODEL_ERRORS.series}{{{MODEL}}}[{RATE}]))"
    burn: list[Query] = []
    for w in ("1h", "6h", "1d", "3d"):
        burn.append(
            (
                f"{recorded.latency_miss_ratio(w)}{{{MODEL}}} / on(model, pool) {recorded.latency_budget()}",
                f"{{{{model}}}} latency {w}",
            )
        )
        burn.append(
            (
                f"{recorded.error_ratio(w)}{{{MODEL}}} / on(model, pool) {recorded.error_budget()}",
                f"{{{{model}}}} errors {w}",
            )
        )
    specs: list[Spec] = [
        gauge(
            "Latency error budget left (30d)",
            [(f"{recorded.budget_remaining('latency')}{{{MODEL}}}", "{{model}}")],
            "percentunit",
            lo=0,
            hi=1,
        ),
        gauge(
            "Availability error budget left (30d)",
            [(f"{recorded.budget_remaining('errors')}{{{MODEL}}}", "{{model}}")],
            "percentunit",
            lo=0,
            hi=1,
        ),
        stat("Requests per second", [(reqs, "{{model}}")], "reqps"),
        stat(
            "In flight",
            [(f"sum by (model) ({m.MODEL_IN_FLIGHT.series}{{{MODEL}}})", "{{model}}")],
            "none",
        ),
        timeseries(
            "Latency against the SLO threshold",
            [
                (_quantile(0.5, dur.bucket), "{{model}} p50"),
                (_quantile(0.95, dur.bucket), "{{model}} p95"),
                (_quantile(0.99, dur.bucket), "{{model}} p99"),
                (f"{recorded.latency_threshold()}{{{MODEL}}}", "{{model}} threshold"),
            ],
            "s",
            w=24,
        ),
        timeseries("Queries per second", [(reqs, "{{model}}")], "reqps"),
        timeseries(
            "Error ratio", [(f"({errs} or {reqs} * 0) / {reqs}", "{{model}}")], "percentunit"
        ),
        timeseries(
            "Error budget burn rate",
            burn,
            "suffix:x",
            w=24,
            description="1 spends the 30-day budget exactly; the page thresholds are 14.4 (1h) and 6 (6h).",
        ),
        heatmap(
            "Latency distribution",
            [(f"sum by (le) (rate({dur.bucket}{{{MODEL}}}[{RATE}]))", "{{le}}")],
            "s",
        ),
        timeseries(
            "Queue wait p99", [(_quantile(0.99, m.MODEL_QUEUE_WAIT.bucket), "{{model}}")], "s"
        ),
    ]
    if any(model.llm for model in stack.models):
        specs += [
            timeseries(
                "Time to first token p95",
                [(_quantile(0.95, m.MODEL_TIME_TO_FIRST_TOKEN.bucket), "{{model}}")],
                "s",
            ),
            timeseries(
                "Inter-token latency p95",
                [(_quantile(0.95, m.MODEL_INTER_TOKEN_LATENCY.bucket), "{{model}}")],
                "s",
            ),
            timeseries(
                "Tokens per second",
                [
                    (
                        f"sum by (model) (rate({m.MODEL_PROMPT_TOKENS.series}{{{MODEL}}}[{RATE}]))",
                        "{{model}} prompt",
                    ),
                    (
                        f"sum by (model) (rate({m.MODEL_GENERATION_TOKENS.series}{{{MODEL}}}[{RATE}]))",
                        "{{model}} generated",
                    ),
                ],
                "none",
            ),
            timeseries(
                "LLM requests running and waiting",
                [
                    (
                        f"sum by (model) ({m.MODEL_REQUESTS_RUNNING.series}{{{MODEL}}})",
                        "{{model}} running",
                    ),
                    (
                        f"sum by (model) ({m.MODEL_REQUESTS_WAITING.series}{{{MODEL}}})",
                        "{{model}} waiting",
                    ),
                ],
                "none",
            ),
        ]
    model_var = query_variable(
        "model", "Model", f"label_values({m.MODEL_REQUESTS.series}{{{POOL}}}, model)"
    )
    pool_var = query_variable("pool", "Pool", f"label_values({m.MODEL_REQUESTS.series}, pool)")
    return _dashboard(stack, MODEL_SLO_UID, "NovaBrain / Model SLO", specs, [pool_var, model_var])


# ----------------------------------------------------------------------------- scheduler


def scheduler(stack: Stack) -> dict[str, Any]:
    def q(sample: str) -> str:
        return f"{sample}{{{POOL}}}"

    a2a = svc.ALERT_TO_ACTION.bucket
    specs: list[Spec] = [
        bargauge(
            "GPUs per pool and state",
            [(f"sum by (pool, state) ({q(s.POOL_GPUS.series)})", "{{pool}} {{state}}")],
            "none",
        ),
        timeseries(
            "GPUs per pool",
            [(f"sum by (pool, state) ({q(s.POOL_GPUS.series)})", "{{pool}} {{state}}")],
            "none",
            description="owned, borrowed, lent and idle GPUs of each pool.",
        ),
        timeseries(
            "Queue length by priority",
            [(f"sum by (priority) ({q(s.QUEUE_LENGTH.series)})", "{{priority}}")],
            "none",
        ),
        timeseries(
            "Oldest waiting job",
            [
                (
                    f"max by (pool, priority) ({q(s.QUEUE_OLDEST_WAIT.series)})",
                    "{{pool}} {{priority}}",
                )
            ],
            "s",
        ),
        timeseries(
            "Queue wait p95 by priority",
            [
                (
                    f"histogram_quantile(0.95, sum by (le, priority) (rate({s.QUEUE_WAIT.bucket}{{{POOL}}}[{RATE}])))",
                    "{{priority}}",
                )
            ],
            "s",
        ),
        timeseries(
            "Preemptions",
            [
                (
                    f"sum by (reason, victim_priority) (increase({s.PREEMPTIONS.series}[{RATE}]))",
                    "{{victim_priority}} {{reason}}",
                )
            ],
            "none",
        ),
        timeseries(
            "GPU-seconds lost to preemption",
            [(f"sum by (pool) (increase({q(s.GPU_SECONDS_LOST.series)}[{RATE}]))", "{{pool}}")],
            "s",
        ),
        timeseries(
            "Scale events",
            [
                (
                    f"sum by (pool, direction, result) (increase({q(s.SCALE_EVENTS.series)}[{RATE}]))",
                    "{{pool}} {{direction}} {{result}}",
                )
            ],
            "none",
        ),
        table(
            "Reservations",
            [
                (f"max by (reservation, pool) ({q(s.RESERVATION_ACTIVE.series)})", "active"),
                (f"max by (reservation, pool) ({q(s.RESERVATION_SATISFIED.series)})", "satisfied"),
            ],
            "bool_yes_no",
        ),
        timeseries(
            "Alert to action",
            [
                (
                    f"histogram_quantile(0.5, sum by (le, action) (rate({a2a}[{RATE}])))",
                    "{{action}} p50",
                ),
                (
                    f"histogram_quantile(0.95, sum by (le, action) (rate({a2a}[{RATE}])))",
                    "{{action}} p95",
                ),
            ],
            "s",
            description="From the Alertmanager webhook received to the actuator called.",
        ),
        timeseries(
            "Decisions",
            [
                (
                    f"sum by (action, result) (increase({s.DECISIONS.series}[{RATE}]))",
                    "{{action}} {{result}}",
                )
            ],
            "none",
        ),
        timeseries(
            "Webhook notifications",
            [
                (
                    f"sum by (result) (rate({svc.WEBHOOK_NOTIFICATIONS.series}[{RATE}]))",
                    "{{result}}",
                )
            ],
            "reqps",
        ),
        *audit_panels(),
        # Last, so that the panel ids alerts link to stay as they were.
        timeseries(
            "P0 grants: time to capacity",
            [
                (
                    f"histogram_quantile(0.95, sum by (le, stage) (rate({s.GRANT_TIME_TO_CAPACITY.bucket}{{{POOL}}}[{RATE}])))",
                    "{{stage}} p95",
                ),
                (
                    f"histogram_quantile(0.5, sum by (le, stage) (rate({s.GRANT_TIME_TO_CAPACITY.bucket}{{{POOL}}}[{RATE}])))",
                    "{{stage}} p50",
                ),
            ],
            "s",
            description="From a P0 grant's request (alert or operator) to its first victim "
            "signalled, its last GPU free, and P0 serving on all of them.",
        ),
        # Placement on nodes: appended, so that the panel ids alerts link to stay put.
        timeseries(
            "Fragmentation: idle GPUs usable by the largest waiting pod",
            [(f"min by (pool) ({q(s.POOL_FREE_USABLE_RATIO.series)})", "{{pool}}")],
            "percentunit",
            description="Of each pool's idle GPUs, the share the largest pod in its queue can "
            "use, whole pods per node (1: nothing idle or nothing waits). Below it: "
            "preemptions that freed no usable hole (must stay 0) and waits a repack of "
            "running pods would have ended.",
        ),
        timeseries(
            "Preemptions without a hole, repacks declined",
            [
                (
                    f"sum by (pool) (increase({q(s.NO_HOLE_PREEMPTIONS.series)}[{RATE}]))",
                    "{{pool}} no hole",
                ),
                (
                    f"sum by (pool) (increase({q(s.REPACKS_DECLINED.series)}[{RATE}]))",
                    "{{pool}} repack declined",
                ),
            ],
            "none",
        ),
    ]
    return _dashboard(
        stack, SCHEDULER_UID, "NovaBrain / Scheduler and pools", specs, [_pool_var(stack)]
    )


# ----------------------------------------------------------------------------- output

BUILDERS = {
    "gpu-fleet.json": gpu_fleet,
    "model-slo.json": model_slo,
    "scheduler.json": scheduler,
}


def build_all(stack: Stack) -> dict[str, dict[str, Any]]:
    """File name -> normalised dashboard JSON."""
    return {name: build(stack) for name, build in BUILDERS.items()}


def dumps(dashboard: dict[str, Any]) -> str:
    return json.dumps(dashboard, indent=2, sort_keys=True) + "\n"


def write_all(stack: Stack, out_dir: Path) -> list[Path]:
    """Write every dashboard under ``out_dir``; dashboards no longer generated are removed."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dashboards = build_all(stack)
    for old in out_dir.glob("*.json"):
        if old.name not in dashboards:
            old.unlink()
    written = []
    for name, dash in dashboards.items():
        path = out_dir / name
        path.write_text(dumps(dash), encoding="utf-8")
        written.append(path)
    return written
