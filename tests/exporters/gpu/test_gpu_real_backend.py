"""The real backend against a fake ``pynvml`` at the binding boundary, asserting its calls."""

from __future__ import annotations

import pynvml
import pytest
from gpu_testlib import scrape, value_of
from prometheus_client import CollectorRegistry

from exporters.catalog import gpu as cat
from exporters.gpu.exporter import GpuExporter
from exporters.nvml.errors import DriverError, ErrorCode, GpuLostError, NotSupportedError
from exporters.nvml.fakepynvml import FakePynvml, fake_pynvml
from exporters.nvml.real import NvmlBackend
from exporters.nvml.sim import SimBackend
from exporters.nvml.values import ALL_LINKS, Clock, Field, PcieCounter

GIB = 1024**3


def setup(gpus: int = 4) -> tuple[SimBackend, FakePynvml, NvmlBackend]:
    sim = SimBackend.cluster(1, gpus)
    fake = fake_pynvml(sim)
    return sim, fake, NvmlBackend("host-a", pynvml=fake)


def test_field_and_error_numbers_are_nvmls() -> None:
    for f in Field:
        assert getattr(pynvml, f"NVML_FI_DEV_{f.name}") == f.value
    for c in ErrorCode:
        assert getattr(pynvml, f"NVML_ERROR_{c.name}") == c.value
    assert pynvml.NVML_CLOCK_SM == Clock.SM
    assert pynvml.NVML_CLOCK_MEM == Clock.MEM
    assert pynvml.NVML_PCIE_UTIL_TX_BYTES == PcieCounter.TX
    assert pynvml.NVML_PCIE_UTIL_RX_BYTES == PcieCounter.RX


def test_init_enumerates_once_and_arms_xid_events() -> None:
    sim, fake, nv = setup(4)
    nv.init()
    assert fake.calls == {
        "nvmlInit": 1,
        "nvmlDeviceGetCount": 1,
        "nvmlDeviceGetHandleByIndex": 4,
        "nvmlDeviceGetUUID": 4,
        "nvmlDeviceGetName": 4,
        "nvmlDeviceGetPciInfo": 4,
        "nvmlDeviceGetMemoryInfo": 4,
        "nvmlEventSetCreate": 1,
        "nvmlDeviceRegisterEvents": 4,
    }
    registered = [args for name, args in fake.log if name == "nvmlDeviceRegisterEvents"]
    assert all(kind == pynvml.nvmlEventTypeXidCriticalError for _, kind, _ in registered)
    gpus = nv.devices()
    assert [(g.node, g.index, g.uuid) for g in gpus] == [
        ("host-a", i, s.uuid) for i, s in enumerate(sim.gpus)
    ]
    assert gpus[0].pci_bus_id == sim.gpus[0].pci_bus_id
    assert gpus[0].memory_total_bytes == sim.gpus[0].memory_total_bytes


def test_fast_cycle_is_one_field_value_call_plus_five_per_gpu() -> None:
    _, fake, nv = setup(4)
    exp = GpuExporter(nv, CollectorRegistry())
    exp.collect_once()
    fake.calls.clear()
    fake.log.clear()
    exp.collect_fast()
    assert fake.calls == {
        "nvmlDeviceGetFieldValues": 4,
        "nvmlDeviceGetUtilizationRates": 4,
        "nvmlDeviceGetMemoryInfo": 4,
        "nvmlDeviceGetTemperature": 4,
        "nvmlDeviceGetClockInfo": 4,
        "nvmlDeviceGetCurrentClocksEventReasons": 4,
        "nvmlEventSetWait_v2": 1,
    }
    _, (_, fields) = next(c for c in fake.log if c[0] == "nvmlDeviceGetFieldValues")
    assert (Field.NVLINK_THROUGHPUT_DATA_TX, ALL_LINKS) in fields
    assert (Field.TOTAL_ENERGY_CONSUMPTION, 0) in fields
    assert len(fields) == len(set(fields)) == 13
    clocks = [args[1] for name, args in fake.log if name == "nvmlDeviceGetClockInfo"]
    assert clocks == [pynvml.NVML_CLOCK_SM] * 4
    waits = [args[1] for name, args in fake.log if name == "nvmlEventSetWait_v2"]
    assert waits == [0]  # never blocks


