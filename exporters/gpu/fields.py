"""The fast tier's NVML tables: which field ids it asks for, and what each value becomes.

One ``nvmlDeviceGetFieldValues`` call per GPU reads every value listed in
``FIELDS`` (energy, power, power limit, memory temperature, ECC, remapped rows,
PCIe replays, NVLink); ``FIELD_FALLBACKS`` are the single calls used instead on
drivers without a field; ``THROTTLE_REASONS`` bounds the ``reason`` label.
"""

from __future__ import annotations

from collections.abc import Callable

from exporters.catalog import Metric
from exporters.catalog import gpu as cat
from exporters.nvml.backend import FieldRequest, Nvml
from exporters.nvml.values import ALL_LINKS, Field

KIB = 1024

# nvmlClocksEventReason* bits -> the bounded `reason` label values.
THROTTLE_REASONS: tuple[tuple[int, str], ...] = (
    (0x001, "gpu_idle"),
    (0x002, "applications_clocks_setting"),
    (0x004, "sw_power_cap"),
    (0x008, "hw_slowdown"),
    (0x010, "sync_boost"),
    (0x020, "sw_thermal_slowdown"),
    (0x040, "hw_thermal_slowdown"),
    (0x080, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)

# The one field-value request of the fast tier: (field, scope) -> (metric, extra labels, scale).
FIELDS: tuple[tuple[FieldRequest, Metric, tuple[str, ...], float], ...] = (
    ((Field.POWER_INSTANT, 0), cat.GPU_POWER, (), 1e-3),
    ((Field.POWER_CURRENT_LIMIT, 0), cat.GPU_POWER_LIMIT, (), 1e-3),
    ((Field.TOTAL_ENERGY_CONSUMPTION, 0), cat.GPU_ENERGY, (), 1e-3),
    ((Field.MEMORY_TEMP, 0), cat.GPU_MEMORY_TEMPERATURE, (), 1.0),
    ((Field.PCIE_REPLAY_COUNTER, 0), cat.GPU_PCIE_REPLAY, (), 1.0),
    ((Field.NVLINK_THROUGHPUT_DATA_TX, ALL_LINKS), cat.GPU_NVLINK_BANDWIDTH, ("tx",), KIB),
    ((Field.NVLINK_THROUGHPUT_DATA_RX, ALL_LINKS), cat.GPU_NVLINK_BANDWIDTH, ("rx",), KIB),
    ((Field.ECC_SBE_VOL_TOTAL, 0), cat.GPU_ECC_ERRORS, ("corrected", "volatile"), 1.0),
    ((Field.ECC_DBE_VOL_TOTAL, 0), cat.GPU_ECC_ERRORS, ("uncorrected", "volatile"), 1.0),
    ((Field.ECC_SBE_AGG_TOTAL, 0), cat.GPU_ECC_ERRORS, ("corrected", "aggregate"), 1.0),
    ((Field.ECC_DBE_AGG_TOTAL, 0), cat.GPU_ECC_ERRORS, ("uncorrected", "aggregate"), 1.0),
    ((Field.REMAPPED_COR, 0), cat.GPU_REMAPPED_ROWS, ("correctable",), 1.0),
    ((Field.REMAPPED_UNC, 0), cat.GPU_REMAPPED_ROWS, ("uncorrectable",), 1.0),
)
FIELD_REQUEST: tuple[FieldRequest, ...] = tuple(f[0] for f in FIELDS)
# Drivers before R535 lack the power fields: one call each instead, on those drivers only.
FIELD_FALLBACKS: dict[int, Callable[[Nvml, int], float]] = {
    Field.POWER_INSTANT: lambda b, dev: b.power_usage(dev),
    Field.POWER_CURRENT_LIMIT: lambda b, dev: b.power_limit(dev),
}
