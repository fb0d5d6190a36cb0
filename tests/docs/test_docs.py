"""docs/security.md and docs/audit-fields.md say what the code does: the generated tables
are current, and every field, operation, result, metric, alert, flag and default they
name exists as named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from alerts.rules import build
from deploy.cli import build_parser
from deploy.stack import ACTIONS, Stack
from exporters.catalog import ALL, MetricKind
from scheduler.audit.export import FORMULA_STARTS
from scheduler.audit.guard import SWEEP_BATCH
from scheduler.audit.records import FIELDS
from scheduler.audit.schema import PURGE
from scheduler.runtime import SchedulerRuntime
from scheduler.service.config import ServiceConfig
from scheduler.service.denials import DEFAULT_WINDOW_SECONDS, MAX_GROUPS
from scheduler.service.records import RECEIPTS
from scheduler.service.reference import SECTIONS, render, sections
from scheduler.service.reports import OPERATIONS
from scheduler.service.reports import RESULTS as REPORT_RESULTS
from scheduler.service.routes import ROUTES
from scheduler.sim.workload import demo_workload

ROOT = Path(__file__).resolve().parents[2]
SECURITY = ROOT / "docs" / "security.md"
AUDIT = ROOT / "docs" / "audit-fields.md"


@pytest.mark.parametrize("doc", [SECURITY, AUDIT], ids=lambda p: p.name)
def test_generated_tables_are_current(doc: Path) -> None:
    text = doc.read_text()
    assert render(text) == text, (
        f"{doc.name} is stale: python -m scheduler.service.reference docs/*.md"
    )
    assert set(sections(SECURITY.read_text()) + sections(AUDIT.read_text())) == set(SECTIONS)


def test_every_field_is_documented() -> None:
    text = AUDIT.read_text()
    for f in FIELDS:
        assert f"| `{f}` |" in text, f


def _decisions_in_a_scripted_run(stack: Stack, tmp_path: Path) -> set[tuple[str, str]]:
    """(action, result) of the decisions a run through every kind of cause takes."""
    now = [1_800_000_000.0]
    rt = SchedulerRuntime.from_stack(
        stack, db_path=tmp_path / "s.db", registry=CollectorRegistry(), clock=lambda: now[0]
    )
    rt.seed(demo_workload(stack, now=now[0]))
    now[0] += 3600
    rt.on_alert(pool="p0-risk", action="rebalance", firing=True, correlation_id="am-1")
    for _ in range(5):
        now[0] += 60
        rt.tick()
    rt.on_alert(pool="p0-risk", action="rebalance", firing=False, correlation_id="am-1")
    rt.manual_scale("p2-batch", 1, "req-1")
    now[0] += 1
    rt.tick()
    rt.manual_scale("p2-batch", 9, "req-2")  # past max_nodes: refused
    job = next(j for j in rt.jobs() if j["state"] == "running" and j["pool"] != "p0-risk")
    rt.cancel_job(job["id"])
    rt.set_policy(dry_run=True)
    rt.manual_rebalance("p0-risk", 8, "req-3")
    for _ in range(20):
        now[0] += 600
        rt.tick()
    out = {(d["action"], d["result"]) for d in rt.decisions(limit=10_000)}
    rt.close()
    return out


def test_every_operation_and_result_the_code_writes_is_documented(
    stack: Stack, tmp_path: Path
) -> None:
    text = AUDIT.read_text()
    ops = [r.name for r in ROUTES if r.audited]
    ops += [*RECEIPTS, "alert.recovered", PURGE, *(f"alert.{a}" for a in ACTIONS)]
    ops += list(OPERATIONS)  # actions done elsewhere, reported to POST /api/v1/audit/records
    for op in ops:
        assert f"`{op}`" in text, op
    seen = _decisions_in_a_scripted_run(stack, tmp_path)
    assert len({a for a, _ in seen}) >= 6  # the run did exercise the scheduler
    for action, result in seen:
        assert f"`decision.{action}`" in text, action
        assert f"`{result}`" in text, result
    for result in ("ok", "denied", "error", "queued", "ignored", "failed", *REPORT_RESULTS):
        assert f"`{result}`" in text, result


def test_metrics_alerts_flags_and_defaults_named_exist(stack: Stack) -> None:
    text = SECURITY.read_text() + AUDIT.read_text()
    series = set()
    for m in ALL:
        if m.kind is MetricKind.HISTOGRAM:
            series |= {m.bucket, m.sum, m.count}
        else:
            series.add(m.series)
    for name in set(re.findall(r"novabrain_[a-z_]+", text)):
        assert name in series, name
    alerts = {c.alertname for c in build(stack)[0]}
    for name in set(re.findall(r"Novabrain[A-Za-z]+", text)):
        assert name in alerts, name
    verify = build_parser().parse_args(["audit", "verify", "--db", "x"])
    for flag in re.findall(r"audit verify[^`\n]*?(--[a-z-]+)", text):
        assert hasattr(verify, flag[2:].replace("-", "_")), flag
    for ch, shown in zip(FORMULA_STARTS, ("`=`", "`+`", "`-`", "`@`", "tab", "carriage return"),
                         strict=True):  # fmt: skip
        assert ch and shown in text
    cfg = ServiceConfig()
    for phrase in (
        f"window of {DEFAULT_WINDOW_SECONDS:g} s",
        f"Past {MAX_GROUPS:,} open groups",
        f"{cfg.anonymous_rate.rate:g}/s, bursts of {cfg.anonymous_rate.burst:g}",
        f"More than {cfg.api_rate.rate:g} requests a second (bursts of {cfg.api_rate.burst:g}",
        f"More than {cfg.webhook_rate.rate:g} notifications a second (bursts of "
        f"{cfg.webhook_rate.burst:g}",
        f"within {cfg.audit_verify_interval_seconds:g} s",
        f"{SWEEP_BATCH:,} records a pass",
        f"capped at {cfg.max_body_bytes >> 20} MiB",
    ):
        assert phrase in text, phrase
    assert cfg.audit_publish_interval_seconds == 60.0 and "every minute" in text
    assert stack.audit.online_days == 90 and "`audit.online_days` (default 90)" in text
    assert stack.audit.retention_days == 365 and "`audit.retention_days` (default 365)" in text
