"""What the GPU exporter exposes: its families per tier, a cycle's rows, and its own health.

Every family is built from a ``FamilySpec`` made once, at start-up, with the
exporter's extra labels appended; a series (one GPU's value of one family) is
escaped once, the first cycle it appears, and forgotten the first cycle it does
not (a process that exited, a GPU that left).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable, Mapping

from exporters.catalog import Metric
from exporters.catalog import gpu as cat
from exporters.exposition import Buckets, Family, FamilySpec, RenderedFamily, Series
from exporters.nvml.errors import ErrorCode

DURATION_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# The ``error`` label value of an exception that is not an NVML error (a backend
# or exporter bug): counted beside the NVML codes, logged with its traceback.
UNEXPECTED = "UNEXPECTED_EXCEPTION"
TIERS = ("fast", "slow")

# The families each tier emits, in the order they are exposed.
FAST_FAMILIES: tuple[Metric, ...] = (
    cat.GPU_INFO,
    cat.GPU_UP,
    cat.GPU_UTILIZATION,
    cat.GPU_MEMORY_COPY_UTILIZATION,
    cat.GPU_MEMORY_USED,
    cat.GPU_MEMORY_FREE,
    cat.GPU_MEMORY_TOTAL,
    cat.GPU_TEMPERATURE,
    cat.GPU_MEMORY_TEMPERATURE,
    cat.GPU_POWER,
    cat.GPU_POWER_LIMIT,
    cat.GPU_ENERGY,
    cat.GPU_SM_CLOCK,
    cat.GPU_THROTTLE,
    cat.GPU_PCIE_REPLAY,
    cat.GPU_NVLINK_BANDWIDTH,
    cat.GPU_ECC_ERRORS,
    cat.GPU_REMAPPED_ROWS,
    cat.GPU_XID_ERRORS,
    cat.GPU_XID_LAST_SEEN,
)
SLOW_FAMILIES: tuple[Metric, ...] = (
    cat.GPU_ENCODER_UTILIZATION,
    cat.GPU_DECODER_UTILIZATION,
    cat.GPU_MEMORY_CLOCK,
    cat.GPU_PCIE_TX,
    cat.GPU_PCIE_RX,
    cat.GPU_MIG_INFO,
    cat.GPU_PROCESS_MEMORY,
)
# The exporter's own health, rebuilt whenever either tier finishes a cycle.
HEALTH_FAMILIES: tuple[Metric, ...] = (
    cat.EXPORTER_COLLECT_SUCCESS,
    cat.EXPORTER_LAST_COLLECT,
    cat.EXPORTER_COLLECT_DURATION,
    cat.EXPORTER_ERRORS,
)


def specs(extra_names: tuple[str, ...]) -> dict[Metric, FamilySpec]:
    """One spec per family the exporter exposes, with the extra labels after the catalog's."""
    return {
        m: FamilySpec.of(m, extra_names, buckets=DURATION_BUCKETS)
        if m is cat.EXPORTER_COLLECT_DURATION
        else FamilySpec.of(m, extra_names)
        for m in FAST_FAMILIES + SLOW_FAMILIES + HEALTH_FAMILIES
    }


class Rows:
    """One cycle's samples, grouped by family as (series, value) rows."""

    def __init__(self, specs: Mapping[Metric, FamilySpec], extra_values: tuple[str, ...]) -> None:
        self._specs = specs
        self._extra = extra_values
        self._rows: dict[Metric, list[tuple[Series, float]]] = {}

    def add(self, metric: Metric, labels: tuple[str, ...], value: float) -> None:
        series = self._specs[metric].series(labels + self._extra)
        self._rows.setdefault(metric, []).append((series, value))

    def build(self, order: Iterable[Metric]) -> tuple[Family, ...]:
        """The families of ``order`` that have rows (an empty family says nothing: Prometheus
        sees it as absent either way); each spec forgets the series this cycle did not use."""
        out = []
        for m in order:
            spec = self._specs[m]
            rows = self._rows.get(m)
            if rows:
                out.append(spec.family(tuple(rows)))
            spec.forget_unused()
        return tuple(out)


class Health:
    """The collection-health metrics, updated by both tiers' threads (hence the lock)."""

    def __init__(self, specs: Mapping[Metric, FamilySpec], extra_values: tuple[str, ...]) -> None:
        self._specs = specs
        self._extra = extra_values
        self._lock = threading.Lock()
        # Known codes start at 0 so increase() sees the first error of each kind.
        self._errors: Counter[str] = Counter({c.name: 0 for c in ErrorCode} | {UNEXPECTED: 0})
        self._durations = {tier: Buckets(DURATION_BUCKETS) for tier in TIERS}
        self._complete = dict.fromkeys(TIERS, True)  # no cycle has failed before the first
        self._last_collect: float | None = None

    def error(self, name: str) -> None:
        with self._lock:
            self._errors[name] += 1

    def cycle(self, tier: str, seconds: float, *, complete: bool, finished: float | None) -> None:
        """A cycle of ``tier`` ended: how long it took, whether every read completed, and when
        it collected (``None`` if NVML did not answer: the last collection time stays)."""
        with self._lock:
            self._durations[tier].observe(seconds)
            self._complete[tier] = complete
            if finished is not None:
                self._last_collect = finished

    def families(self) -> tuple[RenderedFamily, ...]:
        x = self._extra
        s = self._specs
        with self._lock:
            success = 1.0 if all(self._complete.values()) else 0.0
            out: list[RenderedFamily] = [
                s[cat.EXPORTER_COLLECT_SUCCESS].family(
                    ((s[cat.EXPORTER_COLLECT_SUCCESS].series(x), success),)
                )
            ]
            if self._last_collect is not None:
                last = s[cat.EXPORTER_LAST_COLLECT]
                out.append(last.family(((last.series(x), self._last_collect),)))
            dur = s[cat.EXPORTER_COLLECT_DURATION]
            out.append(
                dur.histogram_family(
                    tuple(
                        (dur.histogram_series((tier, *x)), b.cumulative(), b.sum)
                        for tier, b in self._durations.items()
                    )
                )
            )
            err = s[cat.EXPORTER_ERRORS]
            out.append(
                err.family(
                    tuple((err.series((name, *x)), float(n)) for name, n in self._errors.items())
                )
            )
        return tuple(out)
