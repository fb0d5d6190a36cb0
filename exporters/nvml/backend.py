"""The one small NVML interface both backends implement.

Devices are addressed by ``dev``, their position in :meth:`Nvml.devices`; the
real backend maps it to a cached handle. Every method raises only
:class:`exporters.nvml.errors.NvmlError` (or a subclass).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from exporters.nvml.errors import NvmlError
from exporters.nvml.values import (
    Clock,
    GpuIdentity,
    MemoryInfo,
    MigInstance,
    PcieCounter,
    ProcessMemory,
    Utilization,
    XidEvent,
)

FieldRequest = tuple[int, int]  # (field id, scope id)
FieldResult = float | NvmlError  # the value, or the per-field error NVML returned


class Nvml(Protocol):
    def init(self) -> None:
        """Initialise the library and enumerate the GPUs (and arm XID events)."""

    def shutdown(self) -> None: ...

    def driver_version(self) -> str: ...

    def devices(self) -> tuple[GpuIdentity, ...]:
        """The GPUs found by the last :meth:`init` (no NVML call)."""

    def field_values(self, dev: int, fields: Sequence[FieldRequest]) -> list[FieldResult]:
        """One ``nvmlDeviceGetFieldValues`` call; per-field failures come back as errors."""

    def utilization(self, dev: int) -> Utilization: ...

    def encoder_utilization(self, dev: int) -> float:
        """Percent."""

    def decoder_utilization(self, dev: int) -> float:
        """Percent."""

    def memory(self, dev: int) -> MemoryInfo: ...

    def temperature(self, dev: int) -> float:
        """Degrees Celsius, GPU die sensor."""

    def clock(self, dev: int, clock: Clock) -> float:
        """MHz."""

    def power_usage(self, dev: int) -> float:
        """mW. Only where the POWER_INSTANT field is missing (drivers before R535)."""

    def power_limit(self, dev: int) -> float:
        """mW, enforced. Only where the POWER_CURRENT_LIMIT field is missing."""

    def throttle_reasons(self, dev: int) -> int:
        """The ``nvmlClocksEventReason*`` bit mask."""

    def pcie_throughput(self, dev: int, counter: PcieCounter) -> float:
        """KB/s over NVML's 20 ms sample (slow: the driver sleeps)."""

    def processes(self, dev: int) -> tuple[ProcessMemory, ...]: ...

    def mig_instances(self, dev: int) -> tuple[MigInstance, ...]:
        """Empty when MIG is disabled."""

    def xid_events(self, limit: int) -> tuple[XidEvent, ...]:
        """XID events that arrived since the last call (at most ``limit``; never blocks)."""
