"""Compare the exporter's values with ``nvidia-smi --query-gpu`` on a machine with real GPUs.

Run on a GPU node (the driver and nvidia-smi installed):

    python benchmarks/gpu_vs_nvidia_smi.py [--rounds 3]

Each round collects once through the real NVML backend, runs nvidia-smi right
after, and compares every GPU's values field by field. Identity, totals, limits
and error counters must match exactly; values that move between the two reads
(utilisation, power, clocks, temperature, memory in use) within a tolerance.
Prints one line per (GPU, field) and a summary; exits 1 if any field differs
beyond its tolerance, 2 if there is no GPU or no nvidia-smi here.
"""

from __future__ import annotations

import argparse
import csv
import io
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from exporters.catalog import gpu as cat
from exporters.gpu.exporter import GpuExporter
from exporters.nvml.real import NvmlBackend

MIB = 1024**2


@dataclass(frozen=True)
class Check:
    """One nvidia-smi field, the exporter series it corresponds to, and how close they must be."""

    smi_field: str
    series: str
    labels: tuple[tuple[str, str], ...] = ()
    scale: float = 1.0  # exporter value * scale = nvidia-smi's unit
    abs_tol: float = 0.0
    rel_tol: float = 0.0


CHECKS: tuple[Check, ...] = (
    Check("utilization.gpu", cat.GPU_UTILIZATION.series, scale=100, abs_tol=10),
    Check("utilization.memory", cat.GPU_MEMORY_COPY_UTILIZATION.series, scale=100, abs_tol=10),
    Check("memory.total", cat.GPU_MEMORY_TOTAL.series, scale=1 / MIB, abs_tol=1),
    Check("memory.used", cat.GPU_MEMORY_USED.series, scale=1 / MIB, abs_tol=64, rel_tol=0.02),
    Check("memory.free", cat.GPU_MEMORY_FREE.series, scale=1 / MIB, abs_tol=64, rel_tol=0.02),
    Check("temperature.gpu", cat.GPU_TEMPERATURE.series, abs_tol=3),
    Check("temperature.memory", cat.GPU_MEMORY_TEMPERATURE.series, abs_tol=3),
    Check("power.draw", cat.GPU_POWER.series, abs_tol=15, rel_tol=0.2),
    Check("enforced.power.limit", cat.GPU_POWER_LIMIT.series, abs_tol=1),
    Check("clocks.sm", cat.GPU_SM_CLOCK.series, scale=1e-6, abs_tol=50, rel_tol=0.15),
    Check("clocks.mem", cat.GPU_MEMORY_CLOCK.series, scale=1e-6, abs_tol=50, rel_tol=0.05),
    Check(
        "ecc.errors.corrected.volatile.total",
        cat.GPU_ECC_ERRORS.series,
        (("type", "corrected"), ("counter", "volatile")),
    ),
    Check(
        "ecc.errors.uncorrected.volatile.total",
        cat.GPU_ECC_ERRORS.series,
        (("type", "uncorrected"), ("counter", "volatile")),
    ),
    Check(
        "ecc.errors.corrected.aggregate.total",
        cat.GPU_ECC_ERRORS.series,
        (("type", "corrected"), ("counter", "aggregate")),
    ),
    Check(
        "ecc.errors.uncorrected.aggregate.total",
        cat.GPU_ECC_ERRORS.series,
        (("type", "uncorrected"), ("counter", "aggregate")),
    ),
)
IDENTITY = ("name", "driver_version", "pci.bus_id")
SMI_FIELDS = ("uuid", *IDENTITY, *(c.smi_field for c in CHECKS))

Values = dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]]


def exporter_values(registry: CollectorRegistry) -> tuple[Values, dict[str, dict[str, str]]]:
    """uuid -> (series, extra labels) -> value, and uuid -> identity labels."""
    values: Values = {}
    info: dict[str, dict[str, str]] = {}
    for fam in registry.collect():
        for s in fam.samples:
            uuid = s.labels.get("uuid")
            if uuid is None:
                continue
            if s.name == cat.GPU_INFO.series:
                info[uuid] = dict(s.labels)
            rest = tuple(sorted((k, v) for k, v in s.labels.items() if k not in cat.GPU_LABELS))
            values.setdefault(uuid, {})[(s.name, rest)] = s.value
    return values, info


def parse_smi(text: str) -> dict[str, dict[str, str]]:
    rows = csv.reader(io.StringIO(text), skipinitialspace=True)
    return {r[0]: dict(zip(SMI_FIELDS, r, strict=True)) for r in rows if r}


def compare(
    values: Values, info: Mapping[str, Mapping[str, str]], smi: Mapping[str, Mapping[str, str]]
) -> list[tuple[str, str, str, str, bool]]:
    """(uuid, field, exporter, nvidia-smi, ok) for every GPU nvidia-smi lists."""
    out = []
    for uuid, row in smi.items():
        ident = info.get(uuid, {})
        for f, label in zip(IDENTITY, ("model_name", "driver_version", "pci_bus_id"), strict=True):
            mine = ident.get(label, "<missing>")
            # nvidia-smi prints an 8-digit PCI domain, NVML's busId may carry the same.
            ok = mine.upper().lstrip("0") == row[f].upper().lstrip("0")
            out.append((uuid, f, mine, row[f], ok))
        for c in CHECKS:
            theirs = row[c.smi_field]
            got = values.get(uuid, {}).get((c.series, tuple(sorted(c.labels))))
            if theirs.startswith(("[N/A]", "N/A", "[Not Supported]")):
                out.append((uuid, c.smi_field, str(got), theirs, got is None))
                continue
            if got is None:
                out.append((uuid, c.smi_field, "<missing>", theirs, False))
                continue
            mine_v, theirs_v = got * c.scale, float(theirs)
            tol = max(c.abs_tol, c.rel_tol * abs(theirs_v))
            out.append((uuid, c.smi_field, f"{mine_v:.1f}", theirs, abs(mine_v - theirs_v) <= tol))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    smi_bin = shutil.which("nvidia-smi")
    if smi_bin is None:
        print("nvidia-smi not found: run this on a machine with NVIDIA GPUs and the driver")
        return 2
    registry = CollectorRegistry()
    exp = GpuExporter(NvmlBackend(), registry)
    failures = 0
    for r in range(args.rounds):
        if not exp.collect_once():
            print("NVML did not initialise: see the log above")
            return 2
        smi = subprocess.run(
            [smi_bin, f"--query-gpu={','.join(SMI_FIELDS)}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        values, info = exporter_values(registry)
        rows = compare(values, info, parse_smi(smi))
        print(f"round {r + 1}: {len(parse_smi(smi))} GPUs")
        print(f"  {'gpu':<14} {'field':<40} {'exporter':>16} {'nvidia-smi':>16}  ok")
        for uuid, field, mine, theirs, ok in rows:
            print(
                f"  {uuid[:14]:<14} {field:<40} {mine:>16} {theirs:>16}  {'ok' if ok else 'DIFF'}"
            )
        failures += sum(1 for *_, ok in rows if not ok)
        time.sleep(1)
    print(f"{failures} differences beyond tolerance over {args.rounds} rounds")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
