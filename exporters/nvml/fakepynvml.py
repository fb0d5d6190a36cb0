"""A counting stand-in for the ``pynvml`` module, backed by a :class:`SimBackend`.

It exposes pynvml's public surface (its constants, structures and error
classes are the real ones) with every ``nvml*`` function replaced by one that
counts the call and answers from the simulated GPUs; functions the simulation
has no answer for raise ``NVMLError_NotSupported``, as NVML does on a GPU
without the feature. Faults injected into the SimBackend surface as the
matching ``pynvml.NVMLError``.

Two uses: the real backend's tests run :class:`exporters.nvml.real.NvmlBackend`
against it and assert the calls it makes, and the benchmark runs this exporter
and nvitop's exporter on the same fake to count NVML calls side by side.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from types import ModuleType, SimpleNamespace
from typing import Any

import pynvml as _real

from exporters.nvml.errors import NvmlError
from exporters.nvml.sim import SimBackend
from exporters.nvml.values import Clock, Field, PcieCounter

# pynvml helpers that are not NVML calls: kept as they are, never counted.
_HELPERS = frozenset(
    {"nvmlExceptionClass", "nvmlStructToFriendlyObject", "nvmlFriendlyObjectToStruct"}
)


class _Handle:
    """An opaque device handle, like the ctypes pointer pynvml returns."""

    def __init__(self, dev: int, mig: int | None = None) -> None:
        self.dev = dev
        self.mig = mig
        self.value = dev * 1000 + (0 if mig is None else mig + 1)


class FakePynvml(ModuleType):
    """The module object; ``calls`` counts every NVML function called, by name, and
    ``log`` keeps each call's name and arguments in order."""

    calls: collections.Counter[str]
    log: list[tuple[str, tuple[Any, ...]]]
    sim: SimBackend


def fake_pynvml(sim: SimBackend) -> FakePynvml:
    mod = FakePynvml("pynvml")
    for name, value in vars(_real).items():
        if not (callable(value) and name.startswith(("nvml", "_nvml"))) or name in _HELPERS:
            setattr(mod, name, value)
    mod.__dict__["__version__"] = getattr(_real, "__version__", "fake")
    mod.calls = collections.Counter()
    mod.log = []
    mod.sim = sim
    impl = _implementations(sim)

    def make(name: str) -> Callable[..., Any]:
        body = impl.get(name)

        def call(*args: Any, **kwargs: Any) -> Any:
            mod.calls[name] += 1
            mod.log.append((name, args))
            if body is None:
                raise _real.NVMLError(_real.NVML_ERROR_NOT_SUPPORTED)
            try:
                return body(*args, **kwargs)
            except NvmlError as e:
                raise _real.NVMLError(e.code) from None

        call.__name__ = call.__qualname__ = name
        return call

    for name, value in vars(_real).items():
        if callable(value) and name.startswith("nvml") and name not in _HELPERS:
            setattr(mod, name, make(name))
    return mod


