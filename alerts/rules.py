"""Alerting and recording rules generated from the stack, each with its promtool fixtures.

Every alert is built as a ``Case``: the rule(s) that share one alert name, plus
two sets of input series for ``promtool test rules`` (one where the alert must
fire, with the exact labels and annotations expected, and one where it must
stay quiet). ``alerts.unittests`` turns the cases into promtool test files, so
no alert can be added without both tests.

Timings come from the stack, so the demo's compressed clock
(``stack.with_timing``) yields rules that act in seconds:

* ``fast_window`` = 4 x scrape interval: the rate window of fast alerts. A rate
  needs two samples; four tolerate one missed scrape and still smooth over a
  single slow request. 15 s scrapes give ``1m`` (Prometheus' usual minimum),
  the demo's 1 s scrapes give ``4s``.
* ``sustain`` = 20 x scrape interval: how long a condition must hold before a
  health alert fires (5 min in production).
* ``stale_after`` = 10 x scrape interval: the GPU exporter's last collection is
  older than ten scrapes.

SLO alerts use the Google SRE workbook's multi-window multi-burn-rate pairs,
which are properties of the 30-day error budget and do not scale with the clock.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alerts.prometheus_config import JOBS
from alerts.promql import by, dur, le, num, rate, sel
from alerts.triton import triton_rule_group
from deploy.stack import Model, Pool, Stack
from exporters.catalog.gpu import (
    EXPORTER_LAST_COLLECT,
    GPU_ECC_ERRORS,
    GPU_TEMPERATURE,
    GPU_THROTTLE,
    GPU_UP,
    GPU_XID_LAST_SEEN,
)
from exporters.catalog.model import MODEL_ERRORS, MODEL_REQUEST_DURATION, MODEL_REQUESTS
from exporters.catalog.recorded import (
    budget_remaining,
    error_budget,
    error_ratio,
    latency_budget,
    latency_miss_ratio,
    latency_threshold,
)
from exporters.catalog.scheduler import (
    GPU_POOL_INFO,
    PREEMPTIONS,
    QUEUE_OLDEST_WAIT,
    RESERVATION_ACTIVE,
    RESERVATION_SATISFIED,
    SCALE_EVENTS,
)
from exporters.catalog.service import WEBHOOK_NOTIFICATIONS

# ----------------------------------------------------------------------------- constants

CRITICAL, WARNING, INFO = "critical", "warning", "info"
# Alerts about shared infrastructure (exporters, the scheduler itself) have no
# owning pool; they carry this team and reach the default on-call receiver.
PLATFORM_TEAM = "platform"

FAST_WINDOW_SCRAPES = 4
SUSTAIN_SCRAPES = 20
STALE_SCRAPES = 10

# (long window, short window, burn-rate factor, severity): SRE workbook, table 5-8.
BURN_WINDOWS: tuple[tuple[str, str, float, str], ...] = (
    ("1h", "5m", 14.4, CRITICAL),
    ("6h", "30m", 6.0, CRITICAL),
    ("1d", "2h", 3.0, WARNING),
    ("3d", "6h", 1.0, WARNING),
)
SLO_WINDOWS: tuple[str, ...] = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")
SLO_PERIOD = "30d"

GPU_TEMPERATURE_CELSIUS = 85.0  # H100 slowdown starts around 87 C; warn before it
# NVML clock-event reasons (names as exporters.gpu writes them) that are not a fault:
# idle, clocks set on purpose, and the power cap every GPU hits at full load.
BENIGN_THROTTLE_REASONS = (
    "gpu_idle",
    "applications_clocks_setting",
    "sync_boost",
    "display_clock_setting",
    "sw_power_cap",
)
MODEL_ERROR_RATIO = 0.05
# Webhook results that mean the scheduler took the notification in (acted on,
# recognised as a replay, or recorded as not actionable).
WEBHOOK_OK_RESULTS = ("accepted", "duplicate", "ignored")
SCALE_FAILED_RESULT = "failed"

# The dashboards these alerts link to; tests check build_all produces these uids.
DASHBOARD_UIDS = {
    "gpu": "novabrain-gpu-fleet",
    "model": "novabrain-model-slo",
    "scheduler": "novabrain-scheduler",
}

# ----------------------------------------------------------------------------- timing


def fast_window(stack: Stack) -> str:
    return dur(FAST_WINDOW_SCRAPES * stack.prometheus.scrape_interval_seconds)


def sustain_seconds(stack: Stack) -> float:
    return SUSTAIN_SCRAPES * stack.prometheus.scrape_interval_seconds


def stale_seconds(stack: Stack) -> float:
    return STALE_SCRAPES * stack.prometheus.scrape_interval_seconds


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class Expected:
    """One alert promtool must see firing: its full label set and rendered annotations."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class Case:
    """The rules of one alert name and the promtool fixtures that pin them down.

    Input series values use promtool's expanding notation, one sample per scrape
    interval; ``{n}`` stands for the number of samples the test needs and
    ``{late}`` for the sample two scrapes before ``eval_time``.
    """

    file: str
    group: str
    alertname: str
    rules: tuple[dict[str, Any], ...]
    firing: tuple[tuple[str, str], ...]
    quiet: tuple[tuple[str, str], ...]
    expected: tuple[Expected, ...]
    eval_seconds: float
    signal: str  # the alert's quantity without its threshold (the live check queries it)
    title: str = ""  # distinguishes cases of the same alert name (a pool, a model)


