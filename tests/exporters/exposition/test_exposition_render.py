"""The direct renderer writes what prometheus_client writes, for any family it can be given.

Random families (names, help and label values with quotes, backslashes,
newlines and any UTF-8; NaN and the infinities; histograms; info series) are
built twice: as prometheus_client families written by its own writers, and as
this package's families rendered directly. Both texts are parsed back with
prometheus_client's parsers (the classic one and the OpenMetrics one) and must
give the same families, names, types, help, labels and values.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import generate_latest as om_generate_latest
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as om_parse,
)
from prometheus_client.parser import text_string_to_metric_families as parse
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from exporters.catalog import MetricKind
from exporters.exposition import (
    ExpositionError,
    FamilySpec,
    Format,
    RenderedFamily,
    Snapshot,
    render,
)


@dataclass(frozen=True)
class Spec:
    """One random family: what both sides are built from."""

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...]
    bounds: tuple[float, ...]
    rows: tuple[tuple[tuple[str, ...], Any], ...]  # label values, value (or (counts, sum))


class Families(Collector):
    def __init__(self, families: Sequence[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        yield from self.families


# Any UTF-8 text (no lone surrogates: they have no UTF-8 encoding), heavy on what needs escaping.
TEXT = st.text(
    alphabet=st.one_of(st.sampled_from('"\\\n{}=,# \t'), st.characters(exclude_categories=("Cs",))),
    max_size=12,
)
LABEL_NAME = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: not s.startswith("__") and s != "le"
)
STEM = st.from_regex(r"[a-zA-Z][a-zA-Z0-9_]{0,10}", fullmatch=True)


def values(kind: MetricKind, openmetrics: bool) -> st.SearchStrategy[Any]:
    if kind is MetricKind.INFO:
        return st.just(1.0)
    if kind is MetricKind.COUNTER and openmetrics:
        # OpenMetrics forbids negative and NaN counters.
        return st.floats(min_value=0.0, allow_nan=False)
    return st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def specs(draw: st.DrawFn, index: int, openmetrics: bool) -> Spec:
    kind = draw(st.sampled_from(list(MetricKind)))
    labels = tuple(draw(st.lists(LABEL_NAME, max_size=3, unique=True)))
    bounds: tuple[float, ...] = ()
    if kind is MetricKind.HISTOGRAM:
        finite = st.floats(min_value=0.0, max_value=1e12, allow_nan=False)
        bounds = tuple(sorted(draw(st.lists(finite, min_size=1, max_size=5, unique=True))))
    keys = draw(
        st.lists(st.tuples(*(TEXT for _ in labels)), max_size=4, unique=True)
        if labels
        else st.lists(st.just(()), max_size=1)
    )
    rows = []
    for key in keys:
        if kind is MetricKind.HISTOGRAM:
            per_bucket = draw(st.lists(st.integers(0, 10**6), min_size=len(bounds) + 1))
            counts = [sum(per_bucket[: i + 1]) for i in range(len(bounds) + 1)]
            total = draw(st.floats(min_value=0.0) if openmetrics else st.floats(allow_nan=True))
            rows.append((key, (counts, total)))
        else:
            rows.append((key, draw(values(kind, openmetrics))))
    # The index suffix keeps names unique and away from the suffixes the formats reserve.
    name = f"{draw(STEM)}_f{index}"
    return Spec(name, kind, draw(TEXT), labels, bounds, tuple(rows))


def family_lists(openmetrics: bool) -> st.SearchStrategy[list[Spec]]:
    return st.integers(0, 5).flatmap(
        lambda n: st.tuples(*(specs(i, openmetrics) for i in range(n))).map(list)
    )


def theirs(spec: Spec) -> Metric:
    labels = list(spec.labels)
    fam: Metric
    if spec.kind is MetricKind.COUNTER:
        fam = CounterMetricFamily(spec.name, spec.help, labels=labels)
    elif spec.kind is MetricKind.GAUGE:
        fam = GaugeMetricFamily(spec.name, spec.help, labels=labels)
    elif spec.kind is MetricKind.INFO:
        fam = InfoMetricFamily(spec.name, spec.help, labels=labels)
    else:
        fam = HistogramMetricFamily(spec.name, spec.help, labels=labels)
    for key, value in spec.rows:
        if isinstance(fam, HistogramMetricFamily):
            counts, total = value
            les = [floatToGoString(b) for b in (*spec.bounds, math.inf)]
            fam.add_metric(list(key), list(zip(les, counts, strict=True)), total)
        elif isinstance(fam, InfoMetricFamily):
            fam.add_metric(list(key), {})
        else:
            fam.add_metric(list(key), value)  # type: ignore[attr-defined]
    return fam


def ours(spec: Spec) -> RenderedFamily:
    fs = FamilySpec(spec.name, spec.kind, spec.help, spec.labels, buckets=spec.bounds)
    if spec.kind is MetricKind.HISTOGRAM:
        return fs.histogram_family(
            [(fs.histogram_series(key), value[0], value[1]) for key, value in spec.rows]
        )
    return fs.family([(fs.series(key), value) for key, value in spec.rows])


def _value(v: float) -> object:
    return "NaN" if math.isnan(v) else float(v)


def normalised(families: Iterator[Metric]) -> list[tuple[object, ...]]:
    return [
        (
            f.name,
            f.type,
            f.documentation,
            [(s.name, sorted(s.labels.items()), _value(s.value)) for s in f.samples],
        )
        for f in families
    ]


@settings(max_examples=300, deadline=None)
@given(family_lists(openmetrics=False))
def test_text_format_parses_to_what_generate_latest_writes(specs: list[Spec]) -> None:
    expected = generate_latest(Families([theirs(s) for s in specs])).decode()
    got = render([ours(s) for s in specs], Format.TEXT)
    assert normalised(parse(got)) == normalised(parse(expected))


@settings(max_examples=300, deadline=None)
@given(family_lists(openmetrics=True))
def test_openmetrics_parses_to_what_prometheus_client_writes(specs: list[Spec]) -> None:
    expected = om_generate_latest(Families([theirs(s) for s in specs])).decode()
    got = render([ours(s) for s in specs], Format.OPENMETRICS)
    assert normalised(om_parse(got)) == normalised(om_parse(expected))


@settings(max_examples=200, deadline=None)
@given(family_lists(openmetrics=False))
def test_families_read_by_prometheus_client_hold_the_same_samples(specs: list[Spec]) -> None:
    """Yielded to a registry, the families are what prometheus_client's own would be."""
    assert normalised(iter([ours(s) for s in specs])) == normalised(
        iter([theirs(s) for s in specs])
    )
    # And prometheus_client's writer, reading them, writes what the direct renderer writes.
    both = [ours(s) for s in specs]
    assert normalised(parse(generate_latest(Families(both)).decode())) == normalised(
        parse(render(both, Format.TEXT))
    )


