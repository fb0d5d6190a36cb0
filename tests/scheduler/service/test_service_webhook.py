"""The Alertmanager webhook: auth, validation, idempotency, durable queue, rate limit, 5xx only when transient."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from service_testkit import TOKENS, Env, am_alert, auth, notification, settle, start_env

from exporters.catalog.service import (
    ALERT_TO_ACTION,
    WEBHOOK_INTENTS_PENDING,
    WEBHOOK_NOTIFICATIONS,
)
from scheduler.service.app import ServiceConfig
from scheduler.service.intents import LATE_FIRING
from scheduler.service.ratelimit import RateLimit
from scheduler.service.routes import ALERTS_PATH


def sample(env: Env, name: str, labels: dict[str, str]) -> float:
    v = env.service.registry.get_sample_value(name, labels)
    return 0.0 if v is None else v


async def test_firing_alert_acts_once_and_is_audited(env: Env) -> None:
    r = await env.client.post(ALERTS_PATH, json=notification(), headers=auth("alertmanager"))
    assert r.status == 200, await r.text()
    body = await r.json()
    assert body["queued"] == 1 and body["duplicates"] == 0
    await settle(env)
    assert env.runtime.alerts == [
        {
            "pool": "p0-risk",
            "action": "rebalance",
            "firing": True,
            "cid": body["correlation_ids"][0],
        }
    ]
    cid = body["correlation_ids"][0]
    ops = [r.operation for r in env.service.audit.query(correlation_id=cid)]
    # Received, acted on, and the decision it caused: one correlation id links them.
    assert ops == ["alert.queued", "alert.rebalance", "decision.rebalance"]
    req = env.service.audit.query(operation="alerts.receive")[-1]
    assert req.user == "alertmanager" and req.source_ip == "127.0.0.1" and req.result == "ok"
    assert json.loads(req.params)["correlation_ids"] == [cid]
    assert sample(env, WEBHOOK_NOTIFICATIONS.series, {"result": "accepted"}) == 1
    assert sample(env, ALERT_TO_ACTION.count, {"action": "rebalance"}) == 1
    for _ in range(100):  # set when the queue row is settled, right after the commit
        if sample(env, WEBHOOK_INTENTS_PENDING.series, {}) == 0:
            break
        await asyncio.sleep(0.01)
    assert sample(env, WEBHOOK_INTENTS_PENDING.series, {}) == 0


async def test_the_audit_log_shows_an_alert_received_before_it_is_acted_on(env: Env) -> None:
    """The worker acts as soon as the intent is durable, but its records wait for the
    alert's own: here the webhook's audit write is made slow, well past the worker's."""
    import time

    log = env.service.audit
    append = log.append_many

    def slow_append(entries):  # type: ignore[no-untyped-def]
        if any(e.operation == "alert.queued" for e in entries):
            time.sleep(0.3)
        return append(entries)

    log.append_many = slow_append  # type: ignore[method-assign]
    r = await env.client.post(ALERTS_PATH, json=notification(), headers=auth("alertmanager"))
    assert r.status == 200
    await settle(env)
    cid = (await r.json())["correlation_ids"][0]
    ops = [r.operation for r in log.query(correlation_id=cid)]
    assert ops == ["alert.queued", "alert.rebalance", "decision.rebalance"]


async def test_a_thousand_replays_give_exactly_one_action(env: Env) -> None:
    """In concurrent bursts, as HA peers and retries overlap: many share one commit."""
    import asyncio

    payload = notification()

    async def post() -> int:
        r = await env.client.post(ALERTS_PATH, json=payload, headers=auth("alertmanager"))
        await r.read()
        return r.status

    for _ in range(20):
        assert await asyncio.gather(*(post() for _ in range(50))) == [200] * 50
    await settle(env)
    assert len(env.runtime.alerts) == 1
    assert sample(env, WEBHOOK_NOTIFICATIONS.series, {"result": "duplicate"}) == 999