def _implementations(sim: SimBackend) -> dict[str, Callable[..., Any]]:
    handles: dict[int, _Handle] = {}

    def handle(i: int) -> _Handle:
        if i not in handles:
            if not 0 <= i < len(sim.gpus):
                raise _real.NVMLError(_real.NVML_ERROR_INVALID_ARGUMENT)
            handles[i] = _Handle(i)
        return handles[i]

    def ident(h: _Handle) -> Any:
        return sim.gpus[h.dev]

    def mig_of(h: _Handle) -> Any:
        return sim.mig_instances(h.dev)[h.mig or 0]

    def init(*_: Any) -> None:
        sim.init()

    def name(h: _Handle) -> str:
        if h.mig is not None:
            return f"{ident(h).name} MIG {mig_of(h).profile}"
        return str(ident(h).name)

    def field_values(h: _Handle, ids: list[Any]) -> Any:
        reqs = [(f, 0) if isinstance(f, int) else (int(f[0]), int(f[1])) for f in ids]
        values = sim.field_values(h.dev, reqs)
        arr = (_real.c_nvmlFieldValue_t * len(reqs))()
        now_us = time.time_ns() // 1000
        for slot, (fid, scope), v in zip(arr, reqs, values, strict=True):
            slot.fieldId, slot.scopeId = fid, scope
            if isinstance(v, NvmlError):
                slot.nvmlReturn = v.code
            else:
                # Counters and most readings are integers in NVML: typed as such, because
                # callers (nvitop among them) check the type before using a value.
                slot.nvmlReturn = 0
                slot.timestamp = now_us
                if float(v).is_integer() and v >= 0:
                    slot.valueType = _real.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                    slot.value.ullVal = int(v)
                else:
                    slot.valueType = _real.NVML_VALUE_TYPE_DOUBLE
                    slot.value.dVal = v
        return arr

    def power_mw(h: _Handle, fid: int) -> int:
        v = sim.field_values(h.dev, [(fid, 0)])[0]
        if isinstance(v, NvmlError):
            raise v
        return int(v)

    def clock_info(h: _Handle, kind: int) -> int:
        if kind == _real.NVML_CLOCK_MEM:
            return int(sim.clock(h.dev, Clock.MEM))
        return int(sim.clock(h.dev, Clock.SM))  # graphics, SM and video share the SM clock here

    def processes(h: _Handle) -> list[Any]:
        return [
            SimpleNamespace(
                pid=p.pid,
                usedGpuMemory=p.used_bytes,
                gpuInstanceId=0xFFFFFFFF,
                computeInstanceId=0xFFFFFFFF,
            )
            for p in sim.processes(h.dev)
        ]

    def mig_mode(h: _Handle) -> list[int]:
        on = 1 if sim.mig_instances(h.dev) else 0
        return [on, on]

    def register_events(h: _Handle, kinds: int, event_set: Any) -> None:
        event_set.devices.add(h.dev)

    def event_wait(event_set: Any, timeout_ms: int) -> Any:
        got = sim.xid_events(1)
        if not got:
            raise _real.NVMLError(_real.NVML_ERROR_TIMEOUT)
        return SimpleNamespace(
            device=handle(got[0].dev),
            eventType=_real.nvmlEventTypeXidCriticalError,
            eventData=got[0].xid,
            gpuInstanceId=0xFFFFFFFF,
            computeInstanceId=0xFFFFFFFF,
        )

    def event_set_create() -> Any:
        return SimpleNamespace(devices=set())

    def memory(h: _Handle, version: Any = None) -> Any:
        m = sim.memory(h.dev)
        return SimpleNamespace(
            total=m.total_bytes, free=m.free_bytes, used=m.used_bytes, reserved=0
        )

    def pci(h: _Handle) -> Any:
        bus = ident(h).pci_bus_id
        return SimpleNamespace(busId=bus, busIdLegacy=bus[4:], bus=0, device=0, domain=0)

    return {
        "nvmlInit": init,
        "nvmlInitWithFlags": init,
        "nvmlShutdown": lambda: sim.shutdown(),
        "nvmlSystemGetDriverVersion": lambda: sim.driver_version(),
        "nvmlDeviceGetCount": lambda: len(sim.devices()),
        "nvmlDeviceGetHandleByIndex": handle,
        "nvmlDeviceGetUUID": lambda h: ident(h).uuid,
        "nvmlDeviceGetName": name,
        "nvmlDeviceGetPciInfo": pci,
        "nvmlDeviceGetPciInfo_v3": pci,
        "nvmlDeviceGetMemoryInfo": memory,
        "nvmlDeviceGetFieldValues": field_values,
        "nvmlDeviceGetUtilizationRates": lambda h: SimpleNamespace(
            gpu=int(sim.utilization(h.dev).gpu_percent),
            memory=int(sim.utilization(h.dev).memory_percent),
        ),
        "nvmlDeviceGetEncoderUtilization": lambda h: [int(sim.encoder_utilization(h.dev)), 167000],
        "nvmlDeviceGetDecoderUtilization": lambda h: [int(sim.decoder_utilization(h.dev)), 167000],
        "nvmlDeviceGetTemperature": lambda h, sensor: int(sim.temperature(h.dev)),
        "nvmlDeviceGetClockInfo": clock_info,
        "nvmlDeviceGetCurrentClocksEventReasons": lambda h: sim.throttle_reasons(h.dev),
        "nvmlDeviceGetCurrentClocksThrottleReasons": lambda h: sim.throttle_reasons(h.dev),
        "nvmlDeviceGetPowerUsage": lambda h: int(sim.power_usage(h.dev)),
        "nvmlDeviceGetPowerManagementLimit": lambda h: int(sim.power_limit(h.dev)),
        "nvmlDeviceGetEnforcedPowerLimit": lambda h: int(sim.power_limit(h.dev)),
        "nvmlDeviceGetTotalEnergyConsumption": lambda h: power_mw(
            h, Field.TOTAL_ENERGY_CONSUMPTION
        ),
        "nvmlDeviceGetPcieThroughput": lambda h, c: int(sim.pcie_throughput(h.dev, PcieCounter(c))),
        "nvmlDeviceGetComputeRunningProcesses": processes,
        "nvmlDeviceGetGraphicsRunningProcesses": lambda h: [],
        "nvmlDeviceGetMigMode": mig_mode,
        "nvmlDeviceGetMaxMigDeviceCount": lambda h: len(sim.mig_instances(h.dev)),
        "nvmlDeviceGetMigDeviceHandleByIndex": lambda h, i: _Handle(h.dev, i),
        "nvmlDeviceGetGpuInstanceId": lambda h: mig_of(h).gpu_instance_id,
        "nvmlEventSetCreate": event_set_create,
        "nvmlDeviceRegisterEvents": register_events,
        "nvmlEventSetWait_v2": event_wait,
        "nvmlEventSetWait": event_wait,
        "nvmlEventSetFree": lambda s: None,
    }
