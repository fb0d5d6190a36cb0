"""The simulated backend: scripting, unit conversion at the NVML boundary, fault injection."""

from __future__ import annotations

import pytest
from gpu_testlib import FakeClock

from deploy.stack import Stack
from exporters.nvml.errors import DriverError, ErrorCode, GpuLostError, NotSupportedError, NvmlError
from exporters.nvml.sim import NVLINK_LINKS, SimBackend
from exporters.nvml.values import ALL_LINKS, Clock, Field, PcieCounter


def test_one_gpu_per_stack_slot(stack: Stack) -> None:
    sim = SimBackend.from_stack(stack)
    sim.init()
    gpus = sim.devices()
    assert [(g.node, g.index, g.uuid, g.name, g.memory_total_bytes) for g in gpus] == [
        (s.node, s.index, s.uuid, s.model, s.memory_bytes) for s in stack.gpus()
    ]
    assert [g.dev for g in gpus] == list(range(len(gpus)))


def test_any_number_of_nodes_and_gpus() -> None:
    sim = SimBackend.cluster(3, 5)
    sim.init()
    assert len(sim.devices()) == 15
    assert len({g.uuid for g in sim.devices()}) == 15
    assert {g.node for g in sim.devices()} == {"node-0", "node-1", "node-2"}


def test_readings_come_back_in_nvml_units(clock: FakeClock) -> None:
    sim = SimBackend.cluster(1, 2, timer=clock)
    u = sim.gpus[1].uuid
    sim.init()
    sim.set(
        u,
        utilization=0.42,
        memory_copy_utilization=0.1,
        memory_used_bytes=3 * 1024**3,
        temperature_celsius=71.4,
        power_watts=350.0,
        sm_clock_hz=1.41e9,
        pcie_rx_bytes_per_second=4_000_000,
        nvlink_tx_bytes_per_second=2048.0,
    )
    clock.advance(10)
    assert sim.utilization(1).gpu_percent == 42
    assert sim.utilization(1).memory_percent == 10
    assert sim.memory(1).used_bytes == 3 * 1024**3
    assert sim.memory(1).free_bytes == sim.gpus[1].memory_total_bytes - 3 * 1024**3
    assert sim.temperature(1) == 71
    assert sim.clock(1, Clock.SM) == 1410
    assert sim.pcie_throughput(1, PcieCounter.RX) == 4000  # KB/s
    power, energy, nvlink = sim.field_values(
        1,
        [
            (Field.POWER_INSTANT, 0),
            (Field.TOTAL_ENERGY_CONSUMPTION, 0),
            (Field.NVLINK_THROUGHPUT_DATA_TX, ALL_LINKS),
        ],
    )
    assert power == 350_000  # mW
    assert energy == 3_500_000  # mJ: 350 W for 10 s
    assert nvlink == 20  # KiB: 2 KiB/s for 10 s
    # GPU 0 was left alone.
    assert sim.utilization(0).gpu_percent == 0


def test_memory_used_is_clipped_to_the_framebuffer() -> None:
    sim = SimBackend.cluster(1, 1)
    sim.init()
    sim.set(sim.gpus[0].uuid, memory_used_bytes=10**15)
    assert sim.memory(0).free_bytes == 0


def test_unknown_field_reads_not_supported() -> None:
    sim = SimBackend.cluster(1, 1)
    sim.init()
    (v,) = sim.field_values(0, [(999, 0)])
    assert isinstance(v, NotSupportedError)


def test_calls_before_init_fail_uninitialised() -> None:
    sim = SimBackend.cluster(1, 1)
    with pytest.raises(DriverError) as e:
        sim.utilization(0)
    assert e.value.code == ErrorCode.UNINITIALIZED