def test_foreign_families_in_a_mixed_snapshot_go_through_prometheus_client() -> None:
    gauge = GaugeMetricFamily("plain_gauge", "A plain one.", labels=["a"])
    gauge.add_metric(['x"y'], 2.5)
    spec = Spec("direct_f0", MetricKind.COUNTER, "Direct.", ("b",), (), ((("z",), 3.0),))
    snap = Snapshot([gauge, ours(spec)])
    for fmt, parser in ((Format.TEXT, parse), (Format.OPENMETRICS, om_parse)):
        text = snap.body(fmt).decode()
        writer = generate_latest if fmt is Format.TEXT else om_generate_latest
        expected = writer(Families([gauge, theirs(spec)])).decode()
        assert normalised(parser(text)) == normalised(parser(expected))
    assert snap.body(Format.OPENMETRICS).decode().count("# EOF") == 1


def test_a_series_is_escaped_once_and_forgotten_when_unused() -> None:
    fs = FamilySpec("x_f0", MetricKind.GAUGE, "X.", ("a",))
    first = fs.series(('q"',))
    assert fs.series(('q"',)) is first
    assert first.prefix == 'x_f0{a="q\\""} '
    fs.forget_unused()
    assert fs.series(('q"',)) is first  # used since the last rotation: kept
    fs.forget_unused()
    fs.forget_unused()
    assert fs.series(('q"',)) is not first  # unused for a whole rotation: rebuilt


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("1bad", MetricKind.GAUGE, "h"), "metric name"),
        (("rule:name", MetricKind.GAUGE, "h"), "metric name"),
        (("ok", MetricKind.GAUGE, "h", ("__x",)), "label name"),
        (("ok", MetricKind.GAUGE, "h", ("a", "a")), "duplicate"),
        (("ok", MetricKind.HISTOGRAM, "h", ("le",)), "le"),
    ],
)
def test_names_the_formats_cannot_carry_are_refused(args: tuple[Any, ...], match: str) -> None:
    with pytest.raises(ExpositionError, match=match):
        FamilySpec(*args)


def test_wrong_label_count_and_negative_bounds_are_refused() -> None:
    fs = FamilySpec("x_f0", MetricKind.GAUGE, "X.", ("a", "b"))
    with pytest.raises(ExpositionError, match="label values"):
        fs.series(("only-one",))
    h = FamilySpec("h_f0", MetricKind.HISTOGRAM, "H.", buckets=(-1.0, 1.0))
    with pytest.raises(ExpositionError, match="negative"):
        h.histogram_series(())


def test_non_finite_values_are_spelled_as_the_formats_require() -> None:
    """Python's parsers also read ``inf`` and ``nan``; OpenMetrics allows only these spellings."""
    fs = FamilySpec("v_f0", MetricKind.GAUGE, "V.", ("k",))
    fam = fs.family([(fs.series((k,)), v) for k, v in (("a", math.inf), ("b", -math.inf))])
    h = FamilySpec("h_f0", MetricKind.HISTOGRAM, "H.", buckets=(1.0,))
    hist = h.histogram_family([(h.histogram_series(()), (0, 0), math.nan)])
    text = render([fam, hist], Format.TEXT)
    assert 'v_f0{k="a"} +Inf\n' in text and 'v_f0{k="b"} -Inf\n' in text
    assert "h_f0_sum NaN\n" in text and 'h_f0_bucket{le="+Inf"} 0\n' in text