@dataclass(frozen=True)
class Recording:
    file: str
    group: str
    record: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"record": self.record, "expr": self.expr}
        if self.labels:
            rule["labels"] = dict(self.labels)
        return rule


_LABEL_REF = re.compile(r"\{\{ \$labels\.(\w+) \}\}")


def render(template: str, labels: Mapping[str, str]) -> str:
    """What Prometheus renders for our annotation templates (they only use ``$labels``)."""
    return _LABEL_REF.sub(lambda m: labels.get(m.group(1), "<no value>"), template)


def _runbook(stack: Stack, alertname: str) -> str:
    return f"{stack.alerting.runbook_base_url.rstrip('/')}/{alertname.lower()}"


def _dashboard(stack: Stack, key: str, **vars: str) -> str:
    query = "&".join(f"var-{k}={v}" for k, v in vars.items())
    url = f"{stack.grafana.url.rstrip('/')}/d/{DASHBOARD_UIDS[key]}"
    return f"{url}?{query}" if query else url


EVAL_SCRAPES = 40


def eval_seconds(stack: Stack, for_seconds: float) -> float:
    """When promtool checks a case: the pending period plus twenty scrapes of data, and at
    least forty scrapes (10 min in production) so every rate window has samples."""
    step = stack.prometheus.scrape_interval_seconds
    return step * max(EVAL_SCRAPES, -(-for_seconds // step) + SUSTAIN_SCRAPES)


class _Builder:
    """Collects cases and recording rules while the generators run."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.cases: list[Case] = []
        self.recordings: list[Recording] = []

    def alert(
        self,
        *,
        file: str,
        group: str,
        name: str,
        expr: str,
        signal: str,
        for_seconds: float,
        severity: str,
        labels: Mapping[str, str],
        summary: str,
        description: str,
        dashboard: str,
        firing: tuple[tuple[str, str], ...],
        quiet: tuple[tuple[str, str], ...],
        out: tuple[Mapping[str, str], ...],
        title: str = "",
    ) -> None:
        """One alerting rule, its fixtures, and the labels the expression yields in ``firing``."""
        static = {"severity": severity, **labels}
        annotations = {
            "summary": summary,
            "description": description,
            "runbook_url": _runbook(self.stack, name),
            "dashboard_url": dashboard,
        }
        rule: dict[str, Any] = {"alert": name, "expr": expr}
        if for_seconds > 0:
            rule["for"] = dur(for_seconds)
        rule["labels"] = static
        rule["annotations"] = annotations
        expected = tuple(self._expected(name, o, static, annotations) for o in out)
        at = eval_seconds(self.stack, for_seconds)
        self.cases.append(
            Case(file, group, name, (rule,), firing, quiet, expected, at, signal, title)
        )

    @staticmethod
    def _expected(
        name: str, out: Mapping[str, str], static: Mapping[str, str], ann: Mapping[str, str]
    ) -> Expected:
        labels = {**out, **static, "alertname": name}
        return Expected(labels, {k: render(v, labels) for k, v in ann.items()})

    def record(self, file: str, group: str, record: str, expr: str, **labels: str) -> None:
        self.recordings.append(Recording(file, group, record, expr, labels))


# ----------------------------------------------------------------------------- helpers


def _model_labels(model: Model) -> dict[str, str]:
    return {"model": model.name, "version": model.version, "pool": model.pool}


def _series(sample: str, labels: Mapping[str, str]) -> str:
    return sel(sample, **labels)


def team_of(stack: Stack, pool: str) -> str:
    return stack.pool(pool).team


def is_top_priority(stack: Stack, pool: Pool) -> bool:
    return stack.priority_classes[pool.priority] == max(stack.priority_classes.values())


def p0_models(stack: Stack) -> tuple[Model, ...]:
    """Models served from a pool of the highest priority class: the ones with SLO alerts."""
    return tuple(m for m in stack.models if is_top_priority(stack, stack.pool(m.pool)))


def quantile_name(q: float) -> str:
    """``0.99`` -> ``p99``, ``0.999`` -> ``p99.9``."""
    return "p" + num(round(q * 100, 6))


def latency_alert_name(model: Model) -> str:
    """The fast latency alert's name (the same for every model; the ``model`` label tells them apart)."""
    return "NovabrainModelLatencyHigh"


def p99_expr(stack: Stack, model: Model, window: str | None = None) -> str:
    """The model's SLO quantile (p99 unless the stack says otherwise) over the fast window."""
    w = window or fast_window(stack)
    buckets = rate(sel(MODEL_REQUEST_DURATION.bucket, model=model.name), w)
    return (
        f"histogram_quantile({num(model.slo.latency_quantile)}, "
        f"sum {by(('le', 'model', 'pool'))} ({buckets}))"
    )


def _histogram_fixture(
    model: Model, per_min: int, slow_per_min: int
) -> tuple[tuple[str, str], ...]:
    """Request-duration buckets: ``slow_per_min`` of ``per_min`` land between the
    threshold and 4x it (the model server always has both bounds)."""
    thr = model.slo.latency_threshold_seconds
    labels = _model_labels(model)
    fast = per_min - slow_per_min
    b = MODEL_REQUEST_DURATION
    return (
        (_series(b.bucket, {**labels, "le": le(thr)}), f"0+{fast}x{{n}}"),
        (_series(b.bucket, {**labels, "le": le(4 * thr)}), f"0+{per_min}x{{n}}"),
        (_series(b.bucket, {**labels, "le": "+Inf"}), f"0+{per_min}x{{n}}"),
        (_series(b.count, labels), f"0+{per_min}x{{n}}"),
    )


def _requests_fixture(
    model: Model, per_sample: float, errors_per_sample: float
) -> tuple[tuple[str, str], ...]:
    labels = _model_labels(model)
    ok = num(per_sample - errors_per_sample)
    bad = num(errors_per_sample)
    return (
        (_series(MODEL_REQUESTS.series, {**labels, "outcome": "ok"}), f"0+{ok}x{{n}}"),
        (_series(MODEL_REQUESTS.series, {**labels, "outcome": "error"}), f"0+{bad}x{{n}}"),
        (_series(MODEL_ERRORS.series, {**labels, "reason": "backend"}), f"0+{bad}x{{n}}"),
    )


def _zero_if_absent(numerator: str, denominator: str) -> str:
    """``numerator`` or, where a model has had no failures yet (prometheus_client
    exports a labelled counter only once it was incremented), zero."""
    return f"({numerator} or {denominator} * 0)"


# ----------------------------------------------------------------------------- SLO


SLO_FILE, MODELS_FILE, GPU_FILE, SCHEDULER_FILE = (
    "slo.rules.yml",
    "models.rules.yml",
    "gpu.rules.yml",
    "scheduler.rules.yml",
)


def _slo(b: _Builder) -> None:
    stack = b.stack
    group_rec, group_alerts = "novabrain-slo-recording", "novabrain-slo-alerts"
    keys = ("model", "pool")
    for m in p0_models(stack):
        team = team_of(stack, m.pool)
        thr = m.slo.latency_threshold_seconds
        for w in SLO_WINDOWS:
            good = f"sum {by(keys)} ({rate(sel(MODEL_REQUEST_DURATION.bucket, model=m.name, le=le(thr)), w)})"
            total = f"sum {by(keys)} ({rate(sel(MODEL_REQUEST_DURATION.count, model=m.name), w)})"
            b.record(SLO_FILE, group_rec, latency_miss_ratio(w), f"1 - ({good} / {total})")
            errs = f"sum {by(keys)} ({rate(sel(MODEL_ERRORS.series, model=m.name), w)})"
            reqs = f"sum {by(keys)} ({rate(sel(MODEL_REQUESTS.series, model=m.name), w)})"
            b.record(SLO_FILE, group_rec, error_ratio(w), f"{_zero_if_absent(errs, reqs)} / {reqs}")
        # Constants as series so dashboards can draw and divide by them for any $model.
        ml = {"model": m.name, "pool": m.pool}
        b.record(SLO_FILE, group_rec, latency_threshold(), f"vector({num(thr)})", **ml)
        b.record(
            SLO_FILE, group_rec, latency_budget(), f"vector({num(1 - m.slo.latency_target)})", **ml
        )
        b.record(
            SLO_FILE,
            group_rec,
            error_budget(),
            f"vector({num(1 - m.slo.availability_target)})",
            **ml,
        )
        for sli, ratio, budget in (
            ("latency", latency_miss_ratio, 1 - m.slo.latency_target),
            ("errors", error_ratio, 1 - m.slo.availability_target),
        ):
            b.record(
                SLO_FILE,
                group_rec,
                budget_remaining(sli),
                f"1 - avg_over_time({sel(ratio('5m'), model=m.name)}[{SLO_PERIOD}]) / {num(budget)}",
            )

        # The fast alert the scheduler acts on.
        if m.action is not None:
            name = latency_alert_name(m)
            q = quantile_name(m.slo.latency_quantile)
            expr = p99_expr(stack, m)
            b.alert(
                file=SLO_FILE,
                group=group_alerts,
                name=name,
                expr=f"{expr} > {num(thr)}",
                signal=expr,
                for_seconds=stack.alerting.latency_alert_for_seconds,
                severity=CRITICAL,
                labels={"pool": m.pool, "model": m.name, "team": team, "action": m.action},
                summary=f"{m.name} {q} latency above {num(thr * 1000)} ms",
                description=(
                    f"{q} latency of {{{{ $labels.model }}}} in pool {{{{ $labels.pool }}}} is above "
                    f"its SLO threshold of {num(thr)} s; the scheduler will {m.action}."
                ),
                dashboard=_dashboard(stack, "model", model=m.name),
                firing=_histogram_fixture(m, 100, 100),
                quiet=_histogram_fixture(m, 100, 0),
                out=({"model": m.name, "pool": m.pool},),
                title=m.name,
            )

        for sli, ratio, target, fixture in (
            ("Latency", latency_miss_ratio, m.slo.latency_target, _histogram_fixture),
            ("Availability", error_ratio, m.slo.availability_target, _requests_fixture),
        ):
            name = f"NovabrainModel{sli}BudgetBurn"
            rules: list[dict[str, Any]] = []
            expected: list[Expected] = []
            budget = 1 - target
            what = f"{sli.lower()} SLO ({num(target * 100)}%)"
            for long, short, factor, severity in BURN_WINDOWS:
                bound = num(factor * budget)
                expr = (
                    f"{sel(ratio(long), model=m.name)} > {bound}"
                    f" and {sel(ratio(short), model=m.name)} > {bound}"
                )
                labels = {
                    "severity": severity,
                    "pool": m.pool,
                    "model": m.name,
                    "team": team,
                    "long_window": long,
                    "short_window": short,
                }
                ann = {
                    "summary": f"{m.name} burns its {what} error budget {num(factor)}x too fast",
                    "description": (
                        f"{{{{ $labels.model }}}} has spent its {what} error budget at {num(factor)}x "
                        f"the sustainable rate over both {long} and {short}."
                    ),
                    "runbook_url": _runbook(stack, name),
                    "dashboard_url": _dashboard(stack, "model", model=m.name),
                }
                rules.append({"alert": name, "expr": expr, "labels": labels, "annotations": ann})
                expected.append(b._expected(name, {"model": m.name, "pool": m.pool}, labels, ann))
            # Half the requests bad trips every window pair; none bad trips none.
            b.cases.append(
                Case(
                    SLO_FILE,
                    group_alerts,
                    name,
                    tuple(rules),
                    fixture(m, 100, 50),
                    fixture(m, 100, 0),
                    tuple(expected),
                    eval_seconds(stack, 0),
                    sel(ratio("1h"), model=m.name),
                    m.name,
                )
            )


# ----------------------------------------------------------------------------- models


def _models(b: _Builder) -> None:
    stack = b.stack
    group = "novabrain-models"
    w = fast_window(stack)
    step = stack.prometheus.scrape_interval_seconds
    keys = ("model", "pool")
    for m in stack.models:
        team = team_of(stack, m.pool)
        labels = {"pool": m.pool, "model": m.name, "team": team}
        errs = f"sum {by(keys)} ({rate(sel(MODEL_ERRORS.series, model=m.name), w)})"
        reqs = f"sum {by(keys)} ({rate(sel(MODEL_REQUESTS.series, model=m.name), w)})"
        ratio = f"{_zero_if_absent(errs, reqs)} / {reqs}"
        b.alert(
            file=MODELS_FILE,
            group=group,
            name="NovabrainModelErrorRateHigh",
            expr=f"{ratio} > {num(MODEL_ERROR_RATIO)}",
            signal=ratio,
            for_seconds=sustain_seconds(stack),
            severity=WARNING,
            labels=labels,
            summary=f"{m.name} fails more than {num(MODEL_ERROR_RATIO * 100)}% of requests",
            description="{{ $labels.model }} in pool {{ $labels.pool }} has a high error ratio.",
            dashboard=_dashboard(stack, "model", model=m.name),
            firing=_requests_fixture(m, 100, 20),
            quiet=_requests_fixture(m, 100, 0),
            out=({"model": m.name, "pool": m.pool},),
            title=m.name,
        )
        if m.min_qps > 0:
            qps = f"sum {by(keys)} ({rate(sel(MODEL_REQUESTS.series, model=m.name), w)})"
            absent = f"absent({sel(MODEL_REQUESTS.series, model=m.name)})"
            b.alert(
                file=MODELS_FILE,
                group=group,
                name="NovabrainModelNoTraffic",
                expr=f"{qps} < {num(m.min_qps)} or {absent}",
                signal=qps,
                for_seconds=sustain_seconds(stack),
                severity=WARNING,
                labels=labels,
                summary=f"{m.name} serves under {num(m.min_qps)} requests/s",
                description=(
                    "{{ $labels.model }} in pool {{ $labels.pool }} gets less traffic than expected: "
                    "clients may not reach it."
                ),
                dashboard=_dashboard(stack, "model", model=m.name),
                # A tenth of the expected traffic vs. ten times it.
                firing=_requests_fixture(m, 0.1 * m.min_qps * step, 0),
                quiet=_requests_fixture(m, 10 * m.min_qps * step, 0),
                out=({"model": m.name, "pool": m.pool},),
                title=m.name,
            )


# ----------------------------------------------------------------------------- GPUs


Fixture = tuple[tuple[str, str], ...]
GpuFixture = Callable[[Mapping[str, str]], Fixture]

# Two GPUs for the per-pool fixtures: the one under test and one in another pool.
_GPU_A = {"node": "gpu-node-1", "gpu": "0", "uuid": "GPU-00000000-0000-0000-0000-00000000000a"}
_ECC = {"type": "uncorrected", "counter": "volatile"}
_HOT = {"reason": "hw_thermal_slowdown"}
_GPU_B = {"node": "gpu-node-2", "gpu": "1", "uuid": "GPU-00000000-0000-0000-0000-00000000000b"}


def _gpu(b: _Builder) -> None:
    stack = b.stack
    group = "novabrain-gpu"
    sustain = sustain_seconds(stack)
    step = stack.prometheus.scrape_interval_seconds

    def info(g: Mapping[str, str], pool: str) -> tuple[str, str]:
        return (
            _series(GPU_POOL_INFO.series, {"uuid": g["uuid"], "node": g["node"], "pool": pool}),
            "1x{n}",
        )

    for pool in stack.pools:
        join = f"on(uuid) group_left(pool) {sel(GPU_POOL_INFO.series, pool=pool.name)}"
        severe = CRITICAL if is_top_priority(stack, pool) else WARNING
        other = pool.name + "-other"

        def add(
            name: str,
            core: str,
            signal: str,
            for_seconds: float,
            severity: str,
            summary: str,
            description: str,
            fire: GpuFixture,
            calm: GpuFixture,
            out_extra: Mapping[str, str],
            *,
            _pool: Pool = pool,
            _join: str = join,
            _other: str = other,
        ) -> None:
            b.alert(
                file=GPU_FILE,
                group=group,
                name=name,
                expr=f"({core}) * {_join}",
                signal=signal,
                for_seconds=for_seconds,
                severity=severity,
                labels={"pool": _pool.name, "team": _pool.team},
                summary=summary,
                description=description,
                dashboard=_dashboard(stack, "gpu", pool=_pool.name, node="{{ $labels.node }}"),
                firing=(info(_GPU_A, _pool.name), *fire(_GPU_A)),
                # Quiet: this pool's GPU is healthy, and the condition on a GPU of
                # another pool must not be picked up by this pool's rule.
                quiet=(
                    info(_GPU_A, _pool.name),
                    *calm(_GPU_A),
                    info(_GPU_B, _other),
                    *fire(_GPU_B),
                ),
                out=({**_GPU_A, "pool": _pool.name, **out_extra},),
                title=_pool.name,
            )

        recent = sustain
        add(
            "NovabrainGpuXidError",
            f"time() - {GPU_XID_LAST_SEEN.series} < {num(recent)}",
            f"time() - {GPU_XID_LAST_SEEN.series}",
            0,
            severe,
            "New XID error on a GPU",
            "XID {{ $labels.xid }} on {{ $labels.node }} GPU {{ $labels.gpu }} ({{ $labels.uuid }}).",
            # Last seen at the latest scrape (a new XID) vs. at time zero (old news).
            lambda g: (
                (_series(GPU_XID_LAST_SEEN.series, {**g, "xid": "79"}), f"0+{num(step)}x{{n}}"),
            ),
            lambda g: ((_series(GPU_XID_LAST_SEEN.series, {**g, "xid": "79"}), "0x{n}"),),
            {"xid": "79"},
        )
        uncorrected = sel(GPU_ECC_ERRORS.series, type="uncorrected", counter="volatile")
        add(
            "NovabrainGpuEccUncorrected",
            f"increase({uncorrected}[{dur(recent)}]) > 0",
            f"increase({uncorrected}[{dur(recent)}])",
            0,
            CRITICAL,
            "Uncorrected ECC errors on a GPU",
            "{{ $labels.node }} GPU {{ $labels.gpu }} ({{ $labels.uuid }}) had uncorrected ECC "
            "errors: drain it and reset.",
            lambda g: ((_series(GPU_ECC_ERRORS.series, {**g, **_ECC}), "0+1x{n}"),),
            lambda g: (
                (_series(GPU_ECC_ERRORS.series, {**g, **_ECC}), "3x{n}"),
                (_series(GPU_ECC_ERRORS.series, {**g, **_ECC, "type": "corrected"}), "0+5x{n}"),
            ),
            _ECC,
        )
        add(
            "NovabrainGpuTemperatureHigh",
            f"{GPU_TEMPERATURE.series} > {num(GPU_TEMPERATURE_CELSIUS)}",
            GPU_TEMPERATURE.series,
            sustain,
            WARNING,
            f"GPU above {num(GPU_TEMPERATURE_CELSIUS)} C",
            "{{ $labels.node }} GPU {{ $labels.gpu }} runs hot: check cooling before it throttles.",
            lambda g: ((_series(GPU_TEMPERATURE.series, g), "90x{n}"),),
            lambda g: ((_series(GPU_TEMPERATURE.series, g), "70x{n}"),),
            {},
        )
        benign = sel(GPU_THROTTLE.series, {"reason": "!~" + "|".join(BENIGN_THROTTLE_REASONS)})
        add(
            "NovabrainGpuThrottled",
            f"{benign} == 1",
            benign,
            sustain,
            WARNING,
            "GPU clocks throttled",
            "{{ $labels.node }} GPU {{ $labels.gpu }} is throttled ({{ $labels.reason }}).",
            lambda g: ((_series(GPU_THROTTLE.series, {**g, **_HOT}), "1x{n}"),),
            lambda g: (
                (_series(GPU_THROTTLE.series, {**g, **_HOT}), "0x{n}"),
                (_series(GPU_THROTTLE.series, {**g, "reason": "gpu_idle"}), "1x{n}"),
            ),
            _HOT,
        )
        add(
            "NovabrainGpuDown",
            f"{GPU_UP.series} == 0",
            GPU_UP.series,
            stale_seconds(stack),
            severe,
            "NVML cannot read a GPU",
            "{{ $labels.node }} GPU {{ $labels.gpu }} ({{ $labels.uuid }}) does not answer NVML.",
            lambda g: ((_series(GPU_UP.series, g), "0x{n}"),),
            lambda g: ((_series(GPU_UP.series, g), "1x{n}"),),
            {},
        )

    platform = {"team": PLATFORM_TEAM}
    jobs = "|".join(JOBS)
    target = {"job": JOBS[0], "instance": "127.0.0.1:9471"}
    up = sel("up", {"job": "=~" + jobs})
    b.alert(
        file=GPU_FILE,
        group=group,
        name="NovabrainTargetDown",
        expr=f"{up} == 0",
        signal=up,
        for_seconds=stale_seconds(stack),
        severity=WARNING,
        labels=platform,
        summary="A novabrain exporter cannot be scraped",
        description="Prometheus cannot scrape {{ $labels.job }} at {{ $labels.instance }}.",
        dashboard=_dashboard(stack, "gpu"),
        firing=((_series("up", target), "0x{n}"),),
        quiet=((_series("up", target), "1x{n}"),),
        out=(target,),
    )
    age = f"time() - {EXPORTER_LAST_COLLECT.series}"
    b.alert(
        file=GPU_FILE,
        group=group,
        name="NovabrainGpuExporterStale",
        expr=f"{age} > {num(stale_seconds(stack))}",
        signal=age,
        for_seconds=0,
        severity=WARNING,
        labels=platform,
        summary="The GPU exporter has stopped collecting",
        description=(
            "The GPU exporter's last completed collection is older than "
            f"{dur(stale_seconds(stack))}: its GPU metrics are stale."
        ),
        dashboard=_dashboard(stack, "gpu"),
        # Collected at time zero and never again vs. collected every minute.
        firing=((EXPORTER_LAST_COLLECT.series, "0x{n}"),),
        quiet=((EXPORTER_LAST_COLLECT.series, f"0+{num(step)}x{{n}}"),),
        out=({},),
    )


# ----------------------------------------------------------------------------- scheduler


def _scheduler(b: _Builder) -> None:
    stack = b.stack
    group = "novabrain-scheduler"
    sustain = sustain_seconds(stack)
    top = max(stack.priority_classes.values())
    # A job whose aging bonus reached the cap and still waits is starving.
    starve_after = 3600.0 * stack.policy.fairness_cap / stack.policy.fairness_factor_per_hour
    for pool in stack.pools:
        labels = {"pool": pool.name, "team": pool.team}
        dash = _dashboard(stack, "scheduler", pool=pool.name)
        if stack.priority_classes[pool.priority] < top:
            q = {"pool": pool.name, "priority": pool.priority}
            oldest = sel(QUEUE_OLDEST_WAIT.series, pool=pool.name)
            b.alert(
                file=SCHEDULER_FILE,
                group=group,
                name="NovabrainPoolStarvation",
                expr=f"{oldest} > {num(starve_after)}",
                signal=oldest,
                for_seconds=sustain,
                severity=WARNING,
                labels=labels,
                summary=f"Jobs in {pool.name} wait longer than {dur(starve_after)}",
                description=(
                    "The oldest waiting job in {{ $labels.pool }} ({{ $labels.priority }}) has "
                    f"waited past {dur(starve_after)}, when its aging bonus is already capped."
                ),
                dashboard=dash,
                firing=((_series(QUEUE_OLDEST_WAIT.series, q), f"{num(starve_after + 60)}x{{n}}"),),
                quiet=((_series(QUEUE_OLDEST_WAIT.series, q), "60x{n}"),),
                out=(q,),
                title=pool.name,
            )
        scale = {"pool": pool.name, "direction": "up", "result": SCALE_FAILED_RESULT}
        failed = sel(
            SCALE_EVENTS.series, pool=pool.name, direction="up", result=SCALE_FAILED_RESULT
        )
        inc = f"sum {by(('pool',))} (increase({failed}[{dur(sustain)}]))"
        b.alert(
            file=SCHEDULER_FILE,
            group=group,
            name="NovabrainScaleUpFailed",
            expr=f"{inc} > 0",
            signal=f"sum {by(('pool',))} ({sel(SCALE_EVENTS.series, pool=pool.name)})",
            for_seconds=0,
            severity=CRITICAL if is_top_priority(stack, pool) else WARNING,
            labels=labels,
            summary=f"Scale-up of {pool.name} failed",
            description="The scheduler could not add nodes to {{ $labels.pool }}.",
            dashboard=dash,
            firing=(
                (_series(SCALE_EVENTS.series, scale), "0x{late} 1x{n}"),
                (_series(SCALE_EVENTS.series, {**scale, "result": "ok"}), "0+1x{n}"),
            ),
            quiet=(
                (_series(SCALE_EVENTS.series, scale), "0x{n}"),
                (_series(SCALE_EVENTS.series, {**scale, "result": "ok"}), "0+1x{n}"),
            ),
            out=({"pool": pool.name},),
            title=pool.name,
        )

    for r in stack.reservations:
        pool = stack.pool(r.pool)
        rl = {"reservation": r.name, "pool": r.pool}
        active = sel(RESERVATION_ACTIVE.series, reservation=r.name)
        satisfied = sel(RESERVATION_SATISFIED.series, reservation=r.name)
        expr = f"({active} == 1) and on(reservation, pool) ({satisfied} == 0)"
        b.alert(
            file=SCHEDULER_FILE,
            group=group,
            name="NovabrainReservationNotMet",
            expr=expr,
            signal=satisfied,
            # Active includes the drain lead: not holding the GPUs yet is only a
            # problem once the lead is over, i.e. at the window's start.
            for_seconds=r.drain_lead_seconds,
            severity=CRITICAL if is_top_priority(stack, pool) else WARNING,
            labels={"pool": r.pool, "team": pool.team},
            summary=f"Reservation {r.name} not met at its start",
            description=(
                f"{{{{ $labels.pool }}}} does not hold the {r.gpus} GPUs reserved by "
                "{{ $labels.reservation }} although the window has started."
            ),
            dashboard=_dashboard(stack, "scheduler", pool=r.pool),
            firing=(
                (_series(RESERVATION_ACTIVE.series, rl), "1x{n}"),
                (_series(RESERVATION_SATISFIED.series, rl), "0x{n}"),
            ),
            quiet=(
                (_series(RESERVATION_ACTIVE.series, rl), "1x{n}"),
                (_series(RESERVATION_SATISFIED.series, rl), "0x2 1x{n}"),
            ),
            out=(rl,),
            title=r.name,
        )

    platform = {"team": PLATFORM_TEAM}
    window = dur(stack.policy.cycle_window_seconds)
    storm = stack.total_gpus
    preempted = f"sum(increase({PREEMPTIONS.series}[{window}]))"
    victim = {"reason": "rebalance", "victim_priority": "P2"}
    b.alert(
        file=SCHEDULER_FILE,
        group=group,
        name="NovabrainPreemptionStorm",
        # More preemptions in one cycle window than the cluster has GPUs means
        # jobs are being preempted over and over: churn, not rebalancing.
        expr=f"{preempted} > {storm}",
        signal=preempted,
        for_seconds=0,
        severity=WARNING,
        labels=platform,
        summary="Preemption storm",
        description=f"More than {storm} preemptions in {window}: jobs are churning.",
        dashboard=_dashboard(stack, "scheduler"),
        firing=((_series(PREEMPTIONS.series, victim), f"0+{storm}x{{n}}"),),
        quiet=((_series(PREEMPTIONS.series, victim), "0x{late} 1x{n}"),),
        out=({},),
    )
    bad = "!~" + "|".join(WEBHOOK_OK_RESULTS)
    failing = f"sum(increase({sel(WEBHOOK_NOTIFICATIONS.series, {'result': bad})}[{dur(sustain)}]))"
    b.alert(
        file=SCHEDULER_FILE,
        group=group,
        name="NovabrainWebhookFailing",
        expr=f"{failing} > 0",
        signal=f"sum({WEBHOOK_NOTIFICATIONS.series})",
        for_seconds=0,
        severity=CRITICAL,
        labels=platform,
        summary="The scheduler's Alertmanager webhook is failing",
        description=(
            "Alertmanager notifications to the scheduler are being rejected or failing: "
            "SLO breaches will not move GPUs."
        ),
        dashboard=_dashboard(stack, "scheduler"),
        firing=(
            (_series(WEBHOOK_NOTIFICATIONS.series, {"result": "accepted"}), "0+5x{n}"),
            (_series(WEBHOOK_NOTIFICATIONS.series, {"result": "unauthorized"}), "0+1x{n}"),
        ),
        quiet=(
            (_series(WEBHOOK_NOTIFICATIONS.series, {"result": "accepted"}), "0+5x{n}"),
            (_series(WEBHOOK_NOTIFICATIONS.series, {"result": "unauthorized"}), "2x{n}"),
        ),
        out=({},),
    )


# ----------------------------------------------------------------------------- assembly

GENERATORS: tuple[Callable[[_Builder], None], ...] = (_slo, _models, _gpu, _scheduler)
FILES = (SLO_FILE, MODELS_FILE, GPU_FILE, SCHEDULER_FILE)
TRITON_FILE = "triton.rules.yml"


def build(stack: Stack) -> tuple[list[Case], list[Recording]]:
    """Every alert case and recording rule for ``stack``, in a stable order."""
    b = _Builder(stack)
    for gen in GENERATORS:
        gen(b)
    return b.cases, b.recordings


def rule_files(stack: Stack) -> dict[str, dict[str, Any]]:
    """File name -> Prometheus rules document. Groups and rules keep generation order."""
    cases, recordings = build(stack)
    out: dict[str, dict[str, Any]] = {}
    for file in FILES:
        groups: dict[str, list[dict[str, Any]]] = {}
        for rec in recordings:
            if rec.file == file:
                groups.setdefault(rec.group, []).append(rec.to_rule())
        for case in cases:
            if case.file == file:
                groups.setdefault(case.group, []).extend(case.rules)
        if groups:
            out[file] = {"groups": [{"name": g, "rules": r} for g, r in groups.items()]}
    # Triton's own metrics recorded under catalog names (alerts.triton).
    out[TRITON_FILE] = {"groups": [dict(triton_rule_group(stack))]}
    return out
