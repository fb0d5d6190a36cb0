"""Faults: a lost GPU, a missing driver, a failed init, unsupported values, random errors."""

from __future__ import annotations

import logging
import random

import pytest
from gpu_testlib import FakeClock, Series, samples, scrape, value_of
from prometheus_client import CollectorRegistry, generate_latest

from deploy.stack import Stack
from exporters.catalog import gpu as cat
from exporters.gpu.exporter import GpuExporter
from exporters.nvml.sim import SimBackend
from exporters.nvml.values import Call, Field

UP = cat.GPU_UP.series
SUCCESS = cat.EXPORTER_COLLECT_SUCCESS.series
# Per-GPU value families that must vanish (not go stale) while a GPU is down.
VALUE_FAMILIES = (cat.GPU_UTILIZATION.series, cat.GPU_POWER.series, cat.GPU_TEMPERATURE.series)


def make(
    stack: Stack, clock: FakeClock, **kw: object
) -> tuple[SimBackend, GpuExporter, CollectorRegistry]:
    sim = SimBackend.from_stack(stack)
    registry = CollectorRegistry()
    exp = GpuExporter(sim, registry, clock=clock, **kw)  # type: ignore[arg-type]
    return sim, exp, registry


def ups(series: Series) -> dict[str, float]:
    return {lab["uuid"]: v for lab, v in series.get(UP, [])}


def has_values(series: Series, uuid: str) -> bool:
    return any(lab["uuid"] == uuid for f in VALUE_FAMILIES for lab, _ in series.get(f, []))


def test_lost_gpu_reads_down_the_others_keep_reporting_and_it_recovers(
    stack: Stack, clock: FakeClock
) -> None:
    sim, exp, registry = make(stack, clock)
    lost = sim.gpus[5].uuid
    exp.collect_once()
    sim.inject("GPU_IS_LOST", uuid=lost)
    exp.collect_once()
    series = scrape(registry)
    assert value_of(series, SUCCESS) == 1.0
    state = ups(series)
    assert state.pop(lost) == 0.0
    assert set(state.values()) == {1.0}
    assert not has_values(series, lost)
    assert all(has_values(series, u) for u in state)
    assert value_of(series, cat.EXPORTER_ERRORS.series, error="GPU_IS_LOST") == 2  # fast + slow
    sim.clear_faults()
    exp.collect_fast()
    series = scrape(registry)
    assert ups(series)[lost] == 1.0
    assert has_values(series, lost)


def test_gpu_lost_on_a_single_call_still_takes_the_gpu_down(stack: Stack, clock: FakeClock) -> None:
    sim, exp, registry = make(stack, clock)
    u = sim.gpus[0].uuid
    sim.inject("GPU_IS_LOST", call="temperature", uuid=u)
    exp.collect_fast()
    series = scrape(registry)
    assert ups(series)[u] == 0.0
    assert not has_values(series, u)  # nothing half-read from before the failing call


def test_driver_failure_leaves_health_metrics_and_reinitialises(
    stack: Stack, clock: FakeClock
) -> None:
    sim, exp, registry = make(stack, clock)
    exp.collect_once()
    assert sim.calls["init"] == 1
    sim.inject("DRIVER_NOT_LOADED", call="utilization")
    assert not exp.collect_fast()
    series = scrape(registry)
    assert value_of(series, SUCCESS) == 0.0
    assert set(ups(series).values()) == {0.0}  # known GPUs read down; they do not vanish
    assert not any(has_values(series, u) for u in ups(series))
    assert series[cat.EXPORTER_LAST_COLLECT.series]  # still served, now ageing
    sim.clear_faults()
    assert exp.collect_fast()
    assert sim.calls["init"] == 2
    series = scrape(registry)
    assert value_of(series, SUCCESS) == 1.0
    assert set(ups(series).values()) == {1.0}