async def test_group_resend_and_ha_duplicate_dedupe_per_alert(env: Env) -> None:
    a = am_alert(fingerprint="aaaa")
    b = am_alert(fingerprint="bbbb", labels={"pool": "p0-risk"})
    await env.client.post(ALERTS_PATH, json=notification(a), headers=auth("alertmanager"))
    # The group's next flush carries the old alert and a new one.
    r = await env.client.post(ALERTS_PATH, json=notification(a, b), headers=auth("alertmanager"))
    assert (await r.json())["queued"] == 1
    # An HA peer formats the same instant differently: still the same alert state.
    a_peer = dict(a, startsAt="2026-11-28T10:15:00.123456789+01:00")
    r = await env.client.post(ALERTS_PATH, json=notification(a_peer), headers=auth("alertmanager"))
    assert (await r.json())["duplicates"] == 1
    await settle(env)
    assert len(env.runtime.alerts) == 2


async def test_resolved_alert_is_a_new_state_and_starts_the_return(env: Env) -> None:
    await env.client.post(ALERTS_PATH, json=notification(), headers=auth("alertmanager"))
    resolved = notification(am_alert(status="resolved"), status="resolved")
    r = await env.client.post(ALERTS_PATH, json=resolved, headers=auth("alertmanager"))
    assert (await r.json())["queued"] == 1
    await settle(env)
    assert [a["firing"] for a in env.runtime.alerts] == [True, False]


async def test_alerts_without_mapped_action_are_recorded_and_ignored(env: Env) -> None:
    plain = am_alert(fingerprint="c1", labels={"action": "", "pool": ""})
    unmapped = am_alert(fingerprint="c2", labels={"action": "scale", "pool": "p2-batch"})
    r = await env.client.post(
        ALERTS_PATH, json=notification(plain, unmapped), headers=auth("alertmanager")
    )
    body = await r.json()
    assert r.status == 200 and body["queued"] == 0 and body["ignored"] == 2
    await settle(env)
    assert env.runtime.alerts == []
    ignored = env.service.audit.query(operation="alert.ignored")
    assert [r.reason for r in ignored] == [
        "no action labels",
        "the stack maps no 'scale' action to pool 'p2-batch'",
    ]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda d: d.pop("version"), "version: is required"),
        (lambda d: d.update(version="3"), "version: only Alertmanager webhook version 4"),
        (lambda d: d.update(alerts=[]), "alerts: must not be empty"),
        (lambda d: d.update(extra=1), "extra: unknown field"),
        (
            lambda d: d["alerts"][0].update(startsAt="yesterday"),
            "alerts[0].startsAt: not an RFC 3339",
        ),
        (lambda d: d["alerts"][0].update(fingerprint="XYZ"), "alerts[0].fingerprint"),
        (
            lambda d: d["alerts"][0]["labels"].update(pool=3),
            "alerts[0].labels.pool: must be a string",
        ),
        (lambda d: d.update(status="pending"), "status: must be firing or resolved"),
    ],
)
async def test_invalid_payload_is_400_with_the_reason(env: Env, mutate, reason: str) -> None:  # type: ignore[no-untyped-def]
    doc = notification()
    mutate(doc)
    r = await env.client.post(ALERTS_PATH, json=doc, headers=auth("alertmanager"))
    assert r.status == 400
    assert reason in (await r.json())["reason"]
    rec = env.service.audit.query(operation="alerts.receive")[-1]
    assert rec.result == "error" and reason in rec.reason


async def test_body_not_json_and_too_large(env: Env) -> None:
    r = await env.client.post(ALERTS_PATH, data=b"{nope", headers=auth("alertmanager"))
    assert r.status == 400 and "not JSON" in (await r.json())["reason"]
    big = b"x" * (env.service.config.max_body_bytes + 1)
    r = await env.client.post(ALERTS_PATH, data=big, headers=auth("alertmanager"))
    assert r.status == 413
    assert sample(env, WEBHOOK_NOTIFICATIONS.series, {"result": "too_large"}) == 1


