"""The value type every catalog entry is made of."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

PREFIX = "novabrain_"


class MetricKind(StrEnum):
    COUNTER = "counter"
    GAUGE = "gauge"
    HISTOGRAM = "histogram"
    INFO = "info"


@dataclass(frozen=True)
class Metric:
    """One metric family.

    ``name`` is the family name as prometheus_client wants it: without the
    ``_total`` suffix of counters and without the ``_info`` suffix of info
    series (the client adds both). The properties give the sample names that
    appear on the wire and therefore in PromQL.
    """

    name: str
    kind: MetricKind
    help: str
    labels: tuple[str, ...] = ()

    @property
    def series(self) -> str:
        """The sample name of a gauge, a counter (``_total``) or an info series (``_info``)."""
        if self.kind is MetricKind.COUNTER:
            return f"{self.name}_total"
        if self.kind is MetricKind.INFO:
            return f"{self.name}_info"
        if self.kind is MetricKind.HISTOGRAM:
            raise ValueError(f"{self.name} is a histogram: use .bucket, .sum or .count")
        return self.name

    def _hist(self, suffix: str) -> str:
        if self.kind is not MetricKind.HISTOGRAM:
            raise ValueError(f"{self.name} is a {self.kind.value}, not a histogram")
        return f"{self.name}_{suffix}"

    @property
    def bucket(self) -> str:
        return self._hist("bucket")

    @property
    def sum(self) -> str:
        return self._hist("sum")

    @property
    def count(self) -> str:
        return self._hist("count")

    def __str__(self) -> str:
        return self.name

    def __hash__(self) -> int:
        # Collectors key per-cycle dictionaries by metric; the name is unique in the
        # catalog and its hash is cached, where the generated hash rehashes every field.
        return hash(self.name)


def counter(name: str, help: str, *labels: str) -> Metric:
    return Metric(PREFIX + name, MetricKind.COUNTER, help, labels)


def gauge(name: str, help: str, *labels: str) -> Metric:
    return Metric(PREFIX + name, MetricKind.GAUGE, help, labels)


def histogram(name: str, help: str, *labels: str) -> Metric:
    return Metric(PREFIX + name, MetricKind.HISTOGRAM, help, labels)


def info(name: str, help: str, *labels: str) -> Metric:
    return Metric(PREFIX + name, MetricKind.INFO, help, labels)