def test_init_failure_retries_with_exponential_backoff(stack: Stack, clock: FakeClock) -> None:
    sim, exp, registry = make(stack, clock, init_backoff=(1.0, 4.0))
    sim.inject("DRIVER_NOT_LOADED", call="init")
    attempts_at = []
    for _ in range(40):  # 10 s in 0.25 s steps
        before = sim.calls["init"]
        exp.collect_fast()
        if sim.calls["init"] > before:
            attempts_at.append(clock.t - 1000.0)
        clock.advance(0.25)
    # Retries after 1, 2, 4, then 4 (capped) seconds.
    assert attempts_at == [0.0, 1.0, 3.0, 7.0]
    series = scrape(registry)
    assert value_of(series, SUCCESS) == 0.0
    assert UP not in series  # never initialised: no GPU is known yet
    assert value_of(series, cat.EXPORTER_ERRORS.series, error="DRIVER_NOT_LOADED") == 4
    sim.clear_faults()
    clock.advance(4)
    assert exp.collect_fast()
    assert len(ups(scrape(registry))) == len(stack.gpus())


def test_unsupported_field_is_skipped_and_logged_once(
    stack: Stack, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    sim, exp, registry = make(stack, clock)
    u = sim.gpus[2].uuid
    sim.inject("NOT_SUPPORTED", call=f"field:{Field.MEMORY_TEMP.value}", uuid=u)
    sim.inject("NOT_SUPPORTED", call=Call.ENCODER_UTILIZATION.value, uuid=u)
    with caplog.at_level(logging.INFO, logger="exporters.gpu.exporter"):
        for _ in range(3):
            exp.collect_once()
    series = scrape(registry)
    mem_temp = cat.GPU_MEMORY_TEMPERATURE.series
    assert value_of(series, mem_temp, uuid=u) is None
    assert value_of(series, cat.GPU_ENCODER_UTILIZATION.series, uuid=u) is None
    assert value_of(series, mem_temp, uuid=sim.gpus[3].uuid) is not None
    assert value_of(series, cat.GPU_POWER.series, uuid=u) is not None
    assert ups(series)[u] == 1.0
    skipped = [r for r in caplog.records if "not supported" in r.getMessage()]
    assert len(skipped) == 2  # one per value, not one per cycle
    assert value_of(series, cat.EXPORTER_ERRORS.series, error="NOT_SUPPORTED") == 6


def test_timeout_on_one_value_drops_that_value_only(stack: Stack, clock: FakeClock) -> None:
    sim, exp, registry = make(stack, clock)
    u = sim.gpus[1].uuid
    sim.inject("TIMEOUT", call="memory", uuid=u)
    exp.collect_fast()
    series = scrape(registry)
    assert value_of(series, cat.GPU_MEMORY_USED.series, uuid=u) is None
    assert value_of(series, cat.GPU_UTILIZATION.series, uuid=u) is not None
    assert ups(series)[u] == 1.0


ERRORS = ("GPU_IS_LOST", "NOT_SUPPORTED", "UNKNOWN", "TIMEOUT", "DRIVER_NOT_LOADED")
CALLS = (*(c.value for c in Call), f"field:{Field.POWER_INSTANT.value}")


def test_a_thousand_collections_with_random_errors(clock: FakeClock) -> None:
    """Every scrape is served; a lost GPU reads 0; everything recovers when faults clear."""
    sim = SimBackend.cluster(2, 4)
    registry = CollectorRegistry()
    exp = GpuExporter(sim, registry, clock=clock, init_backoff=(0.0, 0.0))
    rng = random.Random(20260515)
    uuids = [g.uuid for g in sim.gpus]
    lost: set[str] = set()
    for i in range(1000):
        roll = rng.random()
        if roll < 0.15:
            sim.clear_faults()
            lost.clear()
        elif roll < 0.35:
            u = rng.choice(uuids)
            sim.inject("GPU_IS_LOST", uuid=u)
            lost.add(u)
        elif roll < 0.6:
            uuid = rng.choice([*uuids, None])
            sim.inject(rng.choice(ERRORS), call=rng.choice(CALLS), uuid=uuid)
        if rng.random() < 0.1:
            sim.xid(rng.choice(uuids), rng.choice((13, 31, 43, 48, 79)))
        if rng.random() < 0.1:
            sim.set_processes(rng.choice(uuids), [(rng.randrange(1, 10**6), rng.randrange(10**9))])
        exp.collect_fast()
        if i % 5 == 0:
            exp.collect_slow()
        clock.advance(1.0)
        assert generate_latest(registry)  # the scrape is served, whatever NVML did
        series = samples(registry)
        assert value_of(series, SUCCESS) in (0.0, 1.0)
        state = ups(series)
        for u in lost:
            assert state.get(u, 0.0) == 0.0
            assert not has_values(series, u)
        for u, up in state.items():
            if up == 0.0:
                assert not has_values(series, u)
    sim.clear_faults()
    exp.collect_once()
    series = scrape(registry)
    assert value_of(series, SUCCESS) == 1.0
    assert ups(series) == dict.fromkeys(uuids, 1.0)
    assert all(has_values(series, u) for u in uuids)


def test_power_falls_back_to_the_power_calls_on_drivers_without_the_fields(
    stack: Stack, clock: FakeClock
) -> None:
    sim, exp, registry = make(stack, clock)
    u = sim.gpus[0].uuid
    sim.set(u, power_watts=432.0, power_limit_watts=600.0)
    sim.inject("NOT_SUPPORTED", call=f"field:{Field.POWER_INSTANT.value}")
    sim.inject("NOT_SUPPORTED", call=f"field:{Field.POWER_CURRENT_LIMIT.value}")
    exp.collect_fast()
    series = scrape(registry)
    assert value_of(series, cat.GPU_POWER.series, uuid=u) == 432.0
    assert value_of(series, cat.GPU_POWER_LIMIT.series, uuid=u) == 600.0
    n = len(stack.gpus())
    assert (sim.calls["power_usage"], sim.calls["power_limit"]) == (n, n)
    # Where the fields work, the fallback calls are never made.
    sim.clear_faults()
    sim.calls.clear()
    exp.collect_fast()
    assert (sim.calls["power_usage"], sim.calls["power_limit"]) == (0, 0)


def test_a_failing_fallback_skips_power_only(stack: Stack, clock: FakeClock) -> None:
    sim, exp, registry = make(stack, clock)
    u = sim.gpus[0].uuid
    sim.inject("NOT_SUPPORTED", call=f"field:{Field.POWER_INSTANT.value}", uuid=u)
    sim.inject("NOT_SUPPORTED", call=Call.POWER_USAGE.value, uuid=u)
    exp.collect_fast()
    series = scrape(registry)
    assert value_of(series, cat.GPU_POWER.series, uuid=u) is None
    assert value_of(series, cat.GPU_ENERGY.series, uuid=u) is not None
    assert ups(series)[u] == 1.0


# ----------------------------------------------------------------------------- not NVML's errors

UNEXPECTED = {"error": "UNEXPECTED_EXCEPTION"}


def fail_on(sim: SimBackend, monkeypatch: pytest.MonkeyPatch, call: str, dev: int) -> None:
    """Make one backend call raise a plain exception (a bug, not an NVML error) for one GPU."""
    real = getattr(sim, call)

    def broken(d: int, *args: object) -> object:
        if d == dev:
            raise RuntimeError(f"bug in {call}")
        return real(d, *args)

    monkeypatch.setattr(sim, call, broken)


def test_an_exception_on_one_gpu_stays_on_that_gpu(
    stack: Stack,
    clock: FakeClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Issue 12: one GPU's non-NVML exception used to leave every GPU stale, success still 1."""
    sim, exp, registry = make(stack, clock)
    exp.collect_once()
    bad = sim.gpus[3]
    fail_on(sim, monkeypatch, "temperature", bad.dev)
    for g in sim.gpus:
        sim.set(g.uuid, utilization=0.61)
    with caplog.at_level(logging.ERROR, logger="exporters.gpu.exporter"):
        assert exp.collect_fast()  # NVML answered: the cycle ran, for every GPU
        exp.collect_fast()
    series = scrape(registry)
    util = cat.GPU_UTILIZATION.series
    assert all(value_of(series, util, uuid=g.uuid) == 0.61 for g in sim.gpus)  # fresh, all
    assert value_of(series, cat.GPU_TEMPERATURE.series, uuid=bad.uuid) is None  # that value only
    assert value_of(series, cat.GPU_TEMPERATURE.series, uuid=sim.gpus[4].uuid) is not None
    assert set(ups(series).values()) == {1.0}
    assert value_of(series, SUCCESS) == 0.0  # the cycle did not complete
    assert value_of(series, cat.EXPORTER_ERRORS.series, **UNEXPECTED) == 2
    assert value_of(series, cat.EXPORTER_LAST_COLLECT.series) == clock.t
    logged = [r for r in caplog.records if r.exc_info and "temperature" in r.getMessage()]
    assert len(logged) == 1  # with its traceback, once per place, not once per cycle
    monkeypatch.undo()
    exp.collect_fast()
    series = scrape(registry)
    assert value_of(series, SUCCESS) == 1.0
    assert value_of(series, cat.GPU_TEMPERATURE.series, uuid=bad.uuid) is not None


def test_an_exception_in_the_slow_tier_stays_on_its_gpu_and_fails_the_cycle(
    stack: Stack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, exp, registry = make(stack, clock)
    for g in sim.gpus:
        sim.set_processes(g.uuid, [(1000 + g.dev, 1 << 20)])
    fail_on(sim, monkeypatch, "processes", sim.gpus[0].dev)
    exp.collect_once()
    series = scrape(registry)
    procs = {lab["uuid"] for lab, _ in series[cat.GPU_PROCESS_MEMORY.series]}
    assert procs == {g.uuid for g in sim.gpus[1:]}
    assert value_of(series, cat.GPU_PCIE_TX.series, uuid=sim.gpus[0].uuid) is not None
    assert value_of(series, SUCCESS) == 0.0  # the fast tier completed, the slow one did not
    monkeypatch.undo()
    exp.collect_slow()
    assert value_of(scrape(registry), SUCCESS) == 1.0


def test_a_failing_job_resolver_costs_the_job_label_only(stack: Stack, clock: FakeClock) -> None:
    def resolver(pid: int) -> str:
        raise OSError("scheduler unreachable")

    sim, exp, registry = make(stack, clock, job_resolver=resolver)
    sim.set_processes(sim.gpus[0].uuid, [(4242, 1 << 30)])
    exp.collect_once()
    series = scrape(registry)
    ((labels, value),) = series[cat.GPU_PROCESS_MEMORY.series]
    assert (labels["pid"], labels["job"], value) == ("4242", "", float(1 << 30))
    assert value_of(series, SUCCESS) == 0.0


def test_a_cycle_cut_short_by_a_bug_leaves_nothing_stale(
    stack: Stack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An exception outside any one GPU's reads: the tier reports nothing, not its last values."""
    sim, exp, registry = make(stack, clock)
    exp.collect_once()
    collected_at = clock.t
    clock.advance(5)

    def broken(*args: object) -> None:
        raise KeyError("bug")

    monkeypatch.setattr(exp, "_read_fast", broken)
    assert not exp.collect_fast()
    series = scrape(registry)
    assert UP not in series and not any(has_values(series, g.uuid) for g in sim.gpus)
    assert value_of(series, SUCCESS) == 0.0
    assert value_of(series, cat.EXPORTER_LAST_COLLECT.series) == collected_at  # ageing: alerts
    assert value_of(series, cat.EXPORTER_ERRORS.series, **UNEXPECTED) == 1
    assert series[cat.GPU_PCIE_TX.series]  # the slow tier's values are its own, still fresh
    monkeypatch.undo()
    assert exp.collect_fast()
    assert value_of(scrape(registry), SUCCESS) == 1.0


def test_an_exception_draining_xids_skips_the_drain_only(
    stack: Stack, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    sim, exp, registry = make(stack, clock)

    def broken(limit: int) -> None:
        raise ValueError("bug")

    monkeypatch.setattr(sim, "xid_events", broken)
    assert exp.collect_fast()
    series = scrape(registry)
    assert all(has_values(series, g.uuid) for g in sim.gpus)
    assert value_of(series, SUCCESS) == 0.0
