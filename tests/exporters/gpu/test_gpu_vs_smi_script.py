"""The nvidia-smi comparison script's parsing and tolerances, on the simulated backend.

The script itself needs a real GPU; here its pure part runs against an
nvidia-smi CSV written from the simulation's own values.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from prometheus_client import CollectorRegistry

from exporters.gpu.exporter import GpuExporter
from exporters.nvml.sim import DRIVER_VERSION, SimBackend

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu_vs_nvidia_smi.py"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_vs_nvidia_smi", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def smi_line(sim: SimBackend, i: int, *, util: str = "62", ecc: str = "0") -> str:
    g = sim.gpus[i]
    used = 20 * 1024  # MiB
    total = g.memory_total_bytes // 1024**2
    cols = [g.uuid, g.name, DRIVER_VERSION, g.pci_bus_id.replace("00000000", "0000")]
    cols += [util, "0", str(total), str(used + 3), str(total - used - 3), "55", "[N/A]"]
    cols += ["401.25", "700.00", "1980", "2619", ecc, "0", "0", "0"]
    return ", ".join(cols)


def test_matching_values_pass_and_a_difference_is_flagged() -> None:
    smi = load()
    sim = SimBackend.cluster(1, 2)
    for g in sim.gpus:
        sim.set(g.uuid, utilization=0.6, memory_used_bytes=20 * 1024**3, temperature_celsius=54)
        sim.set(g.uuid, power_watts=395.0)
    sim.inject("NOT_SUPPORTED", call="field:82")  # memory temperature, [N/A] in nvidia-smi too
    registry = CollectorRegistry()
    GpuExporter(sim, registry).collect_once()
    values, info = smi.exporter_values(registry)
    text = "\n".join([smi_line(sim, 0), smi_line(sim, 1, util="95", ecc="2")]) + "\n"
    rows = smi.compare(values, info, smi.parse_smi(text))
    bad = {(uuid, field) for uuid, field, _, _, ok in rows if not ok}
    assert bad == {
        (sim.gpus[1].uuid, "utilization.gpu"),
        (sim.gpus[1].uuid, "ecc.errors.corrected.volatile.total"),
    }
    assert len(rows) == 2 * (len(smi.IDENTITY) + len(smi.CHECKS))
