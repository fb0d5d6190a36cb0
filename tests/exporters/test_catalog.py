"""The metric catalog: naming conventions, and no metric name retyped anywhere else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from exporters.catalog import ALL, PREFIX, Metric, MetricKind

ROOT = Path(__file__).resolve().parents[2]
BASE_UNITS = ("_seconds", "_bytes", "_ratio", "_celsius", "_watts", "_joules", "_hertz")


def test_names_are_unique_and_prefixed() -> None:
    names = [m.name for m in ALL]
    assert len(names) == len(set(names))
    for m in ALL:
        assert m.name.startswith(PREFIX), m.name
        assert re.fullmatch(r"[a-z_][a-z0-9_]*", m.name), m.name
        assert m.help.endswith("."), m.name


@pytest.mark.parametrize("m", ALL, ids=lambda m: m.name)
def test_suffix_conventions(m: Metric) -> None:
    # prometheus_client appends _total to counters and _info to info series itself.
    assert not m.name.endswith("_total"), "counters are declared without _total"
    assert not m.name.endswith("_info"), "info series are declared without _info"
    if m.kind is MetricKind.HISTOGRAM:
        assert (
            m.bucket.endswith("_bucket") and m.count.endswith("_count") and m.sum.endswith("_sum")
        )
        with pytest.raises(ValueError):
            _ = m.series
    else:
        with pytest.raises(ValueError):
            _ = m.bucket
    # Units, when a metric has one, are base units (no _ms, _kb, _percent, ...).
    assert not re.search(r"_(ms|milliseconds|kb|mb|gb|percent|mhz|mw)(_|$)", m.name), m.name
    assert len(m.labels) == len(set(m.labels))


def test_sample_names_follow_the_kind() -> None:
    by_kind = {m.kind: m for m in ALL}
    assert by_kind[MetricKind.COUNTER].series.endswith("_total")
    assert by_kind[MetricKind.INFO].series.endswith("_info")
    g = by_kind[MetricKind.GAUGE]
    assert g.series == g.name


def _python_files() -> list[Path]:
    out: list[Path] = []
    for top in ("exporters", "scheduler", "alerts", "dashboards", "deploy", "benchmarks", "tests"):
        out.extend(p for p in (ROOT / top).rglob("*.py") if "catalog" not in p.parts)
    return out


def test_no_metric_name_is_retyped_outside_the_catalog() -> None:
    """Dashboards, alerts, exporters and tests take names from the catalog, never as literals."""
    needles = sorted({m.name for m in ALL}, key=len, reverse=True)
    pattern = re.compile(
        r"\b(" + "|".join(re.escape(n) for n in needles) + r")(_total|_info|_bucket|_sum|_count)?\b"
    )
    offenders = []
    for path in _python_files():
        if path == Path(__file__):
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{lineno}: {line.strip()}")
    assert not offenders, "metric names typed outside exporters/catalog:\n" + "\n".join(offenders)
