"""Every metric family of the catalog, checked against the simulated backend with exact values."""

from __future__ import annotations

from pathlib import Path

import pytest
from gpu_testlib import FakeClock, Series, scrape, value_of
from prometheus_client import CollectorRegistry

from deploy.stack import Stack
from exporters.catalog import Metric, MetricKind
from exporters.catalog import gpu as cat
from exporters.gpu.attribution import Attributor
from exporters.gpu.errors import ConfigError
from exporters.gpu.exporter import GpuExporter
from exporters.gpu.fields import THROTTLE_REASONS
from exporters.nvml.sim import DRIVER_VERSION, SimBackend

GIB = 1024**3
POD_UID = "0b5a6b8e-8d5c-4f0e-9c8a-1234567890ab"
CONTAINER = "4f1c" + "0" * 60


def scripted(stack: Stack, clock: FakeClock) -> tuple[SimBackend, str]:
    """GPU 0 of the stack with every value set, and clock time passing for the counters."""
    sim = SimBackend.from_stack(stack, timer=clock)
    u = sim.gpus[0].uuid
    sim.set(
        u,
        utilization=0.5,
        memory_copy_utilization=0.25,
        encoder_utilization=0.1,
        decoder_utilization=0.2,
        memory_used_bytes=10 * GIB,
        temperature_celsius=61,
        memory_temperature_celsius=70,
        power_watts=300,
        power_limit_watts=650,
        sm_clock_hz=1.5e9,
        memory_clock_hz=2.6e9,
        throttle_reasons=0x004 | 0x040,
        pcie_tx_bytes_per_second=5_000_000,
        pcie_rx_bytes_per_second=2_000_000,
        nvlink_tx_bytes_per_second=1024 * 1000,
        nvlink_rx_bytes_per_second=1024 * 500,
    )
    clock.advance(10)
    sim.add_errors(
        u,
        ecc_corrected=3,
        ecc_uncorrected=1,
        remapped_correctable=2,
        remapped_uncorrectable=1,
        pcie_replays=4,
    )
    sim.xid(u, 79)
    sim.xid(u, 79)
    sim.xid(u, 13)
    sim.set_mig(u, [(1, "3g.40gb"), (2, "4g.40gb")])
    sim.set_processes(u, [(4242, GIB), (4343, 2 * GIB)])
    return sim, u


def collected(stack: Stack, tmp_path: Path, clock: FakeClock) -> tuple[Series, str]:
    sim, u = scripted(stack, clock)
    proc = tmp_path / "proc"
    (proc / "4242").mkdir(parents=True)
    (proc / "4242" / "cgroup").write_text(
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod"
        f"{POD_UID.replace('-', '_')}.slice/cri-containerd-{CONTAINER}.scope\n"
    )
    registry = CollectorRegistry()
    exp = GpuExporter(
        sim,
        registry,
        clock=lambda: 5000.0,
        extra_labels={"cluster": "prod-eu"},
        job_resolver={4242: "job-17"}.get,
        attributor=Attributor(proc_root=proc),
    )
    assert exp.collect_once()
    return scrape(registry), u


