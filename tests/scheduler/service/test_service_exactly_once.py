"""Every decision and every alert state's receipt is in the audit log exactly once.

Deterministic cases here, one per way a record used to go missing; the property
test with SIGKILLs over mixed workloads is ``test_service_exactly_once_crashes``.
"""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry
from service_testkit import Env, FakeRuntime, am_alert, auth, make_stack, notification, settle

from scheduler.audit import AuditLog
from scheduler.service.app import SERVICE, build_app
from scheduler.service.intents import IntentQueue
from scheduler.service.payload import actionable_pairs, intent_for, parse_notification
from scheduler.service.reconcile import RECOVERED, reconcile
from scheduler.service.records import decision_entry
from scheduler.store.sqlite import Actor


def _ops(log: AuditLog, cid: str) -> list[str]:
    return [r.operation for r in log.query(correlation_id=cid)]


async def test_decisions_of_a_job_submission_are_audited(env: Env) -> None:
    """POST /api/v1/jobs dropped the decisions it caused (a placement, preemptions of jobs
    holding GPUs lent out): they were never audited."""
    body = {"id": "job-1", "pool": "p2-batch", "gpus": 2}
    r = await env.client.post("/api/v1/jobs", json=body, headers=auth("operator"))
    assert r.status == 200 and (await r.json())["id"] == "job-1"
    (req,) = env.service.audit.query(operation="jobs.submit")
    (placed,) = env.service.audit.query(operation="decision.place")
    assert placed.correlation_id == req.correlation_id
    assert (placed.user, placed.source_ip) == ("test-operator", "127.0.0.1")


async def _start(tmp_path: Path, rt: FakeRuntime) -> tuple[TestClient, Env]:  # type: ignore[type-arg]
    stack = make_stack()
    app = build_app(stack, rt, audit_path=tmp_path / "audit.db", registry=CollectorRegistry())
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return client, Env(client, rt, app[SERVICE], stack, tmp_path)


async def test_a_receipt_a_crash_kept_out_is_written_at_the_next_start(tmp_path: Path) -> None:
    """The intents were durable (the 200 went out), then the process died before their
    ``alert.queued`` records were written."""
    stack = make_stack()
    q = IntentQueue(tmp_path / "audit-intents.db")
    alerts = parse_notification(
        json.dumps(
            notification(
                am_alert(fingerprint="a1"), am_alert(fingerprint="a2", labels={"action": ""})
            )
        ).encode()
    ).alerts
    new = q.record_many(
        [([intent_for(a, actionable_pairs(stack)) for a in alerts], 0.0)],
        [("alertmanager", "10.0.0.9")],
    )[0]
    q.close()
    rt = FakeRuntime(stack)
    client, env = await _start(tmp_path, rt)
    try:
        await settle(env)
        queued, ignored = new[0][1], new[1][1]
        assert _ops(env.service.audit, queued.correlation_id) == [
            "alert.queued",
            "alert.rebalance",
            "decision.rebalance",
        ]
        (receipt,) = env.service.audit.query(operation="alert.queued")
        assert (receipt.user, receipt.source_ip, receipt.reason) == (
            "alertmanager",
            "10.0.0.9",
            RECOVERED,
        )
        assert _ops(env.service.audit, ignored.correlation_id) == ["alert.ignored"]
        assert env.service.intents.unreceipted() == []
    finally:
        await client.close()


async def test_decisions_a_crash_kept_out_are_written_once_with_who_caused_them(
    tmp_path: Path,
) -> None:
    rt = FakeRuntime(make_stack())
    with rt.acting_as(Actor("test-operator", "10.1.2.3")):
        (by_hand,) = rt.manual_rebalance("p0-risk", 8, "req-x-1")
    (by_alert,) = rt.on_alert(pool="p0-risk", action="rebalance", firing=True,
                              correlation_id="am-1")  # fmt: skip
    log = AuditLog(tmp_path / "audit.db")
    log.append(decision_entry(by_alert, "alertmanager"))  # written; its flag was not set
    log.close()
    client, env = await _start(tmp_path, rt)
    try:
        await settle(env)
        records = env.service.audit.query(operation="decision.rebalance")
        assert [(json.loads(r.params)["decision"], r.user, r.source_ip) for r in records] == [
            (by_alert.id, "alertmanager", ""),
            (by_hand.id, "test-operator", "10.1.2.3"),
        ]
        assert rt.unaudited() == []
    finally:
        await client.close()


def test_reconciling_twice_writes_nothing_more(tmp_path: Path) -> None:
    stack = make_stack()
    rt = FakeRuntime(stack)
    rt.on_alert(pool="p0-risk", action="rebalance", firing=True, correlation_id="am-2")
    q = IntentQueue(tmp_path / "q.db")
    alerts = parse_notification(json.dumps(notification()).encode()).alerts
    q.record([intent_for(a, actionable_pairs(stack)) for a in alerts], 0.0)
    log = AuditLog(tmp_path / "audit.db")
    assert reconcile(rt, q, log) == (1, 1)
    assert reconcile(rt, q, log) == (0, 0)
    # Flags lost (a crash right after the records were written): found, not doubled.
    rt.audited.clear()
    q._db.execute("UPDATE alerts SET receipt = 0")
    assert reconcile(rt, q, log) == (0, 0)
    assert len(log.query()) == 2
    q.close()
    log.close()


async def test_an_intent_is_settled_only_once_its_records_are_written(env: Env) -> None:
    """Settled while its records waited for an audit outage to end, a crash would have lost
    them: recovery looks only at intents still pending."""
    worker = env.service.worker
    append = env.service.audit.append_many
    from scheduler.audit import AuditUnavailable

    def down(entries):  # type: ignore[no-untyped-def]
        if any(e.operation == "alert.rebalance" for e in entries):
            raise AuditUnavailable("disk full")
        return append(entries)

    env.service.audit.append_many = down  # type: ignore[method-assign]
    worker.backoff = 0.05
    r = await env.client.post("/api/v1/alerts", json=notification(), headers=auth("alertmanager"))
    assert r.status == 200
    import asyncio

    for _ in range(100):
        if env.runtime.alerts:
            break
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    assert env.service.intents.states() == {"pending": 1}  # acted on, records not written
    env.service.audit.append_many = append  # type: ignore[method-assign]
    await settle(env)
    assert env.service.intents.states() == {"done": 1}
    assert len(env.runtime.alerts) == 1
