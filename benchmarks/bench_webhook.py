"""Webhook throughput and latency on loopback, with bearer auth and fsynced persistence.

The scheduler service runs in a child process (``serve`` mode of this script:
the real ``build_app`` over the real ``SchedulerRuntime``, SQLite on disk, FULL
sync); this process drives it with ``httpload``, a light HTTP/1.1 load
generator (an aiohttp client would spend as much CPU as the server it
measures, on the same two cores).

Scenarios, side by side in one run:
- ``new @1000/s``: the goal's load, open loop: a notification with a new,
  actionable alert state every millisecond, each latency counted from its
  scheduled start. Each one is authenticated, validated, persisted (intent +
  audit), answered, then acted on (runtime decision, store, actuator, audit).
  Run ``--repeat`` times: shared machines are noisy, every run is printed.
- ``new, closed``: the same at a fixed concurrency, as fast as answers come;
- ``replay``: the same notification again and again (the dedupe path: what
  Alertmanager's group resends and HA peers cost);
- ``ignored``: alerts without action labels (recorded, never acted on).

Goals (issue 4): >= 1,000 notifications/s with p99 <= 20 ms, and request
received -> actuator called p99 <= 10 ms. The child records, for every alert it
acts on, when the runtime was called and when the actuator was first called
with a decision carrying the alert's correlation id; the request's arrival
time comes from the intent queue.

The webhook's per-source rate limit is raised for the run: every request here
comes from one address, and the limit is about shedding floods, not speed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpload  # noqa: E402

from deploy.procs import free_port  # noqa: E402
from deploy.stack import User, load_stack  # noqa: E402
from scheduler.service.auth import hash_token  # noqa: E402

TOKEN = "bench-alertmanager-token"  # the child gets only its hash
N = 5000
WARM = 4000
CONCURRENCY = 16
RATE = 1000.0


def pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


# --------------------------------------------------------------------------- child: the server


def serve_child(port: int, workdir: Path) -> None:
    from aiohttp import web
    from prometheus_client import CollectorRegistry

    from scheduler.runtime import SchedulerRuntime
    from scheduler.service.app import ServiceConfig, build_app, tune_process
    from scheduler.service.ratelimit import RateLimit

    stack = load_stack(ROOT / "deploy" / "stack.yaml")
    stack = dataclasses.replace(
        stack, users=(User("alertmanager", "alertmanager", hash_token(TOKEN)),)
    )
    called: dict[str, float] = {}  # correlation id -> runtime called
    actuated: dict[str, float] = {}  # correlation id -> actuator first called

    registry = CollectorRegistry()
    runtime = SchedulerRuntime.from_stack(
        stack, db_path=workdir / "scheduler.db", registry=registry
    )
    inner_on_alert = runtime.on_alert
    inner_apply = runtime.actuator.apply

    def on_alert(*, pool: str, action: str, firing: bool, correlation_id: str) -> Any:
        called[correlation_id] = time.time()
        return inner_on_alert(
            pool=pool, action=action, firing=firing, correlation_id=correlation_id
        )

    def apply(decision: Any, job: Any) -> None:
        actuated.setdefault(decision.correlation_id, time.time())
        inner_apply(decision, job)

    runtime.on_alert = on_alert  # type: ignore[method-assign]
    runtime.actuator.apply = apply  # type: ignore[method-assign]
    app = build_app(
        stack,
        runtime,
        audit_path=workdir / "audit.db",
        registry=registry,
        config=ServiceConfig(webhook_rate=RateLimit(1e6, 1e6)),
    )

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        tune_process()  # as serve() does
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())
    runtime.close()
    (workdir / "calls.json").write_text(json.dumps({"called": called, "actuated": actuated}))


# --------------------------------------------------------------------------- parent: the load


def notification(i: int, *, actionable: bool, alertname: str = "RiskScorerLatencyHigh") -> bytes:
    """One Alertmanager v4 notification; ``i`` makes its alert state new. The alertname
    tells the scenarios apart in the intent queue (the action labels alone choose the action)."""
    labels = {"alertname": alertname, "model": "risk-scorer"}
    if actionable:
        labels |= {"action": "rebalance", "pool": "p0-risk"}
    alert = {
        "status": "firing",
        "labels": labels,
        "annotations": {"summary": "p99 above 50 ms"},
        "startsAt": f"2026-11-28T09:{i // 60 % 60:02d}:{i % 60:02d}.{i:09d}Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": f"{i:016x}",
    }
    doc = {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{alertname}"}}',
        "truncatedAlerts": 0,
        "status": "firing",
        "receiver": "novabrain-scheduler",
        "groupLabels": {"alertname": alertname},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [alert],
    }
    return json.dumps(doc).encode()


async def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            with contextlib.suppress(aiohttp.ClientError):
                async with s.get(base + "/healthz") as r:
                    if r.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise SystemExit("server not ready after 60 s")


async def drained(base: str) -> None:
    """Until every intent is acted on and settled (so one scenario's work ends before the next)."""
    deadline = time.monotonic() + 120
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            async with s.get(base + "/healthz") as r:
                if (await r.json())["pending_intents"] == 0:
                    return
            await asyncio.sleep(0.1)
    raise SystemExit("intent queue not drained after 120 s")


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process, all its threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(name: str, res: httpload.Result, server_cpu: float) -> None:
    lat, n = res.latencies, len(res.latencies)
    print(
        f"{name:<16} {n:>6} req {n / res.wall_seconds:>6.0f} req/s   p50 {pct(lat, 0.5) * 1e3:6.2f} ms"
        f"   p99 {pct(lat, 0.99) * 1e3:6.2f} ms   max {max(lat) * 1e3:7.2f} ms"
        f"   server CPU {server_cpu / n * 1e3:.2f} ms/req   codes {res.codes}"
    )


async def run(workdir: Path, repeat: int, n: int) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), str(workdir)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}

    def requests(bodies: list[bytes]) -> list[bytes]:
        return [httpload.post("127.0.0.1", port, "/api/v1/alerts", b, headers) for b in bodies]

    def new(scenario: str, first: int) -> list[bytes]:
        return requests(
            [notification(first + i, actionable=True, alertname=scenario) for i in range(n)]
        )

    async def measure(name: str, load: Any) -> None:
        c0 = cpu_seconds(proc.pid)
        res = await load
        await drained(base)
        report(name, res, cpu_seconds(proc.pid) - c0)

    scenarios: list[str] = []
    try:
        await wait_ready(base, proc)
        print(f"webhook bench: {n} notifications per scenario, bearer auth, SQLite FULL sync, "
              f"{os.cpu_count()} CPUs, load from httpload (open loop: latency from scheduled start)")  # fmt: skip
        # Warm-up, not counted: connections, caches, and the SQLite files' working size.
        # On a fresh state directory every fsync also grows a file (ext4 allocates and
        # journals new blocks): 20-40 ms stalls for the first few thousand alerts.
        warm = [notification(10**8 + i, actionable=True, alertname="Warm") for i in range(WARM)]
        await httpload.closed("127.0.0.1", port, requests(warm), CONCURRENCY)
        await drained(base)
        for k in range(repeat):
            name = f"new @{RATE:.0f}/s #{k + 1}"
            scenarios.append(name)
            await measure(name, httpload.paced("127.0.0.1", port, new(f"Paced{k}", k * n), RATE))
        name = f"new, {CONCURRENCY} conns"
        scenarios.append(name)
        load = httpload.closed("127.0.0.1", port, new("Closed", repeat * n), CONCURRENCY)
        await measure(name, load)
        replay = requests([notification(0, actionable=True, alertname="Paced0")])
        await measure("replay", httpload.closed("127.0.0.1", port, replay * n, CONCURRENCY))
        ignored = requests([notification(10**7 + i, actionable=False) for i in range(n)])
        await measure("ignored", httpload.closed("127.0.0.1", port, ignored, CONCURRENCY))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    calls = json.loads((workdir / "calls.json").read_text())
    db = sqlite3.connect(workdir / "audit-intents.db")
    rows = db.execute("SELECT correlation_id, received_at, alert FROM alerts").fetchall()
    db.close()
    print("received -> runtime called / -> actuator called, per acted-on alert:")
    for name, alertname in zip(
        scenarios, [f"Paced{k}" for k in range(repeat)] + ["Closed"], strict=True
    ):
        received = {cid: at for cid, at, alert in rows if alert == alertname}
        to_call = [calls["called"][c] - t for c, t in received.items() if c in calls["called"]]
        to_act = [calls["actuated"][c] - t for c, t in received.items() if c in calls["actuated"]]
        print(
            f"{name:<16} ({len(to_act)}):  runtime p50 {pct(to_call, 0.5) * 1e3:6.2f} ms"
            f"  p99 {pct(to_call, 0.99) * 1e3:6.2f} ms   actuator p50 {pct(to_act, 0.5) * 1e3:6.2f} ms"
            f"  p99 {pct(to_act, 0.99) * 1e3:6.2f} ms  max {max(to_act) * 1e3:7.2f} ms"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--serve", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    p.add_argument("--repeat", type=int, default=3, help="runs of the paced scenario (default 3)")
    p.add_argument("-n", type=int, default=N, help=f"notifications per scenario (default {N})")
    args = p.parse_args()
    if args.serve:
        serve_child(int(args.serve[0]), Path(args.serve[1]))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as d:
        asyncio.run(run(Path(d), args.repeat, args.n))
    return 0


if __name__ == "__main__":
    sys.exit(main())