EXPECTED: dict[Metric, tuple[dict[str, str], float]] = {
    cat.GPU_UP: ({}, 1.0),
    cat.GPU_UTILIZATION: ({}, 0.5),
    cat.GPU_MEMORY_COPY_UTILIZATION: ({}, 0.25),
    cat.GPU_ENCODER_UTILIZATION: ({}, 0.1),
    cat.GPU_DECODER_UTILIZATION: ({}, 0.2),
    cat.GPU_MEMORY_USED: ({}, 10 * GIB),
    cat.GPU_MEMORY_FREE: ({}, 85899345920 - 10 * GIB),
    cat.GPU_MEMORY_TOTAL: ({}, 85899345920),
    cat.GPU_TEMPERATURE: ({}, 61.0),
    cat.GPU_MEMORY_TEMPERATURE: ({}, 70.0),
    cat.GPU_POWER: ({}, 300.0),
    cat.GPU_POWER_LIMIT: ({}, 650.0),
    cat.GPU_ENERGY: ({}, 3000.0),
    cat.GPU_SM_CLOCK: ({}, 1.5e9),
    cat.GPU_MEMORY_CLOCK: ({}, 2.6e9),
    cat.GPU_THROTTLE: ({"reason": "hw_thermal_slowdown"}, 1.0),
    cat.GPU_PCIE_TX: ({}, 5_000_000),
    cat.GPU_PCIE_RX: ({}, 2_000_000),
    cat.GPU_PCIE_REPLAY: ({}, 4.0),
    cat.GPU_NVLINK_BANDWIDTH: ({"direction": "tx"}, 1024 * 1000 * 10),
    cat.GPU_ECC_ERRORS: ({"type": "uncorrected", "counter": "aggregate"}, 1.0),
    cat.GPU_REMAPPED_ROWS: ({"cause": "correctable"}, 2.0),
    cat.GPU_XID_ERRORS: ({"xid": "79"}, 2.0),
    cat.GPU_XID_LAST_SEEN: ({"xid": "13"}, 5000.0),
    cat.GPU_MIG_INFO: ({"gpu_instance_id": "2", "profile": "4g.40gb"}, 1.0),
    cat.GPU_INFO: (
        {
            "model_name": "NVIDIA H100 80GB HBM3",
            "driver_version": DRIVER_VERSION,
            "pci_bus_id": "00000000:18:00.0",
        },
        1.0,
    ),
    cat.GPU_PROCESS_MEMORY: (
        {"pid": "4242", "pod": POD_UID, "container": CONTAINER[:12], "job": "job-17"},
        GIB,
    ),
}


def sample_name(m: Metric) -> str:
    return m.count if m.kind is MetricKind.HISTOGRAM else m.series


@pytest.mark.parametrize("metric", cat.GPU_METRICS, ids=lambda m: m.name)
def test_every_family_has_data(
    metric: Metric, stack: Stack, tmp_path: Path, clock: FakeClock
) -> None:
    series, u = collected(stack, tmp_path, clock)
    name = sample_name(metric)
    assert series.get(name), f"{name} missing"
    for labels, _ in series[name]:
        assert labels.get("cluster") == "prod-eu"  # extra static labels on every series
        wanted = set(metric.labels) | {"cluster"} | ({"le"} if name.endswith("_bucket") else set())
        assert set(labels) == wanted
    if metric in EXPECTED:
        labels, value = EXPECTED[metric]
        got = value_of(series, name, uuid=u, node="gpu-node-1", gpu="0", **labels)
        assert got == pytest.approx(value), f"{name}{labels}"


def test_health_values(stack: Stack, tmp_path: Path, clock: FakeClock) -> None:
    series, _ = collected(stack, tmp_path, clock)
    assert value_of(series, cat.EXPORTER_COLLECT_SUCCESS.series) == 1.0
    assert value_of(series, cat.EXPORTER_LAST_COLLECT.series) == 5000.0
    assert value_of(series, cat.EXPORTER_COLLECT_DURATION.count, tier="fast") == 1.0
    assert value_of(series, cat.EXPORTER_COLLECT_DURATION.count, tier="slow") == 1.0
    ups = series[cat.GPU_UP.series]
    assert len(ups) == len(stack.gpus())
    assert all(v == 1.0 for _, v in ups)


def test_throttle_reasons_are_a_bounded_decoded_set(
    stack: Stack, tmp_path: Path, clock: FakeClock
) -> None:
    series, u = collected(stack, tmp_path, clock)
    mine = {lab["reason"]: v for lab, v in series[cat.GPU_THROTTLE.series] if lab["uuid"] == u}
    assert set(mine) == {r for _, r in THROTTLE_REASONS}
    assert {r for r, v in mine.items() if v == 1.0} == {"sw_power_cap", "hw_thermal_slowdown"}


