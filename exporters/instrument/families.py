"""The in-process store's families: which part of a recorder feeds which catalog family.

Each recorder's series are made when the recorder is (``add``), so their label
values are escaped once, at start-up; a scrape (``build``) reads the values and
pairs them with those series, and ``exporters.exposition`` renders the result.
This module knows the recorders' parts only by shape (a value; a histogram with
bounds and a ``snapshot``), so the store that owns them imports it, not the
other way round.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import Any, Protocol

from exporters.catalog import Metric, MetricKind
from exporters.catalog import model as cat
from exporters.exposition import (
    FamilySpec,
    HistogramSeries,
    RenderedFamily,
    Series,
    cumulative,
)

# (part of a recorder, catalog family, extra label) in the order they are exposed.
COUNTERS = (("requests", cat.MODEL_REQUESTS, "outcome"), ("errors", cat.MODEL_ERRORS, "reason"))
HISTOGRAMS = (
    ("duration", cat.MODEL_REQUEST_DURATION),
    ("queue_wait", cat.MODEL_QUEUE_WAIT),
    ("batch_size", cat.MODEL_BATCH_SIZE),
    ("time_to_first_token", cat.MODEL_TIME_TO_FIRST_TOKEN),
    ("inter_token_latency", cat.MODEL_INTER_TOKEN_LATENCY),
)
GAUGES = (
    ("in_flight", cat.MODEL_IN_FLIGHT),
    ("running", cat.MODEL_REQUESTS_RUNNING),
    ("waiting", cat.MODEL_REQUESTS_WAITING),
)
LLM_COUNTERS = (
    ("prompt_tokens", cat.MODEL_PROMPT_TOKENS),
    ("generation_tokens", cat.MODEL_GENERATION_TOKENS),
)
# Parts only an LLM model exposes.
LLM_ONLY = {"time_to_first_token", "inter_token_latency", "running", "waiting"}


class Value(Protocol):
    value: float


class HistogramValue(Protocol):
    bounds: tuple[float, ...]

    def snapshot(self) -> tuple[list[int], float]: ...


class ModelFamilies:
    """The families of every recorder of one store, and its unknown-requests counter."""

    def __init__(self) -> None:
        self._specs = {m: FamilySpec.of(m) for m in cat.MODEL_METRICS}
        # Per family, every recorder's (series, value holder) pairs, in recorder order.
        self._values: dict[Metric, list[tuple[Series, Value]]] = {
            m: [] for m in cat.MODEL_METRICS if m.kind is not MetricKind.HISTOGRAM
        }
        self._histograms: dict[Metric, list[tuple[HistogramSeries, HistogramValue]]] = {
            m: [] for _, m in HISTOGRAMS
        }
        self._unknown = self._specs[cat.MODEL_UNKNOWN_REQUESTS].series(())

    def add(self, labels: tuple[str, ...], llm: bool, parts: Mapping[str, Any]) -> None:
        """A new recorder: its series are built (and escaped) now, once."""
        specs = self._specs
        for part, m, _ in COUNTERS:
            children: Mapping[Enum, Value] = parts[part]
            self._values[m] += [
                (specs[m].series((*labels, str(k.value))), child) for k, child in children.items()
            ]
        for part, m in GAUGES:
            if llm or part not in LLM_ONLY:
                self._values[m].append((specs[m].series(labels), parts[part]))
        for part, m in LLM_COUNTERS if llm else ():
            self._values[m].append((specs[m].series(labels), parts[part]))
        for part, m in HISTOGRAMS:
            if llm or part not in LLM_ONLY:
                h: HistogramValue = parts[part]
                self._histograms[m].append((specs[m].histogram_series(labels, h.bounds), h))

    def build(self, unknown: float) -> tuple[RenderedFamily, ...]:
        """Every family with the values as they are now."""
        out: list[RenderedFamily] = []
        for m in cat.MODEL_METRICS:
            spec = self._specs[m]
            if m is cat.MODEL_UNKNOWN_REQUESTS:
                out.append(spec.family(((self._unknown, unknown),)))
            elif m.kind is MetricKind.HISTOGRAM:
                rows = []
                for series, h in self._histograms[m]:
                    counts, total = h.snapshot()
                    rows.append((series, cumulative(counts), total))
                out.append(spec.histogram_family(rows))
            else:
                out.append(spec.family([(s, v.value) for s, v in self._values[m]]))
        return tuple(out)
