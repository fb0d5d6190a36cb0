"""SIGKILL the scheduler at random points during 100 rebalances, restart it, and check the books.

The server is the real ``serve`` (real runtime, SQLite state, audit log) in a
child process. The client plays Alertmanager: 100 alerts fire and resolve, one
notification each; a refused or broken delivery is sent again after a restart,
as Alertmanager retries. Meanwhile the process is killed (SIGKILL) a few times
at random moments, sometimes in the middle of a request or of an action.

Afterwards: every alert state was acted on exactly once, no job was lost, no
GPU is held by two jobs, and the audit chain verifies.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from service_testkit import ROOT, TOKENS, am_alert, notification

from deploy.procs import free_port
from scheduler.audit import verify

ALERTS = 100
KILLS = 5
SEED = 4

RUNNER = """
import asyncio, dataclasses, sys
sys.path.insert(0, {testdir!r})
from service_testkit import make_stack
from scheduler.service.app import serve

stack = make_stack().with_timing(
    scrape_interval_seconds=1.0, latency_alert_for_seconds=1.0, group_wait_seconds=0.1,
    group_interval_seconds=1.0, return_stabilization_seconds=0.0,
)
stack = dataclasses.replace(
    stack, policy=dataclasses.replace(stack.policy, min_runtime_seconds=0.0, default_grace_seconds=0.0)
)
asyncio.run(serve(stack, "127.0.0.1", {port}, state_dir={state!r}))
"""


class Server:
    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state = tmp / "state"
        self.script = tmp / "run_scheduler.py"
        self.script.write_text(
            RUNNER.format(testdir=str(Path(__file__).parent), port=self.port, state=str(self.state))
        )
        self.log = (tmp / "scheduler.log").open("ab")
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = subprocess.Popen(
            [sys.executable, str(self.script)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, "scheduler exited on start"
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2):  # noqa: S310
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError("scheduler not ready after 60 s")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.kills += 1

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def call(self, method: str, path: str, role: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method)  # noqa: S310
        req.add_header("Authorization", f"Bearer {TOKENS[role]}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")


def deliver(
    server: Server,
    body: dict[str, Any],
    kill_after: float | None,
    *,
    method: str = "POST",
    path: str = "/api/v1/alerts",
    role: str = "alertmanager",
    answers: tuple[int, ...] = (),
) -> int:
    """Send until an answer, restarting a dead server (Alertmanager retries 5xx and errors):
    a 2xx, or one of ``answers`` (a retried API call may find its first attempt went
    through)."""
    for _attempt in range(20):
        if not server.alive():
            server.start()
        timer = None
        if kill_after is not None:
            timer = threading.Timer(kill_after, server.kill)
            timer.start()
            kill_after = None  # one kill per delivery
        try:
            status, _ = server.call(method, path, role, body)
        except OSError:
            status = 0  # killed mid-request
        if timer is not None:
            timer.join()
        if 200 <= status < 300 or status in answers:
            return status
        assert status in (0, 503), status
    raise AssertionError("notification never accepted")


@pytest.mark.timeout(240)
def test_sigkill_during_rebalances_loses_and_doubles_nothing(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    server = Server(tmp_path)
    server.start()
    try:
        jobs = [f"batch-{i}" for i in range(4)] + [f"train-{i}" for i in range(4)]
        for j in jobs:
            pool = "p2-batch" if j.startswith("batch") else "p1-train"
            body = {"id": j, "pool": pool, "gpus": 2, "kind": "training", "checkpointable": True}
            status, _ = server.call("POST", "/api/v1/jobs", "operator", body)
            assert status == 200, status

        deliveries = []
        for i in range(ALERTS):
            starts = f"2026-11-28T10:{i // 60:02d}:{i % 60:02d}Z"
            fp = f"{i + 1:08x}"
            deliveries.append(notification(am_alert(fingerprint=fp, starts_at=starts)))
            deliveries.append(
                notification(
                    am_alert(fingerprint=fp, starts_at=starts, status="resolved"), status="resolved"
                )
            )
        kill_at = set(rng.sample(range(len(deliveries)), KILLS))
        for n, body in enumerate(deliveries):
            deliver(server, body, rng.uniform(0.0, 0.02) if n in kill_at else None)
            # Alertmanager resends a group on its next flush: a replay after every delivery.
            deliver(server, body, None)

        deadline = time.monotonic() + 60
        while True:
            _, health = server.call("GET", "/healthz", "viewer")
            if health["pending_intents"] == 0:
                break
            assert time.monotonic() < deadline, "intents still pending after 60 s"
            time.sleep(0.1)

        _, decisions = server.call("GET", "/api/v1/decisions?limit=10000", "viewer")
        _, listed = server.call("GET", "/api/v1/jobs", "viewer")
    finally:
        server.stop()

    # The run did what it claims: killed and restarted, and GPUs really moved.
    assert (server.kills, server.starts) == (KILLS, KILLS + 1)
    moved = Counter((d["action"], d["result"]) for d in decisions)
    assert moved[("rebalance", "ok")] >= 2 and moved[("preempt", "ok")] >= 1, moved
    # Every alert state acted on exactly once: one "alert.<action>" outcome per correlation id
    # in the runtime's own decisions, none repeated.
    by_alert = Counter(
        (d["correlation_id"], d["action"], d.get("job"), tuple(d.get("gpu_ids", ())))
        for d in decisions
        if str(d.get("correlation_id", "")).startswith("am-")
    )
    assert by_alert, "no alert decisions recorded"
    assert max(by_alert.values()) == 1, [k for k, v in by_alert.items() if v > 1][:5]
    alert_cids = {k[0] for k in by_alert}
    assert len(alert_cids) == 2 * ALERTS
    # No job lost.
    assert {j for j in jobs} <= {j["id"] for j in listed}
    # No GPU held by two jobs.
    held = [g for j in listed for g in j.get("gpu_ids", [])]
    assert len(held) == len(set(held))
    # The audit chain survived every kill.
    res = verify(server.state / "audit.db")
    assert res.ok, str(res)
