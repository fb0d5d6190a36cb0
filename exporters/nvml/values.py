"""Values that cross the NVML interface: small frozen dataclasses, raw NVML units.

The interface keeps NVML's own units (percent, MHz, mW, mJ, KiB, KB/s) so that
both backends are thin; the collector converts to base units in one place.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Field(IntEnum):
    """The ``nvmlDeviceGetFieldValues`` field ids the fast tier reads (values of nvml.h)."""

    ECC_SBE_VOL_TOTAL = 3
    ECC_DBE_VOL_TOTAL = 4
    ECC_SBE_AGG_TOTAL = 5
    ECC_DBE_AGG_TOTAL = 6
    MEMORY_TEMP = 82
    TOTAL_ENERGY_CONSUMPTION = 83  # mJ since the driver loaded
    PCIE_REPLAY_COUNTER = 94
    NVLINK_THROUGHPUT_DATA_TX = 138  # KiB, scope = link id or ALL_LINKS
    NVLINK_THROUGHPUT_DATA_RX = 139
    REMAPPED_COR = 142
    REMAPPED_UNC = 143
    POWER_INSTANT = 186  # mW
    POWER_CURRENT_LIMIT = 190  # mW


# nvmlFieldValue_t.scopeId for NVLink throughput: UINT_MAX sums every link.
ALL_LINKS = 0xFFFFFFFF


class Clock(IntEnum):
    """``nvmlClockType_t``."""

    SM = 1
    MEM = 2


class PcieCounter(IntEnum):
    """``nvmlPcieUtilCounter_t``."""

    TX = 0
    RX = 1


class Call(StrEnum):
    """The calls of the NVML interface: fault injection and call counting name them."""

    INIT = "init"
    DRIVER_VERSION = "driver_version"
    DEVICES = "devices"
    FIELD_VALUES = "field_values"
    UTILIZATION = "utilization"
    ENCODER_UTILIZATION = "encoder_utilization"
    DECODER_UTILIZATION = "decoder_utilization"
    MEMORY = "memory"
    TEMPERATURE = "temperature"
    CLOCK = "clock"
    THROTTLE_REASONS = "throttle_reasons"
    POWER_USAGE = "power_usage"
    POWER_LIMIT = "power_limit"
    PCIE_THROUGHPUT = "pcie_throughput"
    PROCESSES = "processes"
    MIG_INSTANCES = "mig_instances"
    XID_EVENTS = "xid_events"


@dataclass(frozen=True)
class GpuIdentity:
    """A GPU as enumerated once after init. ``dev`` is its position in the backend."""

    dev: int
    node: str
    index: int
    uuid: str
    name: str
    pci_bus_id: str
    memory_total_bytes: int


@dataclass(frozen=True)
class Utilization:
    gpu_percent: float
    memory_percent: float


@dataclass(frozen=True)
class MemoryInfo:
    total_bytes: int
    free_bytes: int
    used_bytes: int


@dataclass(frozen=True)
class ProcessMemory:
    pid: int
    used_bytes: int


@dataclass(frozen=True)
class MigInstance:
    gpu_instance_id: int
    profile: str  # e.g. "1g.10gb"


@dataclass(frozen=True)
class XidEvent:
    dev: int
    xid: int