def test_values_through_the_binding_match_the_simulation() -> None:
    sim, _, nv = setup(2)
    u = sim.gpus[1].uuid
    sim.set(u, utilization=0.37, memory_used_bytes=7 * GIB, power_watts=412.0, sm_clock_hz=1.755e9)
    sim.set_processes(u, [(77, GIB)])
    sim.set_mig(u, [(5, "2g.20gb")])
    sim.xid(u, 94)
    registry = CollectorRegistry()
    exp = GpuExporter(nv, registry)
    exp.collect_once()
    s = scrape(registry)
    assert value_of(s, cat.GPU_UTILIZATION.series, uuid=u) == pytest.approx(0.37)
    assert value_of(s, cat.GPU_MEMORY_USED.series, uuid=u) == 7 * GIB
    assert value_of(s, cat.GPU_POWER.series, uuid=u) == pytest.approx(412.0)
    assert value_of(s, cat.GPU_SM_CLOCK.series, uuid=u) == 1.755e9
    assert value_of(s, cat.GPU_PROCESS_MEMORY.series, uuid=u, pid="77") == GIB
    assert value_of(s, cat.GPU_MIG_INFO.series, uuid=u, gpu_instance_id="5", profile="2g.20gb")
    assert value_of(s, cat.GPU_XID_ERRORS.series, uuid=u, xid="94") == 1
    assert value_of(s, cat.GPU_INFO.series, uuid=u, node="host-a", gpu="1") == 1


def test_nvml_errors_become_the_packages_exceptions() -> None:
    sim, _, nv = setup(2)
    nv.init()
    sim.inject("GPU_IS_LOST", uuid=sim.gpus[0].uuid)
    with pytest.raises(GpuLostError):
        nv.utilization(0)
    nv.utilization(1)
    sim.inject("NOT_SUPPORTED", call=f"field:{Field.MEMORY_TEMP.value}")
    (temp,) = nv.field_values(1, [(Field.MEMORY_TEMP, 0)])
    assert isinstance(temp, NotSupportedError)
    sim.inject("DRIVER_NOT_LOADED", call="init")
    with pytest.raises(DriverError):
        nv.init()


def test_lost_gpu_through_the_binding_reads_down() -> None:
    sim, _, nv = setup(3)
    registry = CollectorRegistry()
    exp = GpuExporter(nv, registry)
    exp.collect_once()
    sim.inject("GPU_IS_LOST", uuid=sim.gpus[2].uuid)
    exp.collect_once()
    s = scrape(registry)
    assert value_of(s, cat.GPU_UP.series, uuid=sim.gpus[2].uuid) == 0
    assert value_of(s, cat.GPU_UP.series, uuid=sim.gpus[0].uuid) == 1


def test_a_gpu_lost_before_init_does_not_hide_the_others() -> None:
    sim, _, nv = setup(3)
    sim.inject("GPU_IS_LOST", uuid=sim.gpus[1].uuid)
    registry = CollectorRegistry()
    exp = GpuExporter(nv, registry)
    assert exp.collect_once()
    s = scrape(registry)
    up = {lab["uuid"]: v for lab, v in s[cat.GPU_UP.series]}
    assert up == {sim.gpus[0].uuid: 1.0, sim.gpus[2].uuid: 1.0}
    assert value_of(s, cat.GPU_INFO.series, uuid=sim.gpus[2].uuid, gpu="2") == 1


def test_without_a_driver_the_exporter_serves_health_only() -> None:
    """This machine has no NVIDIA driver: the real pynvml fails to load libnvidia-ml."""
    registry = CollectorRegistry()
    exp = GpuExporter(NvmlBackend("here"), registry)
    assert not exp.collect_once()
    s = scrape(registry)
    assert value_of(s, cat.EXPORTER_COLLECT_SUCCESS.series) == 0
    assert cat.GPU_UP.series not in s
    errors = {lab["error"]: v for lab, v in s[cat.EXPORTER_ERRORS.series] if v}
    assert errors in ({"LIBRARY_NOT_FOUND": 1.0}, {"DRIVER_NOT_LOADED": 1.0})


def test_throttle_reasons_fall_back_to_the_pre_r535_function() -> None:
    sim, fake, nv = setup(2)
    sim.set(sim.gpus[1].uuid, throttle_reasons=0x40)
    nv.init()

    def missing(_: object) -> int:
        fake.calls["nvmlDeviceGetCurrentClocksEventReasons"] += 1
        raise pynvml.NVMLError(pynvml.NVML_ERROR_FUNCTION_NOT_FOUND)

    fake.nvmlDeviceGetCurrentClocksEventReasons = missing  # type: ignore[attr-defined]
    assert nv.throttle_reasons(1) == 0x40
    assert nv.throttle_reasons(0) == 0
    # The new name is tried once; after that the old one is called directly.
    assert fake.calls["nvmlDeviceGetCurrentClocksEventReasons"] == 1
    assert fake.calls["nvmlDeviceGetCurrentClocksThrottleReasons"] == 2


def test_power_fallback_calls_through_the_binding() -> None:
    sim, fake, nv = setup(1)
    sim.set(sim.gpus[0].uuid, power_watts=250.5, power_limit_watts=700.0)
    sim.inject("NOT_SUPPORTED", call=f"field:{Field.POWER_INSTANT.value}")
    registry = CollectorRegistry()
    GpuExporter(nv, registry).collect_fast()
    assert value_of(scrape(registry), cat.GPU_POWER.series) == 250.5
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 1
    assert fake.calls["nvmlDeviceGetEnforcedPowerLimit"] == 0
