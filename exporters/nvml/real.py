"""The real backend over NVIDIA's nvidia-ml-py (``import pynvml``).

Handles are looked up once per :meth:`NvmlBackend.init` and cached; every call
translates ``pynvml.NVMLError`` into this package's exception tree and NVML's
ctypes structures into plain values. The pynvml module can be passed in, which
is how the tests run this backend against a fake binding and assert its calls.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar

from exporters.nvml.backend import FieldRequest, FieldResult
from exporters.nvml.errors import DriverError, ErrorCode, NvmlError, nvml_error
from exporters.nvml.values import (
    Call,
    Clock,
    GpuIdentity,
    MemoryInfo,
    MigInstance,
    PcieCounter,
    ProcessMemory,
    Utilization,
    XidEvent,
)

T = TypeVar("T")
log = logging.getLogger(__name__)

# nvmlEventTypeXidCriticalError
_XID_EVENT = 0x0000000000000008
# nvmlValueType_t -> the member of c_nvmlValue_t that holds it
_VALUE_MEMBER = {
    0: "dVal",
    1: "uiVal",
    2: "ulVal",
    3: "ullVal",
    4: "sllVal",
    5: "siVal",
    6: "usVal",
}


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class NvmlBackend:
    """NVML on this machine: ``node`` labels its GPUs (default: the host name)."""

    def __init__(self, node: str | None = None, *, pynvml: ModuleType | None = None) -> None:
        self.node = node or socket.gethostname()
        self._nv: Any = pynvml
        self._handles: list[Any] = []
        self._gpus: tuple[GpuIdentity, ...] = ()
        self._events: Any = None
        self._old_throttle_api = False

    def _call(self, call: Call, fn: Callable[..., T], *args: Any) -> T:
        nv = self._nv
        try:
            return fn(*args)
        except nv.NVMLError as e:
            raise nvml_error(int(e.value), call.value) from None

    # ------------------------------------------------------------------ lifecycle

    def init(self) -> None:
        if self._nv is None:
            try:
                import pynvml
            except ImportError:  # the package is a dependency; a broken install reads as no driver
                raise nvml_error(ErrorCode.LIBRARY_NOT_FOUND, Call.INIT.value) from None
            self._nv = pynvml
        nv = self._nv
        self._call(Call.INIT, nv.nvmlInit)
        handles: list[Any] = []
        gpus: list[GpuIdentity] = []
        for i in range(self._call(Call.INIT, nv.nvmlDeviceGetCount)):
            try:
                h, g = self._identify(i, len(gpus))
            except DriverError:
                raise
            except NvmlError as e:
                # One GPU already off the bus must not hide the others: enumerate the
                # rest; the lost one is absent until NVML is initialised again.
                log.warning("GPU %d skipped at NVML init: %s", i, e)
                continue
            handles.append(h)
            gpus.append(g)
        self._handles, self._gpus = handles, tuple(gpus)
        self._events = self._arm_xid_events()

    def _identify(self, index: int, dev: int) -> tuple[Any, GpuIdentity]:
        nv = self._nv
        h = self._call(Call.INIT, nv.nvmlDeviceGetHandleByIndex, index)
        return h, GpuIdentity(
            dev=dev,
            node=self.node,
            index=index,
            uuid=_text(self._call(Call.INIT, nv.nvmlDeviceGetUUID, h)),
            name=_text(self._call(Call.INIT, nv.nvmlDeviceGetName, h)),
            pci_bus_id=_text(self._call(Call.INIT, nv.nvmlDeviceGetPciInfo, h).busId),
            memory_total_bytes=int(self._call(Call.INIT, nv.nvmlDeviceGetMemoryInfo, h).total),
        )

    def _arm_xid_events(self) -> Any:
        """An event set with every GPU that supports XID events (None if none does)."""
        nv = self._nv
        try:
            events = self._call(Call.INIT, nv.nvmlEventSetCreate)
        except NvmlError:
            return None
        armed = 0
        for h in self._handles:
            try:
                self._call(Call.INIT, nv.nvmlDeviceRegisterEvents, h, _XID_EVENT, events)
                armed += 1
            except NvmlError:
                continue  # e.g. NOT_SUPPORTED on this GPU; the others still report XIDs
        if not armed:
            self._call(Call.INIT, nv.nvmlEventSetFree, events)
            return None
        return events

    def shutdown(self) -> None:
        nv = self._nv
        if nv is None:
            return
        try:
            if self._events is not None:
                nv.nvmlEventSetFree(self._events)
            nv.nvmlShutdown()
        except nv.NVMLError:
            pass  # shutting down a library that already failed: nothing left to release
        self._events, self._handles, self._gpus = None, [], ()

    # ------------------------------------------------------------------ queries

    def driver_version(self) -> str:
        return _text(self._call(Call.DRIVER_VERSION, self._nv.nvmlSystemGetDriverVersion))

    def devices(self) -> tuple[GpuIdentity, ...]:
        return self._gpus

    def _h(self, call: Call, dev: int) -> Any:
        if not 0 <= dev < len(self._handles):
            raise nvml_error(ErrorCode.UNINITIALIZED, call.value)
        return self._handles[dev]

    def field_values(self, dev: int, fields: Sequence[FieldRequest]) -> list[FieldResult]:
        call = Call.FIELD_VALUES
        raw = self._call(call, self._nv.nvmlDeviceGetFieldValues, self._h(call, dev), list(fields))
        out: list[FieldResult] = []
        for v in raw:
            if v.nvmlReturn != 0:
                out.append(nvml_error(int(v.nvmlReturn), f"field:{v.fieldId}"))
            else:
                out.append(float(getattr(v.value, _VALUE_MEMBER.get(int(v.valueType), "ullVal"))))
        return out

    def utilization(self, dev: int) -> Utilization:
        call = Call.UTILIZATION
        u = self._call(call, self._nv.nvmlDeviceGetUtilizationRates, self._h(call, dev))
        return Utilization(float(u.gpu), float(u.memory))

    def encoder_utilization(self, dev: int) -> float:
        call = Call.ENCODER_UTILIZATION
        # returns [utilization percent, sampling period in microseconds]
        return float(
            self._call(call, self._nv.nvmlDeviceGetEncoderUtilization, self._h(call, dev))[0]
        )

    def decoder_utilization(self, dev: int) -> float:
        call = Call.DECODER_UTILIZATION
        return float(
            self._call(call, self._nv.nvmlDeviceGetDecoderUtilization, self._h(call, dev))[0]
        )

    def memory(self, dev: int) -> MemoryInfo:
        call = Call.MEMORY
        m = self._call(call, self._nv.nvmlDeviceGetMemoryInfo, self._h(call, dev))
        return MemoryInfo(int(m.total), int(m.free), int(m.used))

    def temperature(self, dev: int) -> float:
        call = Call.TEMPERATURE
        nv = self._nv
        return float(self._call(call, nv.nvmlDeviceGetTemperature, self._h(call, dev), 0))

    def clock(self, dev: int, clock: Clock) -> float:
        call = Call.CLOCK
        h = self._h(call, dev)
        return float(self._call(call, self._nv.nvmlDeviceGetClockInfo, h, int(clock)))

    def power_usage(self, dev: int) -> float:
        call = Call.POWER_USAGE
        return float(self._call(call, self._nv.nvmlDeviceGetPowerUsage, self._h(call, dev)))

    def power_limit(self, dev: int) -> float:
        call = Call.POWER_LIMIT
        fn = self._nv.nvmlDeviceGetEnforcedPowerLimit
        return float(self._call(call, fn, self._h(call, dev)))

    def throttle_reasons(self, dev: int) -> int:
        call = Call.THROTTLE_REASONS
        h = self._h(call, dev)
        if not self._old_throttle_api:
            try:
                fn = self._nv.nvmlDeviceGetCurrentClocksEventReasons
                return int(self._call(call, fn, h))
            except AttributeError:
                self._old_throttle_api = True  # nvidia-ml-py older than the rename
            except NvmlError as e:
                if e.code != ErrorCode.FUNCTION_NOT_FOUND:
                    raise
                self._old_throttle_api = True  # a driver older than the rename (R535)
        fn = self._nv.nvmlDeviceGetCurrentClocksThrottleReasons
        return int(self._call(call, fn, h))

    def pcie_throughput(self, dev: int, counter: PcieCounter) -> float:
        call = Call.PCIE_THROUGHPUT
        h = self._h(call, dev)
        return float(self._call(call, self._nv.nvmlDeviceGetPcieThroughput, h, int(counter)))

    def processes(self, dev: int) -> tuple[ProcessMemory, ...]:
        call = Call.PROCESSES
        procs = self._call(call, self._nv.nvmlDeviceGetComputeRunningProcesses, self._h(call, dev))
        # usedGpuMemory is None where the driver cannot tell (e.g. without privileges).
        return tuple(ProcessMemory(int(p.pid), int(p.usedGpuMemory or 0)) for p in procs)

    def mig_instances(self, dev: int) -> tuple[MigInstance, ...]:
        call = Call.MIG_INSTANCES
        nv = self._nv
        h = self._h(call, dev)
        current, _pending = self._call(call, nv.nvmlDeviceGetMigMode, h)
        if not current:
            return ()
        out = []
        for i in range(self._call(call, nv.nvmlDeviceGetMaxMigDeviceCount, h)):
            try:
                mh = self._call(call, nv.nvmlDeviceGetMigDeviceHandleByIndex, h, i)
            except NvmlError as e:
                if e.code == ErrorCode.NOT_FOUND:
                    continue  # an empty MIG slot
                raise
            gi = int(self._call(call, nv.nvmlDeviceGetGpuInstanceId, mh))
            # A MIG device is named "<GPU name> MIG <profile>", e.g. "... MIG 1g.10gb".
            name = _text(self._call(call, nv.nvmlDeviceGetName, mh))
            out.append(MigInstance(gi, name.rpartition("MIG ")[2] or name))
        return tuple(out)

    def xid_events(self, limit: int) -> tuple[XidEvent, ...]:
        if self._events is None:
            return ()
        nv = self._nv
        out = []
        for _ in range(limit):
            try:
                data = self._call(Call.XID_EVENTS, nv.nvmlEventSetWait_v2, self._events, 0)
            except NvmlError as e:
                if e.code == ErrorCode.TIMEOUT:
                    break  # drained: no event pending
                raise
            dev = self._dev_of(data.device)
            if dev is not None and data.eventType == _XID_EVENT:
                out.append(XidEvent(dev, int(data.eventData)))
        return tuple(out)

    def _dev_of(self, handle: Any) -> int | None:
        """The dev of an event's handle. Handles are ctypes pointers: compare their addresses."""
        value = getattr(handle, "value", handle)
        for i, h in enumerate(self._handles):
            if h is handle or getattr(h, "value", h) == value:
                return i
        return None