@pytest.mark.parametrize(
    ("error", "cls"),
    [
        ("GPU_IS_LOST", GpuLostError),
        ("NOT_SUPPORTED", NotSupportedError),
        ("DRIVER_NOT_LOADED", DriverError),
        ("UNKNOWN", NvmlError),
        ("TIMEOUT", NvmlError),
    ],
)
def test_injected_error_on_one_call_of_one_gpu(error: str, cls: type[NvmlError]) -> None:
    sim = SimBackend.cluster(1, 2)
    sim.init()
    sim.inject(error, call="temperature", uuid=sim.gpus[0].uuid)
    with pytest.raises(cls) as e:
        sim.temperature(0)
    assert e.value.name == error
    assert e.value.call == "temperature"
    sim.temperature(1)  # the other GPU
    sim.utilization(0)  # another call
    sim.clear_faults()
    sim.temperature(0)


def test_fault_on_every_call_of_a_gpu_and_per_gpu_clearing() -> None:
    sim = SimBackend.cluster(1, 2)
    sim.init()
    a, b = sim.gpus[0].uuid, sim.gpus[1].uuid
    sim.inject("GPU_IS_LOST", uuid=a)
    sim.inject("GPU_IS_LOST", uuid=b)
    for call in (sim.memory, sim.temperature, sim.processes, sim.mig_instances):
        with pytest.raises(GpuLostError):
            call(0)
    sim.clear_faults(uuid=a)
    sim.memory(0)
    with pytest.raises(GpuLostError):
        sim.memory(1)


def test_init_failure_and_per_field_fault() -> None:
    sim = SimBackend.cluster(1, 1)
    sim.inject("DRIVER_NOT_LOADED", call="init")
    with pytest.raises(DriverError):
        sim.init()
    sim.clear_faults()
    sim.init()
    sim.inject("NOT_SUPPORTED", call=f"field:{Field.MEMORY_TEMP}")
    temp, power = sim.field_values(0, [(Field.MEMORY_TEMP, 0), (Field.POWER_INSTANT, 0)])
    assert isinstance(temp, NotSupportedError)
    assert power == 70_000


def test_injection_rejects_typos() -> None:
    sim = SimBackend.cluster(1, 1)
    with pytest.raises(ValueError, match="unknown NVML error"):
        sim.inject("GPU_LOST")
    with pytest.raises(ValueError):
        sim.inject("UNKNOWN", call="temprature")
    with pytest.raises(KeyError):
        sim.inject("UNKNOWN", uuid="GPU-nope")


def test_xid_events_are_delivered_once_in_order() -> None:
    sim = SimBackend.cluster(1, 2)
    sim.init()
    sim.xid(sim.gpus[1].uuid, 79)
    sim.xid(sim.gpus[0].uuid, 13)
    sim.xid(sim.gpus[0].uuid, 48)
    first = sim.xid_events(2)
    assert [(e.dev, e.xid) for e in first] == [(1, 79), (0, 13)]
    assert [(e.dev, e.xid) for e in sim.xid_events(10)] == [(0, 48)]
    assert sim.xid_events(10) == ()


def test_calls_are_counted() -> None:
    sim = SimBackend.cluster(1, 2)
    sim.init()
    sim.temperature(0)
    sim.temperature(1)
    assert sim.calls["temperature"] == 2
    assert sim.calls["init"] == 1


def test_nvlink_link_count_and_per_link_throughput(clock: FakeClock) -> None:
    """What peers such as nvitop read: the link count, then each link's counter."""
    sim = SimBackend.cluster(1, 1, timer=clock)
    sim.init()
    sim.set(sim.gpus[0].uuid, nvlink_rx_bytes_per_second=NVLINK_LINKS * 1024.0)
    clock.advance(10)
    count, link0, total, bad = sim.field_values(
        0,
        [
            (91, 0),  # NVML_FI_DEV_NVLINK_LINK_COUNT
            (Field.NVLINK_THROUGHPUT_DATA_RX, 0),
            (Field.NVLINK_THROUGHPUT_DATA_RX, ALL_LINKS),
            (Field.NVLINK_THROUGHPUT_DATA_RX, NVLINK_LINKS),
        ],
    )
    assert count == NVLINK_LINKS
    assert link0 == 10  # KiB
    assert total == 10 * NVLINK_LINKS
    assert isinstance(bad, NvmlError) and bad.code == ErrorCode.INVALID_ARGUMENT
