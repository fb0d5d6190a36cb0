"""GET /api/v1/audit/verify is held to the same tampering scenarios as the library and the CLI:
an endpoint that always said "ok" fails here."""

from __future__ import annotations

from pathlib import Path

import pytest
from service_testkit import auth, start_env
from tamper_kit import SCENARIOS, Scenario, StepClock, fill

from scheduler.audit import AuditLog, ChainPoint

VERIFY = "/api/v1/audit/verify"


def _prefilled(tmp_path: Path) -> ChainPoint:
    log = AuditLog(tmp_path / "audit.db", clock=StepClock())
    head = fill(log)
    log.close()
    return head


async def test_an_intact_log_verifies_with_and_without_its_published_head(tmp_path: Path) -> None:
    head = _prefilled(tmp_path)
    env = await start_env(tmp_path)
    try:
        for params in ({}, {"head": str(head)}):
            r = await env.client.get(VERIFY, params=params, headers=auth("admin"))
            body = await r.json()
            assert r.status == 200 and body["ok"] is True, body
            assert body["head_seq"] >= head.seq and body["bad_seq"] is None
    finally:
        await env.client.close()


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
async def test_tampering_is_reported_at_the_right_record(
    tmp_path: Path, scenario: Scenario
) -> None:
    head = _prefilled(tmp_path)
    scenario.tamper(tmp_path / "audit.db")
    env = await start_env(tmp_path)
    try:
        r = await env.client.get(VERIFY, params={"head": str(head)}, headers=auth("admin"))
        body = await r.json()
        assert r.status == 200, body
        assert body["ok"] is False and body["bad_seq"] == scenario.bad_seq, body
        assert body["summary"].startswith(f"TAMPERED at record {scenario.bad_seq}")
        rec = env.service.audit.query(operation="audit.verify")[-1]
        assert '"ok":false' in rec.params
    finally:
        await env.client.close()


async def test_a_malformed_published_head_is_a_400(tmp_path: Path) -> None:
    env = await start_env(tmp_path)
    try:
        for value in ("10", "10:abc", "x:" + "0" * 64):
            r = await env.client.get(VERIFY, params={"head": value}, headers=auth("admin"))
            assert r.status == 400, value
    finally:
        await env.client.close()