def test_ecc_has_every_type_and_counter(stack: Stack, tmp_path: Path, clock: FakeClock) -> None:
    series, u = collected(stack, tmp_path, clock)
    got = {
        (lab["type"], lab["counter"]): v
        for lab, v in series[cat.GPU_ECC_ERRORS.series]
        if lab["uuid"] == u
    }
    assert got == {
        ("corrected", "volatile"): 3,
        ("uncorrected", "volatile"): 1,
        ("corrected", "aggregate"): 3,
        ("uncorrected", "aggregate"): 1,
    }


def test_unattributed_process_keeps_its_pid_and_job_labels_empty(
    stack: Stack, tmp_path: Path, clock: FakeClock
) -> None:
    series, u = collected(stack, tmp_path, clock)
    labels = {"pid": "4343", "pod": "", "namespace": "", "container": "", "job": ""}
    assert value_of(series, cat.GPU_PROCESS_MEMORY.series, uuid=u, **labels) == 2 * GIB


def test_xid_counter_never_forgets_repeats(stack: Stack, clock: FakeClock) -> None:
    sim = SimBackend.from_stack(stack)
    u = sim.gpus[3].uuid
    registry = CollectorRegistry()
    exp = GpuExporter(sim, registry, clock=clock)
    name = cat.GPU_XID_ERRORS.series
    sim.xid(u, 79)
    sim.xid(u, 79)
    exp.collect_fast()
    assert value_of(scrape(registry), name, uuid=u, xid="79") == 2
    exp.collect_fast()  # no new event: the count stays, it does not drop to a "last value"
    assert value_of(scrape(registry), name, uuid=u, xid="79") == 2
    clock.advance(30)
    sim.xid(u, 79)
    exp.collect_fast()
    series = scrape(registry)
    assert value_of(series, name, uuid=u, xid="79") == 3
    assert value_of(series, cat.GPU_XID_LAST_SEEN.series, uuid=u, xid="79") == clock.t


def test_dead_processes_lose_their_series(stack: Stack) -> None:
    sim = SimBackend.from_stack(stack)
    u = sim.gpus[0].uuid
    registry = CollectorRegistry()
    exp = GpuExporter(sim, registry)
    sim.set_processes(u, [(10, 1), (11, 2)])
    exp.collect_once()
    assert len(scrape(registry)[cat.GPU_PROCESS_MEMORY.series]) == 2
    sim.set_processes(u, [(11, 2)])
    exp.collect_slow()
    pids = [lab["pid"] for lab, _ in scrape(registry)[cat.GPU_PROCESS_MEMORY.series]]
    assert pids == ["11"]


def test_extra_labels_cannot_shadow_the_exporters_own(stack: Stack) -> None:
    with pytest.raises(ConfigError, match="uuid"):
        GpuExporter(SimBackend.from_stack(stack), CollectorRegistry(), extra_labels={"uuid": "x"})


def test_scrapes_never_call_nvml(stack: Stack) -> None:
    sim = SimBackend.from_stack(stack)
    registry = CollectorRegistry()
    exp = GpuExporter(sim, registry)
    exp.collect_once()
    before = sum(sim.calls.values())
    for _ in range(5):
        scrape(registry)
    assert sum(sim.calls.values()) == before


def test_fast_tier_makes_six_calls_per_gpu_and_drains_xids_once(stack: Stack) -> None:
    sim = SimBackend.from_stack(stack)
    exp = GpuExporter(sim, CollectorRegistry())
    exp.collect_once()
    sim.calls.clear()
    exp.collect_fast()
    n = len(stack.gpus())
    assert sim.calls == {
        "field_values": n,
        "utilization": n,
        "memory": n,
        "temperature": n,
        "clock": n,
        "throttle_reasons": n,
        "xid_events": 1,
    }
