"""The whole closed loop, as ``make demo`` runs it, checked through the Prometheus and scheduler APIs.

Real Prometheus and Alertmanager binaries on loopback; simulated GPUs, model
server and scheduler in-process around one simulated world (deploy.demo).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from deploy.demo import Event, SimulatedStack, run_scenario
from deploy.stack import load_stack
from exporters.catalog.gpu import GPU_UTILIZATION
from exporters.catalog.scheduler import GPU_POOL_INFO, PREEMPTIONS

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


async def test_p0_breach_moves_gpus_and_the_alert_resolves(tmp_path: Path) -> None:
    stack = load_stack(ROOT / "deploy/stack.yaml")
    events: list[Event] = []
    async with SimulatedStack(stack, tmp_path) as env:
        assert env.prometheus is not None
        prom = env.prometheus
        model = next(m for m in env.stack.models if m.action == "rebalance")
        pool = model.pool
        own = env.runtime.serving_gpus(pool)

        # Every component is scraped by the real Prometheus.
        up = await prom.await_for("count(up == 1) == 3", timeout=60)
        assert up

        before = {j["id"]: j for j in await env.api("/api/v1/jobs")}
        timeline = await run_scenario(env, events.append)

        # Lower-priority jobs were preempted for P0 and, once the GPUs went back,
        # resumed from their checkpoints.
        moved = next(e for e in timeline.events if e.step == "moved")
        victims = moved.data["victims"]
        assert victims
        # Every pod running once P0 grew has its GPUs on one node.
        assert moved.data["pods"] > 0 and moved.data["pods_spanning_nodes"] == 0
        after = {j["id"]: j for j in await env.api("/api/v1/jobs")}
        releases = {
            d["job"]: d
            for d in await env.api("/api/v1/decisions?limit=10000")
            if d["action"] == "release" and d["job"] in victims
        }
        assert sorted(releases) == sorted(victims)
        assert any(before[v]["checkpointable"] for v in victims)
        for v in victims:
            was, now, release = before[v], after[v], releases[v]
            assert now["state"] == "running" and now["resume_count"] == was["resume_count"] + 1
            if was["checkpointable"]:
                # At least as far as the checkpoint it already had (hours of work)...
                assert now["progress_seconds"] >= was["checkpoint_progress_seconds"] > 0, v
            else:
                assert now["progress_seconds"] == 0, v  # nothing to resume from: it restarts
            # ...and exactly the work it had done, less the work the release says was lost.
            ran = release["at"] - was["started_at"]
            lost = release["gpu_seconds_lost"] / was["gpus"]
            assert now["progress_seconds"] + lost == pytest.approx(
                was["progress_seconds"] + ran, abs=1e-3
            ), v

        # The bound: first breaching sample to GPUs moved in under 60 s.
        breach_to_moved = timeline.at("moved") - timeline.at("breach")
        print(f"\nbreach -> GPUs moved: {breach_to_moved:.1f}s; timeline:")
        for e in timeline.events:
            print(f"  [{e.at:6.1f}s] {e.step:9s} {e.text}")
        assert breach_to_moved < 60

        # Prometheus saw the alert fire and saw P0 hold more GPUs through the join series.
        fired = await prom.aquery(
            f'max_over_time(ALERTS{{alertstate="firing",model="{model.name}",action="rebalance"}}[15m])'
        )
        assert fired and float(fired[0]["value"][1]) == 1
        held = await prom.aquery(
            f'max_over_time(count({GPU_POOL_INFO.series}{{pool="{pool}"}})[15m:1s])'
        )
        assert held and float(held[0]["value"][1]) > own
        preempted = await prom.aquery(f"sum({PREEMPTIONS.series})")
        assert preempted and float(preempted[0]["value"][1]) >= 1

        # Pool-level GPU panels join exporter series on the scheduler's info series.
        # After the return every pool holds its own GPUs again (awaited: Prometheus
        # sees the change on its next scrape of the scheduler).
        for p in env.stack.pools:
            joined = (
                f"{GPU_UTILIZATION.series} * on(uuid) group_left(pool) "
                f'{GPU_POOL_INFO.series}{{pool="{p.name}"}}'
            )
            assert await prom.await_for(f"count({joined}) == {p.nominal_gpus}", timeout=30)

        # The scheduler's API tells the same story: a rebalance decision for the P0 pool,
        # and P0 back at its own GPUs after the stabilization window.
        decisions = await env.api("/api/v1/decisions?limit=100")
        assert any(d["pool"] == pool and d["action"] == "rebalance" for d in decisions)
        # Issue 15: the alert carried the model's request rate (its annotation's query ran
        # in the real Prometheus) and the grant was sized from it; the load poller read the
        # same query, and the burst went back because the load no longer needed it.
        grant = next(d for d in decisions if d["pool"] == pool and d["action"] == "rebalance")
        assert grant["sizing"]["rate_rps"] > 0 and grant["sizing"]["needed_gpus"] > own
        back = [d for d in decisions if d["action"] == "return" and d["result"] == "ok"]
        assert back and all("load needed at most" in d["reason"] for d in back)
        stages = next(e for e in timeline.events if e.step == "capacity").data
        assert set(stages) == {"first_victim_signalled", "last_gpu_free", "serving"}
        pools = {p["name"]: p for p in await env.api("/api/v1/pools")}
        assert pool in pools

        # On-call was notified too (the webhook route continues to on-call), firing then resolved.
        statuses = [n["status"] for n in env.oncall.notifications]
        assert "firing" in statuses and "resolved" in statuses
        # ... by email and WeCom, in each team's language (the demo's real SMTP server and WeCom API).
        subjects = {(n["channel"], n["subject"]) for n in env.oncall.notifications}
        assert (
            "email",
            "[已恢复] 严重 NovabrainModelLatencyHigh risk-scorer @ p0-risk: "
            "risk-scorer p99 延迟超过 50 毫秒",
        ) in subjects
        assert any(
            c == "wecom" and s.startswith("[告警:1] 严重 NovabrainModelLatencyHigh")
            for c, s in subjects
        )
        assert any(
            c == "email" and s.startswith("[FIRING:1] WARNING NovabrainTargetDown")
            for c, s in subjects
        )
