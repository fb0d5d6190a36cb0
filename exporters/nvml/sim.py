"""The simulated NVML backend: any number of nodes and GPUs, scriptable, with fault injection.

Deterministic: nothing moves unless a script calls :meth:`SimBackend.set` (or a
helper), except the energy and NVLink counters, which integrate power and
bandwidth over the injected ``timer``. Thread-safe, because the exporter's fast
and slow tiers read it from worker threads while a demo scripts it.

Faults: :meth:`SimBackend.inject` makes a call fail with an NVML error until
:meth:`SimBackend.clear_faults`. ``call`` is a :class:`Call` name (``"init"``
for an init failure) or ``"field:<id>"`` to fail one field of the field-value
call; ``uuid`` restricts the fault to one GPU. A fault with neither fails every
call, init included.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from deploy.stack import GpuSlot, Stack
from exporters.nvml.backend import FieldRequest, FieldResult
from exporters.nvml.errors import DriverError, ErrorCode, NvmlError, nvml_error, parse_code
from exporters.nvml.values import (
    ALL_LINKS,
    Call,
    Clock,
    Field,
    GpuIdentity,
    MemoryInfo,
    MigInstance,
    PcieCounter,
    ProcessMemory,
    Utilization,
    XidEvent,
)

DRIVER_VERSION = "550.54.15"
NVLINK_LINKS = 18  # an H100 SXM's NVLink count
_NVLINK_LINK_COUNT_FIELD = 91  # NVML_FI_DEV_NVLINK_LINK_COUNT: peers such as nvitop ask for it
_KIB = 1024


@dataclass
class _Gpu:
    """Mutable state of one simulated GPU, in base units (converted to NVML's on read)."""

    ident: GpuIdentity
    utilization: float = 0.0
    memory_copy_utilization: float = 0.0
    encoder_utilization: float = 0.0
    decoder_utilization: float = 0.0
    memory_used_bytes: int = 0
    temperature_celsius: float = 30.0
    memory_temperature_celsius: float = 32.0
    power_watts: float = 70.0
    power_limit_watts: float = 700.0
    sm_clock_hz: float = 1.98e9
    memory_clock_hz: float = 2.619e9
    throttle_reasons: int = 0
    pcie_tx_bytes_per_second: float = 0.0
    pcie_rx_bytes_per_second: float = 0.0
    nvlink_tx_bytes_per_second: float = 0.0
    nvlink_rx_bytes_per_second: float = 0.0
    pcie_replays: int = 0
    ecc_corrected_volatile: int = 0
    ecc_uncorrected_volatile: int = 0
    ecc_corrected_aggregate: int = 0
    ecc_uncorrected_aggregate: int = 0
    remapped_correctable: int = 0
    remapped_uncorrectable: int = 0
    # Counters integrated over time: value at ``since`` plus rate * elapsed.
    energy_joules: float = 0.0
    nvlink_tx_bytes: float = 0.0
    nvlink_rx_bytes: float = 0.0
    since: float = 0.0
    processes: tuple[ProcessMemory, ...] = ()
    mig: tuple[MigInstance, ...] = ()


@dataclass(frozen=True)
class _Fault:
    code: int
    call: str | None
    uuid: str | None


@dataclass
class SimBackend:
    """Simulated GPUs behind the :class:`exporters.nvml.backend.Nvml` interface."""

    gpus: Sequence[GpuIdentity]
    timer: Callable[[], float] = time.monotonic
    driver: str = DRIVER_VERSION
    calls: Counter[str] = field(default_factory=Counter)
    _state: dict[str, _Gpu] = field(init=False)
    _faults: list[_Fault] = field(init=False, default_factory=list)
    _xids: list[XidEvent] = field(init=False, default_factory=list)
    _initialised: bool = field(init=False, default=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        now = self.timer()
        self.gpus = tuple(self.gpus)
        self._state = {g.uuid: _Gpu(g, since=now) for g in self.gpus}
        if len(self._state) != len(self.gpus):
            raise ValueError("GPU uuids must be unique")

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_slots(
        cls, slots: Iterable[GpuSlot], *, timer: Callable[[], float] = time.monotonic
    ) -> SimBackend:
        gpus = [
            GpuIdentity(
                dev=i,
                node=s.node,
                index=s.index,
                uuid=s.uuid,
                name=s.model,
                pci_bus_id=f"00000000:{0x18 + s.index * 0x10:02X}:00.0",
                memory_total_bytes=s.memory_bytes,
            )
            for i, s in enumerate(slots)
        ]
        return cls(gpus, timer=timer)

    @classmethod
    def from_stack(cls, stack: Stack, *, timer: Callable[[], float] = time.monotonic) -> SimBackend:
        """One simulated GPU per ``stack.gpus()`` entry (node, index, uuid, model, memory)."""
        return cls.from_slots(stack.gpus(), timer=timer)

    @classmethod
    def cluster(
        cls,
        nodes: int,
        gpus_per_node: int,
        *,
        model: str = "NVIDIA H100 80GB HBM3",
        memory_bytes: int = 80 * 1024**3,
        timer: Callable[[], float] = time.monotonic,
    ) -> SimBackend:
        """A cluster of any size without a stack file (benchmarks, property tests)."""
        slots = [
            GpuSlot(f"node-{n}", i, f"GPU-sim-{n:04d}-{i:02d}", model, memory_bytes)
            for n in range(nodes)
            for i in range(gpus_per_node)
        ]
        return cls.from_slots(slots, timer=timer)

    # ------------------------------------------------------------------ scripting

    def _gpu(self, uuid: str) -> _Gpu:
        try:
            return self._state[uuid]
        except KeyError:
            raise KeyError(f"no simulated GPU {uuid!r}") from None

    def _fold(self, g: _Gpu, now: float) -> None:
        """Bring the integrated counters up to ``now`` before their rates change."""
        dt = max(0.0, now - g.since)
        g.energy_joules += g.power_watts * dt
        g.nvlink_tx_bytes += g.nvlink_tx_bytes_per_second * dt
        g.nvlink_rx_bytes += g.nvlink_rx_bytes_per_second * dt
        g.since = now

    def set(
        self,
        uuid: str,
        *,
        utilization: float | None = None,
        memory_copy_utilization: float | None = None,
        encoder_utilization: float | None = None,
        decoder_utilization: float | None = None,
        memory_used_bytes: int | None = None,
        temperature_celsius: float | None = None,
        memory_temperature_celsius: float | None = None,
        power_watts: float | None = None,
        power_limit_watts: float | None = None,
        sm_clock_hz: float | None = None,
        memory_clock_hz: float | None = None,
        throttle_reasons: int | None = None,
        pcie_tx_bytes_per_second: float | None = None,
        pcie_rx_bytes_per_second: float | None = None,
        nvlink_tx_bytes_per_second: float | None = None,
        nvlink_rx_bytes_per_second: float | None = None,
    ) -> None:
        """Set the current readings of one GPU (ratios in 0..1, base units); None leaves a value."""
        values = {k: v for k, v in locals().items() if k not in {"self", "uuid"} and v is not None}
        with self._lock:
            g = self._gpu(uuid)
            self._fold(g, self.timer())
            if "memory_used_bytes" in values:
                values["memory_used_bytes"] = min(
                    int(values["memory_used_bytes"]), g.ident.memory_total_bytes
                )
            for k, v in values.items():
                setattr(g, k, v)

    def add_errors(
        self,
        uuid: str,
        *,
        ecc_corrected: int = 0,
        ecc_uncorrected: int = 0,
        remapped_correctable: int = 0,
        remapped_uncorrectable: int = 0,
        pcie_replays: int = 0,
    ) -> None:
        """Count hardware errors: ECC errors go to the volatile and the aggregate counters."""
        with self._lock:
            g = self._gpu(uuid)
            g.ecc_corrected_volatile += ecc_corrected
            g.ecc_corrected_aggregate += ecc_corrected
            g.ecc_uncorrected_volatile += ecc_uncorrected
            g.ecc_uncorrected_aggregate += ecc_uncorrected
            g.remapped_correctable += remapped_correctable
            g.remapped_uncorrectable += remapped_uncorrectable
            g.pcie_replays += pcie_replays

    def set_processes(self, uuid: str, processes: Iterable[tuple[int, int]]) -> None:
        """The compute processes on a GPU: ``(pid, used_bytes)`` pairs."""
        with self._lock:
            self._gpu(uuid).processes = tuple(ProcessMemory(p, b) for p, b in processes)

    def set_mig(self, uuid: str, instances: Iterable[tuple[int, str]]) -> None:
        """MIG GPU instances: ``(gpu_instance_id, profile)`` pairs; empty disables MIG."""
        with self._lock:
            self._gpu(uuid).mig = tuple(MigInstance(i, p) for i, p in instances)

    def xid(self, uuid: str, code: int) -> None:
        """Raise an XID event on a GPU (delivered by the next ``xid_events`` call)."""
        with self._lock:
            self._xids.append(XidEvent(self._gpu(uuid).ident.dev, code))

    def inject(self, error: str | int, *, call: str | None = None, uuid: str | None = None) -> None:
        """Make matching calls fail with ``error`` (e.g. ``"GPU_IS_LOST"``) until cleared."""
        code = parse_code(error)
        if uuid is not None:
            self._gpu(uuid)
        if call is not None and not call.startswith("field:"):
            Call(call)  # a typo must not silently inject nothing
        with self._lock:
            self._faults.append(_Fault(code, call, uuid))

    def clear_faults(self, *, uuid: str | None = None) -> None:
        """Remove every fault, or those of one GPU."""
        with self._lock:
            self._faults = [f for f in self._faults if uuid is not None and f.uuid != uuid]

    # ------------------------------------------------------------------ the Nvml interface

    def _enter(self, call: Call, dev: int | None = None) -> _Gpu | None:
        """Count the call and raise the first matching fault. Call with the lock held."""
        self.calls[call.value] += 1
        uuid = None if dev is None else self.gpus[dev].uuid
        for f in self._faults:
            if (f.call is None or f.call == call.value) and (f.uuid is None or f.uuid == uuid):
                raise nvml_error(f.code, call.value)
        if call is not Call.INIT and not self._initialised:
            raise DriverError(ErrorCode.UNINITIALIZED, call.value)
        return None if uuid is None else self._state[uuid]

    def _dev(self, call: Call, dev: int) -> _Gpu:
        if not 0 <= dev < len(self.gpus):
            raise nvml_error(ErrorCode.INVALID_ARGUMENT, call.value)
        g = self._enter(call, dev)
        assert g is not None
        return g

    def init(self) -> None:
        with self._lock:
            self._initialised = False
            self._enter(Call.INIT)
            self._initialised = True

    def shutdown(self) -> None:
        with self._lock:
            self._initialised = False

    def driver_version(self) -> str:
        with self._lock:
            self._enter(Call.DRIVER_VERSION)
            return self.driver

    def devices(self) -> tuple[GpuIdentity, ...]:
        with self._lock:
            self._enter(Call.DEVICES)
            return tuple(self.gpus)

    def field_values(self, dev: int, fields: Sequence[FieldRequest]) -> list[FieldResult]:
        with self._lock:
            g = self._dev(Call.FIELD_VALUES, dev)
            self._fold(g, self.timer())
            failed = {
                f.call: f.code
                for f in self._faults
                if f.call is not None
                and f.call.startswith("field:")
                and (f.uuid is None or f.uuid == g.ident.uuid)
            }
            out: list[FieldResult] = []
            for fid, scope in fields:
                code = failed.get(f"field:{fid}")
                if code is not None:
                    out.append(nvml_error(code, f"field:{fid}"))
                else:
                    out.append(self._field(g, fid, scope))
            return out

    @staticmethod
    def _field(g: _Gpu, fid: int, scope: int) -> FieldResult:
        values: dict[int, float] = {
            Field.ECC_SBE_VOL_TOTAL: g.ecc_corrected_volatile,
            Field.ECC_DBE_VOL_TOTAL: g.ecc_uncorrected_volatile,
            Field.ECC_SBE_AGG_TOTAL: g.ecc_corrected_aggregate,
            Field.ECC_DBE_AGG_TOTAL: g.ecc_uncorrected_aggregate,
            Field.MEMORY_TEMP: round(g.memory_temperature_celsius),
            Field.TOTAL_ENERGY_CONSUMPTION: int(g.energy_joules * 1000),
            Field.PCIE_REPLAY_COUNTER: g.pcie_replays,
            Field.REMAPPED_COR: g.remapped_correctable,
            Field.REMAPPED_UNC: g.remapped_uncorrectable,
            Field.POWER_INSTANT: int(g.power_watts * 1000),
            Field.POWER_CURRENT_LIMIT: int(g.power_limit_watts * 1000),
        }
        if fid == _NVLINK_LINK_COUNT_FIELD:
            return float(NVLINK_LINKS)
        if fid in (Field.NVLINK_THROUGHPUT_DATA_TX, Field.NVLINK_THROUGHPUT_DATA_RX):
            tx = fid == Field.NVLINK_THROUGHPUT_DATA_TX
            total = g.nvlink_tx_bytes if tx else g.nvlink_rx_bytes
            if scope == ALL_LINKS:
                return float(int(total // _KIB))
            if 0 <= scope < NVLINK_LINKS:  # traffic spread evenly over the links
                return float(int(total / NVLINK_LINKS // _KIB))
            return nvml_error(ErrorCode.INVALID_ARGUMENT, f"field:{fid}")
        if fid not in values:
            return nvml_error(ErrorCode.NOT_SUPPORTED, f"field:{fid}")
        return float(values[fid])

    def utilization(self, dev: int) -> Utilization:
        with self._lock:
            g = self._dev(Call.UTILIZATION, dev)
            return Utilization(
                float(round(g.utilization * 100)), float(round(g.memory_copy_utilization * 100))
            )

    def encoder_utilization(self, dev: int) -> float:
        with self._lock:
            return float(round(self._dev(Call.ENCODER_UTILIZATION, dev).encoder_utilization * 100))

    def decoder_utilization(self, dev: int) -> float:
        with self._lock:
            return float(round(self._dev(Call.DECODER_UTILIZATION, dev).decoder_utilization * 100))

    def memory(self, dev: int) -> MemoryInfo:
        with self._lock:
            g = self._dev(Call.MEMORY, dev)
            total = g.ident.memory_total_bytes
            return MemoryInfo(total, total - g.memory_used_bytes, g.memory_used_bytes)

    def temperature(self, dev: int) -> float:
        with self._lock:
            return float(round(self._dev(Call.TEMPERATURE, dev).temperature_celsius))

    def clock(self, dev: int, clock: Clock) -> float:
        with self._lock:
            g = self._dev(Call.CLOCK, dev)
            hz = g.sm_clock_hz if clock is Clock.SM else g.memory_clock_hz
            return float(round(hz / 1e6))

    def power_usage(self, dev: int) -> float:
        with self._lock:
            return float(int(self._dev(Call.POWER_USAGE, dev).power_watts * 1000))

    def power_limit(self, dev: int) -> float:
        with self._lock:
            return float(int(self._dev(Call.POWER_LIMIT, dev).power_limit_watts * 1000))

    def throttle_reasons(self, dev: int) -> int:
        with self._lock:
            return self._dev(Call.THROTTLE_REASONS, dev).throttle_reasons

    def pcie_throughput(self, dev: int, counter: PcieCounter) -> float:
        with self._lock:
            g = self._dev(Call.PCIE_THROUGHPUT, dev)
            bps = (
                g.pcie_tx_bytes_per_second
                if counter is PcieCounter.TX
                else g.pcie_rx_bytes_per_second
            )
            return float(int(bps // 1000))  # NVML reports KB/s

    def processes(self, dev: int) -> tuple[ProcessMemory, ...]:
        with self._lock:
            return self._dev(Call.PROCESSES, dev).processes

    def mig_instances(self, dev: int) -> tuple[MigInstance, ...]:
        with self._lock:
            return self._dev(Call.MIG_INSTANCES, dev).mig

    def xid_events(self, limit: int) -> tuple[XidEvent, ...]:
        with self._lock:
            self._enter(Call.XID_EVENTS)
            out, self._xids = self._xids[:limit], self._xids[limit:]
            return tuple(out)


__all__ = ["DRIVER_VERSION", "NvmlError", "SimBackend"]
