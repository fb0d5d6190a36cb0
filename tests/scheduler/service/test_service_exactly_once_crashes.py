"""Mixed workloads with SIGKILLs: every decision audited exactly once, every intent received.

Hypothesis draws a workload of alerts (firing and resolved, replayed), job
submissions and cancellations, manual rebalances and scale-ups, pauses (the
scheduler's own ticks decide too: placements, releases, node joins) and kills
at random moments, some in the middle of a request. The real ``serve`` runs in
a child process (``test_service_crash.Server``); a refused or broken request is
sent again after a restart, as Alertmanager and a careful client do.

Afterwards, read from the databases themselves: the decisions table and the
``decision.*`` audit records match one to one, every alert state in the
intent queue has exactly one receipt (``alert.queued`` or ``alert.ignored``),
and the chain verifies.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from service_testkit import am_alert, notification
from test_service_crash import Server, deliver

from scheduler.audit import verify

POOLS = ("p1-train", "p2-batch")
JOBS = tuple(f"job-{i}" for i in range(5))

_alert = st.tuples(st.just("alert"), st.integers(0, 3), st.booleans())
_submit = st.tuples(st.just("submit"), st.sampled_from(JOBS), st.sampled_from(POOLS),
                    st.integers(1, 4))  # fmt: skip
_cancel = st.tuples(st.just("cancel"), st.sampled_from(JOBS))
_rebalance = st.tuples(st.just("rebalance"), st.integers(1, 8))
_scale = st.tuples(st.just("scale"), st.sampled_from(POOLS))
_pause = st.tuples(st.just("pause"), st.floats(0.0, 0.6))
_kill = st.tuples(st.just("kill"), st.floats(0.0, 0.03))
OPS = st.lists(
    st.one_of(_alert, _alert, _submit, _submit, _cancel, _rebalance, _scale, _pause, _kill),
    min_size=6,
    max_size=14,
).filter(lambda ops: sum(op[0] == "kill" for op in ops) <= 2)


def _alert_body(fp: int, firing: bool) -> dict[str, Any]:
    status = "firing" if firing else "resolved"
    alert = am_alert(fingerprint=f"{fp + 1:08x}", status=status,
                     starts_at=f"2026-11-28T10:00:{fp:02d}Z")  # fmt: skip
    return notification(alert, status=status)


def _request(op: tuple[Any, ...]) -> tuple[str, str, str, Any]:
    kind = op[0]
    if kind == "alert":
        return "POST", "/api/v1/alerts", "alertmanager", _alert_body(op[1], op[2])
    if kind == "submit":
        body = {"id": op[1], "pool": op[2], "gpus": op[3], "kind": "training",
                "checkpointable": True}  # fmt: skip
        return "POST", "/api/v1/jobs", "operator", body
    if kind == "cancel":
        return "DELETE", f"/api/v1/jobs/{op[1]}", "operator", None
    if kind == "rebalance":
        return "POST", "/api/v1/pools/p0-risk/rebalance", "operator", {"gpus": op[1]}
    return "POST", f"/api/v1/pools/{op[1]}/scale", "operator", {"delta_nodes": 1}


def _send(server: Server, op: tuple[Any, ...], kill_after: float | None) -> None:
    method, path, role, body = _request(op)
    deliver(server, body, kill_after, method=method, path=path, role=role, answers=(404, 409))


def _check_books(state: Path) -> None:
    db = sqlite3.connect(state / "scheduler.db")
    decided = [r[0] for r in db.execute("SELECT id FROM decisions")]
    db.close()
    audit = sqlite3.connect(state / "audit.db")
    records = list(audit.execute("SELECT operation, params FROM audit"))
    audit.close()
    intents = sqlite3.connect(state / "audit-intents.db")
    keys = [r[0] for r in intents.execute("SELECT key FROM alerts")]
    intents.close()

    audited = Counter(json.loads(p)["decision"] for op, p in records if op.startswith("decision."))
    assert decided, "the workload decided nothing"
    assert set(audited) == set(decided), (set(decided) - set(audited), set(audited) - set(decided))
    assert max(audited.values()) == 1, [d for d, n in audited.items() if n > 1]
    received = Counter(
        json.loads(p)["key"] for op, p in records if op in ("alert.queued", "alert.ignored")
    )
    assert set(received) == set(keys)
    assert not keys or max(received.values()) == 1
    res = verify(state / "audit.db")
    assert res.ok, str(res)


@pytest.mark.timeout(600)
@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
def test_mixed_workloads_with_kills_audit_every_decision_once(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[Any, ...]]
) -> None:
    tmp = tmp_path_factory.mktemp("books")
    server = Server(tmp)
    try:
        kill_next: float | None = None
        for op in ops:
            if op[0] == "kill":
                kill_next = op[1]
                continue
            if op[0] == "pause":
                if not server.alive():
                    server.start()
                time.sleep(op[1])
                continue
            _send(server, op, kill_next)
            kill_next = None
        # The last start reconciles what the last kill left; a clean stop flushes the rest.
        if not server.alive():
            server.start()
        deadline = time.monotonic() + 60
        while server.call("GET", "/healthz", "viewer")[1]["pending_intents"]:
            assert time.monotonic() < deadline, "intents still pending after 60 s"
            time.sleep(0.05)
    finally:
        server.stop()
    _check_books(server.state)
