"""The scheduler's /metrics: its families and the service's own, rendered by exporters.exposition.

The service registers plain prometheus_client metrics in the same registry as
the scheduler's collector; a scrape renders the collector's families directly
and hands the others to prometheus_client, in either format. What comes out
must parse to what prometheus_client's own writers write for the whole registry.
"""

from __future__ import annotations

import math
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as om_parse
from prometheus_client.parser import text_string_to_metric_families as text_parse

from deploy.stack import Stack
from exporters.catalog import scheduler as cat
from exporters.catalog.service import ALERT_TO_ACTION, API_REQUESTS
from exporters.exposition import Format, RenderedFamily, Snapshot
from scheduler.metrics import DURATION_BUCKETS, WAIT_BUCKETS
from scheduler.runtime import SchedulerRuntime
from scheduler.sim.workload import demo_workload

T0 = 1_800_000_000.0


def families(text: str, parser: object) -> list[tuple[object, ...]]:
    return [
        (
            f.name,
            f.type,
            f.documentation,
            sorted(
                (s.name, sorted(s.labels.items()), "NaN" if math.isnan(s.value) else s.value)
                for s in f.samples
            ),
        )
        for f in parser(text)  # type: ignore[operator]
    ]


def busy_runtime(stack: Stack, tmp_path: Path) -> tuple[SchedulerRuntime, CollectorRegistry]:
    registry = CollectorRegistry()
    clock = [T0]
    rt = SchedulerRuntime.from_stack(
        stack, db_path=tmp_path / "s.db", registry=registry, clock=lambda: clock[0]
    )
    rt.seed(demo_workload(stack, now=T0))
    rt.on_alert(pool="p0-risk", action="rebalance", firing=True, correlation_id="g")
    for _ in range(4):
        clock[0] += 0.5
        rt.tick()
    # The service's own metrics, as it registers them: plain prometheus_client objects.
    api = Counter(API_REQUESTS.name, API_REQUESTS.help, API_REQUESTS.labels, registry=registry)
    api.labels("metrics", "GET", "200").inc(3)
    hist = Histogram(
        ALERT_TO_ACTION.name, ALERT_TO_ACTION.help, ALERT_TO_ACTION.labels, registry=registry
    )
    hist.labels("rebalance").observe(0.004)
    return rt, registry


def test_a_scrape_of_the_scheduler_registry_reads_as_prometheus_client_writes_it(
    stack: Stack, tmp_path: Path
) -> None:
    rt, registry = busy_runtime(stack, tmp_path)
    snap = Snapshot.of(registry)
    # The scheduler's families take the direct path; the service's go through prometheus_client.
    direct = [f.name for f in snap.families if isinstance(f, RenderedFamily)]
    assert direct == [m.name for m in cat.SCHEDULER_METRICS]
    text = snap.body(Format.TEXT).decode()
    assert families(text, text_parse) == families(generate_latest(registry).decode(), text_parse)
    om = snap.body(Format.OPENMETRICS).decode()
    assert families(om, om_parse) == families(om_generate_latest(registry).decode(), om_parse)
    names = {f.name for f in text_parse(text)}
    for m in cat.SCHEDULER_METRICS:
        assert m.name in names or m.series in names, m.name
    rt.close()


def test_histogram_bounds_keep_their_spelling(stack: Stack, tmp_path: Path) -> None:
    """Alerts and dashboards match ``le`` as a string: the spelling must not change."""
    rt, registry = busy_runtime(stack, tmp_path)
    text = Snapshot.of(registry).body().decode()
    for m, bounds in ((cat.DECISION_DURATION, DURATION_BUCKETS), (cat.QUEUE_WAIT, WAIT_BUCKETS)):
        family = next(f for f in text_parse(text) if f.name == m.name)
        les = [s.labels["le"] for s in family.samples if s.name == m.bucket]
        first = les[: len(bounds) + 1]
        assert first == [repr(b) for b in bounds] + ["+Inf"], m.name
    rt.close()
