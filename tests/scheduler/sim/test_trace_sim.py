"""The trace-driven simulator on the real ElasticFlow traces."""

from __future__ import annotations

from pathlib import Path

from deploy.stack import load_stack
from scheduler.config import cluster_spec, policy_spec
from scheduler.sim.trace import SimConfig, read_trace, simulate

ROOT = Path(__file__).resolve().parents[3]
# shared/ lies beside the checkout, for developers and CI alike.
TRACES = ROOT.parent / "shared" / "traces" / "elasticflow"


def run(limit: int, alerts: list[tuple[float, bool]]) -> dict[str, object]:
    stack = load_stack(ROOT / "deploy/stack.yaml")
    trace = read_trace(TRACES / "cluster01.csv", limit=limit)
    config = SimConfig(training_pool="p1-train", batch_pool="p2-batch", p0_pool="p0-risk")
    return simulate(trace, cluster_spec(stack), policy_spec(stack), config, alerts=alerts).summary()


def test_trace_replays_to_completion_with_preemption_accounted() -> None:
    # A P0 alert in the thick of it, resolved an hour later.
    alerts = [(3 * 3600.0, True), (4 * 3600.0, False)]
    first = run(250, alerts)
    assert first["submitted"] == 250 - int(str(first["skipped_too_big"]))
    assert first["unfinished"] == 0  # bounded load: everything finishes
    assert first["completed"] == first["submitted"]
    stack = load_stack(ROOT / "deploy/stack.yaml")
    assert int(str(first["max_preemptions_per_job"])) <= stack.policy.preemption_budget
    lost = first["gpu_seconds_lost"]
    assert isinstance(lost, dict) and all(v >= 0 for v in lost.values())
    # P0's alert preempted batch/training work, and that work was accounted; no
    # P1/P2 ping-pong: preemption costs a sliver of the GPU time run.
    preemptions = first["preemptions"]
    assert isinstance(preemptions, dict) and sum(preemptions.values()) >= 1
    assert sum(lost.values()) > 0
    assert float(str(first["lost_fraction"])) < 0.01
    # Deterministic: the same trace gives the same report.
    assert run(250, alerts) == first