async def test_auth_bearer_basic_wrong_and_missing(env: Env) -> None:
    import base64

    good_basic = base64.b64encode(f"alertmanager:{TOKENS['alertmanager']}".encode()).decode()
    wrong_user = base64.b64encode(f"someone:{TOKENS['alertmanager']}".encode()).decode()
    cases = [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Basic {wrong_user}"}, 401),
        (auth("viewer"), 403),
        (auth("admin"), 403),
        ({"Authorization": f"Basic {good_basic}"}, 200),
    ]
    for headers, status in cases:
        r = await env.client.post(ALERTS_PATH, json=notification(), headers=headers)
        assert r.status == status, headers
    recs = env.service.audit.query(operation="alerts.receive")
    # The three refusals of one source share a record (and a count, written when their
    # window closes); the other refusals are other events.
    assert [(r.user, r.result) for r in recs] == [
        ("anonymous", "denied"),
        ("test-viewer", "denied"),
        ("test-admin", "denied"),
        ("alertmanager", "ok"),
    ]
    (summary,) = env.service.endpoints.denials.due(everything=True)
    assert summary.user == "anonymous" and summary.params["count"] == 2
    # The token itself is never written anywhere in the audit log.
    dump = (env.tmp / "audit.db").read_bytes()
    assert TOKENS["alertmanager"].encode() not in dump and b"wrong" not in dump


