"""The trace-driven simulator on the vendored sample of the ElasticFlow traces.

The sample (scheduler/sim/traces, chosen as its README says) makes P1 and P2
compete for GPUs on the committed stack's cluster.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from deploy.stack import Stack, load_stack
from scheduler.config import cluster_spec, policy_spec
from scheduler.sim.trace import SAMPLE_TRACE, SimConfig, read_trace, simulate

ROOT = Path(__file__).resolve().parents[3]
CONFIG = SimConfig(training_pool="p1-train", batch_pool="p2-batch", p0_pool="p0-risk")
# A P0 alert while P1 and P2 are both busy, resolved an hour later.
ALERT = [(6 * 3600.0, True), (7 * 3600.0, False)]


@pytest.fixture(scope="module")
def stack() -> Stack:
    return load_stack(ROOT / "deploy/stack.yaml")


def run(stack: Stack, alerts: list[tuple[float, bool]]) -> dict[str, object]:
    trace = read_trace(SAMPLE_TRACE)
    return simulate(trace, cluster_spec(stack), policy_spec(stack), CONFIG, alerts=alerts).summary()


def test_the_sample_is_three_hundred_distinct_jobs() -> None:
    jobs = read_trace(SAMPLE_TRACE)
    assert len(jobs) == 300 and len({j.job_id for j in jobs}) == 300


def test_p1_and_p2_compete_and_every_job_completes(stack: Stack) -> None:
    # Without its reservation the stack's P0 never asks for GPUs: every preemption is P1's.
    quiet = run(dataclasses.replace(stack, reservations=()), [])
    assert quiet["submitted"] == 300 and quiet["skipped_too_big"] == 0
    assert quiet["completed"] == 300 and quiet["unfinished"] == 0
    preemptions = quiet["preemptions"]
    assert isinstance(preemptions, dict) and preemptions.get("p2-batch", 0) >= 10
    waits = quiet["wait_p50_seconds"]
    assert isinstance(waits, dict) and waits["p1-train"] > 0 and waits["p2-batch"] > 0
    assert int(str(quiet["max_preemptions_per_job"])) <= stack.policy.preemption_budget


def test_a_p0_alert_preempts_more_and_its_cost_is_accounted(stack: Stack) -> None:
    calm, alert = run(stack, []), run(stack, ALERT)
    assert alert["completed"] == alert["submitted"] == 300
    during, before = alert["preemptions"], calm["preemptions"]
    assert isinstance(during, dict) and isinstance(before, dict)
    assert sum(during.values()) > sum(before.values())
    lost = alert["gpu_seconds_lost"]
    assert isinstance(lost, dict) and all(v >= 0 for v in lost.values()) and sum(lost.values()) > 0
    assert int(str(alert["max_preemptions_per_job"])) <= stack.policy.preemption_budget
    # Preemption costs a small share of the GPU time run (measured: 1.7%).
    assert float(str(alert["lost_fraction"])) < 0.05
    # Deterministic: the same trace gives the same report.
    assert run(stack, ALERT) == alert
