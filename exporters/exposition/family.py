"""Families and their series: what a scrape renders, with every label value escaped once.

A ``FamilySpec`` is fixed at start-up: a family's name, kind, help and label
names, and its header lines in both text formats. ``spec.series(values)``
escapes the label values into the series' line prefix (``name{a="x",b="y"} ``)
the first time those values are seen and keeps it; a collection pairs the
prefixes with values (``spec.family(rows)``), and rendering is string joins and
number formatting only.

``Family`` and ``HistogramFamily`` are also prometheus_client ``Metric``
objects, so a collector can yield them to any registry: ``generate_latest`` and
the OpenMetrics writer read their ``samples`` (built only when asked for),
while ``exporters.exposition.snapshot`` renders them directly.

Series that stop appearing (a process that exited, a node that left) are
forgotten by ``forget_unused``, called once per collection by collectors whose
label values come and go, so the cache holds the live series only.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from enum import Enum
from typing import Generic, TypeVar, cast

from prometheus_client.metrics_core import Metric
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from exporters.catalog import Metric as CatalogMetric
from exporters.catalog import MetricKind
from exporters.exposition.errors import ExpositionError

_go = cast(Callable[[float], str], floatToGoString)

# Colons are for recording rules and a leading "__" for Prometheus itself, never for exporters.
_METRIC_NAME = re.compile(r"(?!__)[a-zA-Z_][a-zA-Z0-9_]*")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class Format(Enum):
    """The two text formats Prometheus scrapes."""

    TEXT = "text"  # the classic Prometheus text format, version 0.0.4
    OPENMETRICS = "openmetrics"  # OpenMetrics text, version 1.0.0


def _escape(value: str) -> str:
    """A label value inside its double quotes (both formats escape the same three characters)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(text: str, fmt: Format) -> str:
    text = text.replace("\\", "\\\\").replace("\n", "\\n")
    return text.replace('"', '\\"') if fmt is Format.OPENMETRICS else text


def _labels(pairs: Sequence[tuple[str, str]]) -> str:
    """``{a="x",b="y"}`` with the values escaped, or nothing for no labels."""
    if not pairs:
        return ""
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in pairs) + "}"


class Series:
    """One series of a counter, gauge or info family: its labels and line prefix, built once."""

    __slots__ = ("labels", "name", "prefix")

    def __init__(self, name: str, labels: tuple[tuple[str, str], ...]) -> None:
        self.name = name
        self.labels = labels
        self.prefix = f"{name}{_labels(labels)} "


class HistogramSeries:
    """One series of a histogram: the prefixes of its bucket, count and sum lines, built once."""

    __slots__ = ("bounds", "buckets", "count", "labels", "les", "name", "sum")

    def __init__(self, name: str, labels: tuple[tuple[str, str], ...], bounds: Sequence[float]):
        if bounds and min(bounds) < 0:
            # prometheus_client drops _sum and _count then; no histogram here needs it.
            raise ExpositionError(f"{name}: negative bucket bounds are not supported")
        self.name = name
        self.labels = labels
        self.bounds = tuple(bounds)
        # The client's own spelling of a bound (``0.05``, ``1.0``, ``+Inf``): the
        # alerts match ``le`` as a string built with the same function.
        self.les = tuple(_go(b) for b in (*self.bounds, float("inf")))
        self.buckets = tuple(f"{name}_bucket{_labels((*labels, ('le', le)))} " for le in self.les)
        self.count = f"{name}_count{_labels(labels)} "
        self.sum = f"{name}_sum{_labels(labels)} "


S = TypeVar("S", Series, HistogramSeries)


class _Cache(Generic[S]):
    """Series by label values; ``rotate`` forgets those not asked for since the last rotation."""

    def __init__(self) -> None:
        self._now: dict[tuple[str, ...], S] = {}
        self._before: dict[tuple[str, ...], S] = {}

    def get(self, values: tuple[str, ...], make: Callable[[], S]) -> S:
        s = self._now.get(values)
        if s is None:
            s = self._before.get(values)
            if s is None:
                s = make()
            # Concurrent collections of one spec may both insert: the series are
            # equal, so either one is right.
            self._now[values] = s
        return s

    def rotate(self) -> None:
        self._before, self._now = self._now, {}


