"""The registry of rule families: which file each writes, in which order they run.

A family is one module with a ``generate(builder)`` function; adding one is one
line here. ``build`` runs them in order, and ``rule_files`` lays their output
out as Prometheus rule files, groups and rules in generation order (the output
is committed, so the order is part of the contract).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alerts.rules import audit, gpu, models, scheduler, slo
from alerts.rules.case import Builder, Case, Recording
from alerts.triton import triton_rule_group
from deploy.stack import Stack


@dataclass(frozen=True)
class Family:
    """One rule family: the rule file it owns and the function that fills it."""

    file: str
    generate: Callable[[Builder], None]


FAMILIES: tuple[Family, ...] = (
    Family(slo.SLO_FILE, slo.generate),
    Family(models.MODELS_FILE, models.generate),
    Family(gpu.GPU_FILE, gpu.generate),
    Family(scheduler.SCHEDULER_FILE, scheduler.generate),
    Family(audit.AUDIT_FILE, audit.generate),
)
FILES = tuple(f.file for f in FAMILIES)
TRITON_FILE = "triton.rules.yml"


def build(stack: Stack) -> tuple[list[Case], list[Recording]]:
    """Every alert case and recording rule for ``stack``, in a stable order."""
    b = Builder(stack)
    for family in FAMILIES:
        family.generate(b)
    return b.cases, b.recordings


def rule_files(stack: Stack) -> dict[str, dict[str, Any]]:
    """File name -> Prometheus rules document. Groups and rules keep generation order."""
    cases, recordings = build(stack)
    out: dict[str, dict[str, Any]] = {}
    for file in FILES:
        groups: dict[str, list[dict[str, Any]]] = {}
        for rec in recordings:
            if rec.file == file:
                groups.setdefault(rec.group, []).append(rec.to_rule())
        for case in cases:
            if case.file == file:
                groups.setdefault(case.group, []).extend(case.rules)
        if groups:
            out[file] = {"groups": [{"name": g, "rules": r} for g, r in groups.items()]}
    # Triton's own metrics recorded under catalog names (alerts.triton).
    out[TRITON_FILE] = {"groups": [dict(triton_rule_group(stack))]}
    return out
