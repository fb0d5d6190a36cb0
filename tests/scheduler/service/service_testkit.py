"""Shared helpers: a stack with known tokens, a recording fake runtime, a running test app,
Alertmanager payloads. Imported by conftest.py (fixtures) and by the tests."""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from deploy.stack import Stack, User, load_stack
from scheduler.core.errors import StoreUnavailable, UnknownJob, UnknownPool
from scheduler.core.model import Action, Decision, JobRequest, PoolView, ReservationView, Result
from scheduler.service.app import SERVICE, Service, ServiceConfig, build_app
from scheduler.service.auth import hash_token
from scheduler.store.sqlite import Actor

ROOT = Path(__file__).resolve().parents[3]
TOKENS = {
    "viewer": "tok-viewer-0123456789",
    "operator": "tok-operator-0123456789",
    "admin": "tok-admin-0123456789",
    "alertmanager": "tok-alertmanager-0123456789",
}
USERS = {role: f"test-{role}" for role in TOKENS}
USERS["alertmanager"] = "alertmanager"


def make_stack() -> Stack:
    stack = load_stack(ROOT / "deploy" / "stack.yaml")
    users = tuple(User(USERS[r], r, hash_token(t)) for r, t in TOKENS.items())
    return dataclasses.replace(stack, users=users)


def auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[role]}"}


class FakeRuntime:
    """Records every call; decisions carry the correlation id like the real runtime's."""

    def __init__(self, stack: Stack) -> None:
        self.pool_names = {p.name for p in stack.pools}
        self.alerts: list[dict[str, Any]] = []
        self.calls: list[tuple[str, Any]] = []
        self._decisions: list[Decision] = []
        self._ids = itertools.count(1)
        self.fail_store = False
        self.jobs_by_id: dict[str, JobRequest] = {}
        self._policy: dict[str, Any] = {"dry_run": False, "rebalance_step_gpus": 8}
        self.on_alert_hook: Callable[[], None] | None = None
        self.actor: Actor | None = None
        self.actors: dict[str, Actor] = {}
        self.audited: set[str] = set()
        self.rates: list[tuple[str, float | None]] = []  # (model, rate) each alert carried
        self.loads: list[tuple[str, float | None]] = []  # the load poller's reports

    def report_load(self, model: str, rate_rps: float | None) -> list[Decision]:
        self.loads.append((model, rate_rps))
        return []

    def _decide(self, action: Action, pool: str, cid: str) -> Decision:
        d = Decision(f"d{next(self._ids)}", time.time(), action, pool, Result.OK, "test", 8, correlation_id=cid)  # fmt: skip
        self._decisions.append(d)
        if self.actor is not None:
            self.actors[d.id] = self.actor
        return d

    def _pool(self, pool: str) -> None:
        if pool not in self.pool_names:
            raise UnknownPool(pool)

    def on_alert(self, *, pool: str, action: str, firing: bool, correlation_id: str,
                 model: str = "", rate_rps: float | None = None) -> list[Decision]:  # fmt: skip
        if self.fail_store:
            raise StoreUnavailable("disk gone")
        if self.on_alert_hook is not None:
            self.on_alert_hook()
        self.alerts.append(
            {"pool": pool, "action": action, "firing": firing, "cid": correlation_id}
        )
        self.rates.append((model, rate_rps))
        # The real runtime's decisions for an alert's action: grow the pool, or scale it.
        kind = Action.SCALE_UP if action == "scale" else Action.REBALANCE
        return [self._decide(kind if firing else Action.RETURN, pool, correlation_id)]

    def tick(self) -> list[Decision]:
        return []

    def checkpoint(self) -> None:
        return None

    def pools(self) -> list[PoolView]:
        return [
            PoolView(n, "P2", 100, *([0] * 14), gpu_seconds_lost=0.0, firing=False, return_at=None)
            for n in sorted(self.pool_names)
        ]

    def jobs(self, pool: str | None = None, state: str | None = None) -> Any:
        return [{"id": j.id, "pool": j.pool} for j in self.jobs_by_id.values()]

    def queues(self) -> Any:
        return []

    def decisions(self, limit: int = 100) -> Any:
        return [d.to_dict() for d in self._decisions[-limit:]]

    def reservations(self) -> list[ReservationView]:
        return []

    def submit(self, req: JobRequest, *, correlation_id: str = "") -> tuple[Any, list[Decision]]:
        self._pool(req.pool)
        self.jobs_by_id[req.id] = req
        self.calls.append(("submit", req.id))
        return {"id": req.id, "state": "queued"}, [
            self._decide(Action.PLACE, req.pool, correlation_id)
        ]

    @contextlib.contextmanager
    def acting_as(self, actor: Actor | None) -> Iterator[None]:
        before, self.actor = self.actor, actor
        try:
            yield
        finally:
            self.actor = before

    def unaudited(self) -> list[tuple[Decision, Actor | None]]:
        return [(d, self.actors.get(d.id)) for d in self._decisions if d.id not in self.audited]

    def mark_audited(self, ids: list[str]) -> None:
        self.audited.update(ids)

    def decisions_for(self, correlation_ids: Collection[str]) -> dict[str, list[Decision]]:
        out: dict[str, list[Decision]] = {}
        for d in self._decisions:
            if d.correlation_id in correlation_ids:
                out.setdefault(d.correlation_id, []).append(d)
        return out

    def cancel_job(self, job_id: str, *, correlation_id: str = "") -> list[Decision]:
        if job_id not in self.jobs_by_id:
            raise UnknownJob(job_id)
        self.calls.append(("cancel", job_id))
        return [self._decide(Action.CANCEL, self.jobs_by_id[job_id].pool, correlation_id)]

    def report_checkpoint(self, job_id: str, at: float | None = None) -> None:
        if job_id not in self.jobs_by_id:
            raise UnknownJob(job_id)
        self.calls.append(("checkpoint", job_id))

    def ack_preemption(self, job_id: str) -> list[Decision]:
        if job_id not in self.jobs_by_id:
            raise UnknownJob(job_id)
        self.calls.append(("ack", job_id))
        return []

    def manual_rebalance(self, pool: str, gpus: int, correlation_id: str) -> list[Decision]:
        self._pool(pool)
        self.calls.append(("rebalance", pool))
        return [self._decide(Action.REBALANCE, pool, correlation_id)]

    def manual_scale(self, pool: str, delta_nodes: int, correlation_id: str) -> list[Decision]:
        self._pool(pool)
        self.calls.append(("scale", pool))
        return [
            self._decide(
                Action.SCALE_UP if delta_nodes > 0 else Action.SCALE_DOWN, pool, correlation_id
            )
        ]

    def set_policy(self, **fields: Any) -> list[Decision]:
        self._policy.update(fields)
        self.calls.append(("policy", fields))
        return []

    def policy(self) -> Any:
        return dict(self._policy)