class FamilySpec:
    """One family's fixed parts: names, help, label names, header lines; and its series."""

    def __init__(
        self,
        name: str,
        kind: MetricKind,
        help: str,
        labels: Sequence[str] = (),
        *,
        buckets: Sequence[float] = (),
    ) -> None:
        """``name`` is the family name as prometheus_client and the catalog spell it: without
        the ``_total`` of a counter or the ``_info`` of an info series. ``buckets`` are a
        histogram's default bounds (``histogram_series`` may give a series its own)."""
        if not _METRIC_NAME.fullmatch(name):
            raise ExpositionError(f"invalid metric name {name!r}")
        for label in labels:
            if not _LABEL_NAME.fullmatch(label) or label.startswith("__"):
                raise ExpositionError(f"{name}: invalid label name {label!r}")
        if len(set(labels)) != len(labels):
            raise ExpositionError(f"{name}: duplicate label names in {labels}")
        if kind is MetricKind.HISTOGRAM and "le" in labels:
            raise ExpositionError(f"{name}: a histogram cannot have a label named le")
        self.name = name
        self.kind = kind
        self.help = help
        self.labels = tuple(labels)
        self.buckets = tuple(buckets)
        suffix = {MetricKind.COUNTER: "_total", MetricKind.INFO: "_info"}.get(kind, "")
        self.sample_name = name + suffix
        # The classic format names counters and info series by their sample name,
        # and has no info type; OpenMetrics names the family.
        text_type = "gauge" if kind is MetricKind.INFO else kind.value
        text_name = name if kind is MetricKind.HISTOGRAM else self.sample_name
        self.headers = {
            Format.TEXT: (
                f"# HELP {text_name} {_escape_help(help, Format.TEXT)}\n"
                f"# TYPE {text_name} {text_type}\n"
            ),
            Format.OPENMETRICS: (
                f"# HELP {name} {_escape_help(help, Format.OPENMETRICS)}\n"
                f"# TYPE {name} {kind.value}\n"
            ),
        }
        self._series: _Cache[Series] = _Cache()
        self._histograms: _Cache[HistogramSeries] = _Cache()

    @classmethod
    def of(
        cls,
        metric: CatalogMetric,
        extra_labels: Sequence[str] = (),
        *,
        buckets: Sequence[float] = (),
    ) -> FamilySpec:
        """The spec of a catalog metric, with ``extra_labels`` after the catalog's labels."""
        return cls(
            metric.name, metric.kind, metric.help, (*metric.labels, *extra_labels), buckets=buckets
        )

    def _pairs(self, values: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
        if len(values) != len(self.labels):
            raise ExpositionError(f"{self.name}: {len(values)} label values for {self.labels}")
        return tuple(zip(self.labels, values, strict=True))

    def series(self, values: tuple[str, ...]) -> Series:
        """The series of a counter, gauge or info family with these label values."""
        if self.kind is MetricKind.HISTOGRAM:
            raise ExpositionError(f"{self.name} is a histogram: use histogram_series")
        return self._series.get(values, lambda: Series(self.sample_name, self._pairs(values)))

    def histogram_series(
        self, values: tuple[str, ...], bounds: Sequence[float] | None = None
    ) -> HistogramSeries:
        """The series of a histogram with these label values and bounds (the spec's by default).
        A series keeps the bounds it was created with."""
        if self.kind is not MetricKind.HISTOGRAM:
            raise ExpositionError(f"{self.name} is a {self.kind.value}, not a histogram")
        b = self.buckets if bounds is None else bounds
        return self._histograms.get(
            values, lambda: HistogramSeries(self.name, self._pairs(values), b)
        )

    def forget_unused(self) -> None:
        """Forget the series not asked for since the previous call (once per collection)."""
        self._series.rotate()
        self._histograms.rotate()

    def family(self, rows: Sequence[tuple[Series, float]]) -> Family:
        return Family(self, rows)

    def histogram_family(
        self, rows: Sequence[tuple[HistogramSeries, Sequence[float], float]]
    ) -> HistogramFamily:
        """``rows`` are (series, cumulative bucket counts ending with +Inf, sum)."""
        return HistogramFamily(self, rows)


class RenderedFamily(Metric):
    """A family prometheus_client can read (``samples``) and this package renders directly."""

    def __init__(self, spec: FamilySpec) -> None:
        # Metric.__init__ is not called: the spec validated the name once, and the
        # samples are derived from the rows only when a prometheus_client writer asks.
        self.spec = spec
        self.name = spec.name
        self.documentation = spec.help
        self.unit = ""
        self.type = spec.kind.value
        self._samples: list[Sample] | None = None

    @property
    def samples(self) -> list[Sample]:
        if self._samples is None:
            self._samples = self._build_samples()
        return self._samples

    @samples.setter
    def samples(self, value: list[Sample]) -> None:
        raise AttributeError("a rendered family's samples come from its rows")

    def _build_samples(self) -> list[Sample]:
        raise NotImplementedError

    def text(self, fmt: Format) -> str:
        raise NotImplementedError


class Family(RenderedFamily):
    """A counter, gauge or info family as of one collection: (series, value) rows."""

    def __init__(self, spec: FamilySpec, rows: Sequence[tuple[Series, float]]) -> None:
        super().__init__(spec)
        self.rows = rows

    def text(self, fmt: Format) -> str:
        # ``repr`` is the shortest spelling that reads back to the same float, and Go's
        # ParseFloat reads it; only NaN and the infinities need Go's words (``v - v`` is
        # 0 exactly when ``v`` is finite).
        go = _go
        return self.spec.headers[fmt] + "".join(
            [f"{s.prefix}{v!r}\n" if v - v == 0 else f"{s.prefix}{go(v)}\n" for s, v in self.rows]
        )

    def _build_samples(self) -> list[Sample]:
        return [Sample(s.name, dict(s.labels), float(v)) for s, v in self.rows]


class HistogramFamily(RenderedFamily):
    """A histogram family as of one collection: (series, cumulative counts, sum) rows."""

    def __init__(
        self, spec: FamilySpec, rows: Sequence[tuple[HistogramSeries, Sequence[float], float]]
    ) -> None:
        super().__init__(spec)
        for s, counts, _ in rows:
            if len(counts) != len(s.buckets):
                raise ExpositionError(
                    f"{s.name}: {len(counts)} counts for {len(s.buckets)} buckets"
                )
        self.rows = rows

    def text(self, fmt: Format) -> str:
        go = _go
        out = [self.spec.headers[fmt]]
        for s, counts, total in self.rows:
            out += [
                f"{prefix}{n!r}\n" if n - n == 0 else f"{prefix}{go(n)}\n"
                for prefix, n in zip(s.buckets, counts, strict=True)
            ]
            n = counts[-1]
            out.append(f"{s.count}{n!r}\n" if n - n == 0 else f"{s.count}{go(n)}\n")
            out.append(f"{s.sum}{total!r}\n" if total - total == 0 else f"{s.sum}{go(total)}\n")
        return "".join(out)

    def _build_samples(self) -> list[Sample]:
        out: list[Sample] = []
        for s, counts, total in self.rows:
            labels = dict(s.labels)
            for le, n in zip(s.les, counts, strict=True):
                out.append(Sample(f"{s.name}_bucket", {**labels, "le": le}, float(n)))
            out.append(Sample(f"{s.name}_count", labels, float(counts[-1])))
            out.append(Sample(f"{s.name}_sum", labels, float(total)))
        return out