async def test_storage_unavailable_is_503_and_the_retry_acts(tmp_path: Path) -> None:
    env = await start_env(tmp_path, ServiceConfig(busy_timeout_seconds=0.05))
    try:
        # Another writer holds the intent database: the intent cannot be persisted.
        blocker = sqlite3.connect(env.service.intents.path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        r = await env.client.post(ALERTS_PATH, json=notification(), headers=auth("alertmanager"))
        assert r.status == 503 and r.headers["Retry-After"] == "1"
        blocker.execute("ROLLBACK")
        blocker.close()
        # Alertmanager retries a 5xx: now it is persisted and acted on once.
        r = await env.client.post(ALERTS_PATH, json=notification(), headers=auth("alertmanager"))
        assert r.status == 200 and (await r.json())["queued"] == 1
        await settle(env)
        assert len(env.runtime.alerts) == 1
    finally:
        await env.client.close()


async def test_audit_log_unavailable_is_503_and_no_record_is_lost(tmp_path: Path) -> None:
    """The intent is durable, so the alert is acted on; every record is written once the log
    is back (the request's on the next tick, with no further request), and the retry is a
    duplicate."""
    from scheduler.audit import verify

    env = await start_env(
        tmp_path,
        ServiceConfig(
            busy_timeout_seconds=0.05, retry_backoff_seconds=0.05, tick_interval_seconds=0.05
        ),
    )
    blocker = sqlite3.connect(env.service.audit.path, isolation_level=None)
    try:
        blocker.execute("BEGIN EXCLUSIVE")
        r = await env.client.post(ALERTS_PATH, json=notification(), headers=auth("alertmanager"))
        assert r.status == 503 and r.headers["Retry-After"] == "1"
        blocker.execute("ROLLBACK")
        await settle(env)
        assert len(env.runtime.alerts) == 1
        cid = env.runtime.alerts[0]["cid"]
        for _ in range(200):
            ops = [x.operation for x in env.service.audit.query(correlation_id=cid)]
            if "alert.queued" in ops:
                break
            await asyncio.sleep(0.02)
        assert sorted(ops) == ["alert.queued", "alert.rebalance", "decision.rebalance"]
        (request,) = env.service.audit.query(operation="alerts.receive")
        assert request.result == "error" and request.reason.startswith("503")
        # Alertmanager retries the 5xx: nothing is acted on again.
        r = await env.client.post(ALERTS_PATH, json=notification(), headers=auth("alertmanager"))
        assert r.status == 200 and (await r.json())["duplicates"] == 1
        await settle(env)
        assert len(env.runtime.alerts) == 1
        assert verify(env.service.audit.path).ok
    finally:
        blocker.close()
        await env.client.close()


async def test_runtime_store_unavailable_is_retried_from_the_queue(env: Env) -> None:
    env.runtime.fail_store = True
    r = await env.client.post(ALERTS_PATH, json=notification(), headers=auth("alertmanager"))
    assert r.status == 200  # the intent is durable: the runtime's outage is not the sender's
    import asyncio

    for _ in range(200):
        if env.service.intents.states().get("pending") == 1:
            break
        await asyncio.sleep(0.01)
    assert env.runtime.alerts == []
    env.runtime.fail_store = False  # the worker retries on its own
    await settle(env)
    assert len(env.runtime.alerts) == 1


async def test_settling_write_that_fails_is_retried_without_acting_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Acted on, then the queue cannot be written: the outcome is retried, the action is not."""
    caplog.set_level(logging.WARNING)
    env = await start_env(
        tmp_path, ServiceConfig(busy_timeout_seconds=0.02, retry_backoff_seconds=0.02)
    )
    blocker = sqlite3.connect(env.service.intents.path, isolation_level=None, check_same_thread=False)  # fmt: skip
    try:
        # While the scheduler acts, another writer takes the intent database.
        env.runtime.on_alert_hook = lambda: blocker.execute("BEGIN EXCLUSIVE")
        r = await env.client.post(ALERTS_PATH, json=notification(), headers=auth("alertmanager"))
        assert r.status == 200
        for _ in range(500):
            if any("settling 1 intent(s) failed" in m for m in caplog.messages):
                break
            await asyncio.sleep(0.01)
        assert any("settling 1 intent(s) failed" in m for m in caplog.messages)
        assert env.service.intents.states() == {"pending": 1}
        blocker.execute("ROLLBACK")
        await settle(env)
        assert env.service.intents.states() == {"done": 1}
        assert len(env.runtime.alerts) == 1
    finally:
        blocker.close()
        await env.client.close()


async def test_intents_recorded_before_the_startup_read_are_acted_on_once(
    tmp_path: Path,
) -> None:
    """The worker skips handed-over intents that its startup read of the table already has."""
    from aiohttp.test_utils import TestClient, TestServer
    from service_testkit import FakeRuntime, make_stack

    from scheduler.service.app import SERVICE, build_app
    from scheduler.service.payload import actionable_pairs, intent_for, parse_notification

    st_ = make_stack()
    rt = FakeRuntime(st_)
    app = build_app(st_, rt, audit_path=tmp_path / "audit.db", registry=CollectorRegistry())
    svc = app[SERVICE]

    def record(*fingerprints: str):  # type: ignore[no-untyped-def]
        doc = notification(*(am_alert(fingerprint=f) for f in fingerprints))
        alerts = parse_notification(json.dumps(doc).encode()).alerts
        return svc.intents.record([intent_for(a, actionable_pairs(st_)) for a in alerts], 0.0)

    early = record("e1", "e2")
    svc.worker.submit(early, 0.0)  # handed over before the worker has read the table
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        late = record("e3")
        svc.worker.submit(early + late, 0.0)  # e1 and e2 again: the read had them
        env = Env(client=client, runtime=rt, service=svc, stack=st_, tmp=tmp_path)
        await settle(env)
        cids = [i.correlation_id for _, i in early + late]
        assert [a["cid"] for a in rt.alerts] == cids
        assert svc.intents.states() == {"done": 3}
    finally:
        await client.close()


async def test_a_bug_in_the_worker_is_logged_and_does_not_stop_it(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    worker = env.service.worker
    write_owed = worker._write_owed
    calls = []

    def broken_once() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        write_owed()

    worker._write_owed = broken_once  # type: ignore[method-assign]
    r = await env.client.post(ALERTS_PATH, json=notification(), headers=auth("alertmanager"))
    assert r.status == 200
    await settle(env)
    assert any("intent worker step failed" in m for m in caplog.messages)
    assert len(env.runtime.alerts) == 1 and env.service.intents.states() == {"done": 1}
    health = await env.client.get("/healthz")
    assert health.status == 200


async def test_healthz_is_503_when_the_intent_worker_is_not_running(env: Env) -> None:
    assert env.service.worker.stop(timeout=5.0)
    r = await env.client.get("/healthz")
    assert r.status == 503 and (await r.json())["error"] == "intent worker stopped"


@pytest.mark.parametrize("audited_before_the_crash", [False, True])
async def test_restart_settles_interrupted_intents_once(
    tmp_path: Path, audited_before_the_crash: bool
) -> None:
    """Intents still pending after a crash: done if their decision exists, else acted on once;
    a decision the crash kept out of the audit log is recorded then, and only then."""
    from aiohttp.test_utils import TestClient, TestServer
    from service_testkit import FakeRuntime, make_stack

    from scheduler.audit import AuditLog
    from scheduler.service.app import SERVICE, build_app
    from scheduler.service.intents import IntentQueue
    from scheduler.service.payload import actionable_pairs, intent_for, parse_notification
    from scheduler.service.records import decision_entry

    st = make_stack()
    q = IntentQueue(tmp_path / "audit-intents.db")
    alerts = parse_notification(
        json.dumps(notification(am_alert(fingerprint="d1"), am_alert(fingerprint="d2"))).encode()
    ).alerts
    (_, first), (_, second) = q.record([intent_for(a, actionable_pairs(st)) for a in alerts], 0.0)
    q.close()
    # The first one was acted on (its decision is in the runtime's store), then the
    # process died before the queue row was settled.
    rt = FakeRuntime(st)
    (decided,) = rt.on_alert(
        pool="p0-risk", action="rebalance", firing=True, correlation_id=first.correlation_id
    )
    if audited_before_the_crash:
        log = AuditLog(tmp_path / "audit.db")
        log.append(decision_entry(decided, "alertmanager"))
        log.close()
    app = build_app(st, rt, audit_path=tmp_path / "audit.db", registry=CollectorRegistry())
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        svc = app[SERVICE]
        import asyncio

        for _ in range(500):
            if svc.intents.states() == {"done": 2}:
                break
            await asyncio.sleep(0.01)
        assert svc.intents.states() == {"done": 2}
        assert [a["cid"] for a in rt.alerts] == [first.correlation_id, second.correlation_id]
        await settle(Env(client=client, runtime=rt, service=svc, stack=st, tmp=tmp_path))
        recovered = svc.audit.query(operation="alert.recovered")
        assert [r.correlation_id for r in recovered] == [first.correlation_id]
        ops = [r.operation for r in svc.audit.query(correlation_id=first.correlation_id)]
        assert ops.count("decision.rebalance") == 1
    finally:
        await client.close()


_labels = st.dictionaries(
    st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,10}", fullmatch=True) | st.text(max_size=5),
    st.text(max_size=10) | st.integers(),
    max_size=4,
)
_alert = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["firing", "resolved", "x"]) | st.integers(),
        "labels": _labels | st.just({"action": "rebalance", "pool": "p0-risk"}),
        "annotations": _labels,
        "startsAt": st.sampled_from(["2026-01-01T00:00:00Z", "2026-13-01T00:00:00Z", ""])
        | st.text(max_size=30),
        "endsAt": st.just("0001-01-01T00:00:00Z") | st.text(max_size=5),
        "fingerprint": st.from_regex(r"[0-9a-f]{1,16}", fullmatch=True) | st.text(max_size=5),
        "generatorURL": st.text(max_size=10),
        "bogus": st.none(),
    },
)
_payload = st.fixed_dictionaries(
    {},
    optional={
        "version": st.sampled_from(["4", "3", 4]),
        "groupKey": st.text(max_size=10),
        "status": st.sampled_from(["firing", "resolved", None]),
        "receiver": st.text(max_size=10),
        "truncatedAlerts": st.integers(-2, 3) | st.booleans(),
        "groupLabels": _labels,
        "commonLabels": _labels,
        "commonAnnotations": _labels,
        "externalURL": st.text(max_size=10),
        "alerts": st.lists(_alert, max_size=3) | st.text(max_size=3),
    },
) | st.recursive(st.none() | st.booleans() | st.floats() | st.text(), st.lists, max_leaves=5)


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(doc=_payload)
async def test_fuzzed_payloads_never_5xx_or_log_errors(
    env: Env, doc: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    r = await env.client.post(
        ALERTS_PATH, data=json.dumps(doc).encode(), headers=auth("alertmanager")
    )
    assert r.status in (200, 400), await r.text()
    body = await r.json()
    assert ("reason" in body) == (r.status == 400)
    assert not [rec for rec in caplog.records if rec.levelno >= logging.WARNING]


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(raw=st.binary(max_size=300))
async def test_fuzzed_bytes_never_5xx(env: Env, raw: bytes) -> None:
    r = await env.client.post(ALERTS_PATH, data=raw, headers=auth("alertmanager"))
    assert r.status == 400


async def test_retention_archives_audit_and_prunes_settled_keys(tmp_path: Path) -> None:
    cfg = ServiceConfig(
        webhook_rate=RateLimit(1e6, 1e6),
        audit_archive_after_seconds=0.0,
        intent_key_retention_seconds=0.0,
    )
    env = await start_env(tmp_path, cfg)
    try:
        r = await env.client.post(ALERTS_PATH, json=notification(), headers=auth("alertmanager"))
        assert r.status == 200
        await settle(env)
        env.service.maintain()
        assert (tmp_path / "audit-archive.db").exists()
        assert env.service.audit.query() == []  # everything older than "now" moved
        r = await env.client.get("/api/v1/audit/verify", headers=auth("admin"))
        body = await r.json()
        assert body["ok"] and body["checked"] >= 4, body
        # A pruned alert state is forgotten: a replay now acts again (hence the long default).
        assert env.service.intents.states() == {}
        r = await env.client.post(ALERTS_PATH, json=notification(), headers=auth("alertmanager"))
        assert (await r.json())["queued"] == 1
        await settle(env)
        assert len(env.runtime.alerts) == 2
    finally:
        await env.client.close()


@pytest.mark.parametrize("order", sorted(set(itertools.permutations("FFRR"))), ids="".join)
async def test_alert_states_from_two_senders_in_any_order(env: Env, order: tuple[str, ...]) -> None:
    """HA Alertmanager peers (which format the same instant differently) and late retries:
    once the resolved state is recorded, a firing of the same alert is recorded and ignored,
    so a pool is never left "firing" with GPUs that do not go back."""
    starts = {"A": "2026-11-28T09:15:00.5Z", "B": "2026-11-28T10:15:00.500+01:00"}
    for i, s in enumerate(order):
        sender = "AB"[i % 2]
        status = "firing" if s == "F" else "resolved"
        doc = notification(am_alert(status=status, starts_at=starts[sender]), status=status)
        r = await env.client.post(ALERTS_PATH, json=doc, headers=auth("alertmanager"))
        assert r.status == 200
    await settle(env)
    expected = ([True] if order[0] == "F" else []) + [False]
    assert [a["firing"] for a in env.runtime.alerts] == expected
    late = env.service.audit.query(operation="alert.ignored")
    assert [r.reason for r in late] == ([] if order[0] == "F" else [LATE_FIRING])