@dataclasses.dataclass
class Env:
    client: TestClient  # type: ignore[type-arg]
    runtime: FakeRuntime
    service: Service
    stack: Stack
    tmp: Path


async def start_env(tmp: Path, config: ServiceConfig | None = None) -> Env:
    st = make_stack()
    rt = FakeRuntime(st)
    app = build_app(
        st, rt, audit_path=tmp / "audit.db", registry=CollectorRegistry(), config=config
    )
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    return Env(client, rt, app[SERVICE], st, tmp)


def am_alert(
    *,
    fingerprint: str = "a1b2c3d4e5f60718",
    status: str = "firing",
    starts_at: str = "2026-11-28T09:15:00.123456789Z",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "status": status,
        "labels": {
            "alertname": "RiskScorerLatencyHigh",
            "action": "rebalance",
            "pool": "p0-risk",
            **(labels or {}),
        },
        "annotations": {"summary": "p99 above 50 ms"},
        "startsAt": starts_at,
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": fingerprint,
    }


def notification(*alerts: dict[str, Any], status: str = "firing") -> dict[str, Any]:
    return {
        "version": "4",
        "groupKey": '{}:{alertname="RiskScorerLatencyHigh"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "scheduler",
        "groupLabels": {"alertname": "RiskScorerLatencyHigh"},
        "commonLabels": {"alertname": "RiskScorerLatencyHigh"},
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": list(alerts) or [am_alert()],
    }


async def settle(env: Env, timeout: float = 10.0) -> None:
    """Wait until the intent worker has drained the queue (bounded)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while env.service.intents.pending() and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert env.service.intents.pending() == 0, "intent worker did not drain the queue"
    # The worker's audit records are queued with the settling write: wait for them too.
    await env.service.audit_commit.flush()
