"""Webhook throughput and latency on loopback, with bearer auth and fsynced persistence.

The scheduler service runs in a child process (``serve`` mode of this script:
the real ``build_app`` over the real ``SchedulerRuntime``, SQLite on disk, FULL
sync); this process drives it with an aiohttp client at a fixed concurrency.

Scenarios, side by side in one run:
- ``new alert``: every notification carries a new alert state, so each one is
  authenticated, validated, persisted (intent + audit) and acted on;
- ``replay``: the same notification again and again (the dedupe path: what
  Alertmanager's group resends and HA peers cost);
- ``ignored``: alerts without action labels (recorded, never acted on).

Goals (issue 4): >= 1,000 notifications/s with p99 <= 20 ms, and request
received -> scheduler called p99 <= 10 ms. The child records, for every alert
it acts on, when the runtime was called and when the actuator was called; the
request's arrival time comes from the intent queue.

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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deploy.procs import free_port  # noqa: E402
from deploy.stack import User, load_stack  # noqa: E402
from scheduler.service.auth import hash_token  # noqa: E402

TOKEN = "bench-alertmanager-token"  # the child gets only its hash
N = 3000
CONCURRENCY = 16  # closed loop: as fast as the server answers
PACED_RATE = 1000.0  # open loop: the goal's rate


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
    from scheduler.service.app import ServiceConfig, build_app, tune_gc
    from scheduler.service.ratelimit import RateLimit

    stack = load_stack(ROOT / "deploy" / "stack.yaml")
    stack = dataclasses.replace(
        stack, users=(User("alertmanager", "alertmanager", hash_token(TOKEN)),)
    )
    calls: list[tuple[str, float, float]] = []  # (correlation id, runtime called, returned)

    registry = CollectorRegistry()
    runtime = SchedulerRuntime.from_stack(
        stack, db_path=workdir / "scheduler.db", registry=registry
    )
    inner_on_alert = runtime.on_alert

    def on_alert(*, pool: str, action: str, firing: bool, correlation_id: str) -> Any:
        t = time.time()
        out = inner_on_alert(pool=pool, action=action, firing=firing, correlation_id=correlation_id)
        calls.append((correlation_id, t, time.time()))
        return out

    runtime.on_alert = on_alert  # type: ignore[method-assign]
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
        tune_gc()  # as serve() does
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())
    runtime.close()
    (workdir / "calls.json").write_text(json.dumps(calls))


# --------------------------------------------------------------------------- parent: the load


def notification(i: int, *, actionable: bool, status: str = "firing") -> bytes:
    labels = {"alertname": "RiskScorerLatencyHigh", "model": "risk-scorer"}
    if actionable:
        labels |= {"action": "rebalance", "pool": "p0-risk"}
    alert = {
        "status": status,
        "labels": labels,
        "annotations": {"summary": "p99 above 50 ms"},
        "startsAt": f"2026-11-28T09:{i // 60 % 60:02d}:{i % 60:02d}.{i:09d}Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "http://127.0.0.1:9090/graph",
        "fingerprint": f"{i:016x}",
    }
    doc = {
        "version": "4",
        "groupKey": '{}:{alertname="RiskScorerLatencyHigh"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "novabrain-scheduler",
        "groupLabels": {"alertname": "RiskScorerLatencyHigh"},
        "commonLabels": labels,
        "commonAnnotations": {},
        "externalURL": "http://127.0.0.1:9093",
        "alerts": [alert],
    }
    return json.dumps(doc).encode()


async def load(url: str, bodies: list[bytes]) -> tuple[float, list[float], dict[int, int]]:
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    latencies: list[float] = []
    codes: dict[int, int] = {}
    it = iter(bodies)
    conn = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def worker() -> None:
            for body in it:
                t = time.perf_counter()
                async with s.post(url, data=body, headers=headers) as r:
                    await r.read()
                latencies.append(time.perf_counter() - t)
                codes[r.status] = codes.get(r.status, 0) + 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        wall = time.perf_counter() - t0
    return wall, latencies, codes


async def paced(
    url: str, bodies: list[bytes], rate: float
) -> tuple[float, list[float], dict[int, int]]:
    """Open loop: requests start on a fixed schedule whatever the answers take (Little's law
    cannot hide latency behind a small number of connections)."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    latencies: list[float] = []
    codes: dict[int, int] = {}
    conn = aiohttp.TCPConnector(limit=256)
    async with aiohttp.ClientSession(connector=conn) as s:

        async def one(body: bytes) -> None:
            t = time.perf_counter()
            async with s.post(url, data=body, headers=headers) as r:
                await r.read()
            latencies.append(time.perf_counter() - t)
            codes[r.status] = codes.get(r.status, 0) + 1

        tasks = []
        t0 = time.perf_counter()
        for i, body in enumerate(bodies):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(body)))
        await asyncio.gather(*tasks)
        wall = time.perf_counter() - t0
    return wall, latencies, codes


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


def report(name: str, wall: float, lat: list[float], codes: dict[int, int], cpu: float) -> None:
    n = len(lat)
    print(
        f"{name:<12} {n:>6} req  {n / wall:>6.0f} req/s   p50 {pct(lat, 0.5) * 1e3:6.2f} ms"
        f"   p99 {pct(lat, 0.99) * 1e3:6.2f} ms   max {max(lat) * 1e3:7.2f} ms"
        f"   server CPU {cpu / n * 1e3:.2f} ms/req   codes {codes}"
    )


async def run(workdir: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = base + "/api/v1/alerts"
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), str(workdir)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        await wait_ready(base, proc)
        print(f"webhook bench: {N} notifications per scenario, {CONCURRENCY} connections, "
              f"bearer auth, SQLite FULL sync, {os.cpu_count()} CPUs")  # fmt: skip
        # Warm-up (connections, caches, the first SQLite pages), not counted.
        await load(url, [notification(10**7 + i, actionable=False) for i in range(200)])
        c0 = cpu_seconds(proc.pid)
        wall, lat, codes = await paced(
            url, [notification(i, actionable=True) for i in range(N)], PACED_RATE
        )
        await drained(base)
        report(f"new @{PACED_RATE:.0f}/s", wall, lat, codes, cpu_seconds(proc.pid) - c0)
        paced_ids = {f"{i:016x}" for i in range(N)}
        c0 = cpu_seconds(proc.pid)
        wall, lat, codes = await load(url, [notification(N + i, actionable=True) for i in range(N)])
        await drained(base)
        report("new alert", wall, lat, codes, cpu_seconds(proc.pid) - c0)
        replay = notification(0, actionable=True)
        c0 = cpu_seconds(proc.pid)
        wall, lat, codes = await load(url, [replay] * N)
        report("replay", wall, lat, codes, cpu_seconds(proc.pid) - c0)
        ignored = [notification(10**6 + i, actionable=False) for i in range(N)]
        c0 = cpu_seconds(proc.pid)
        wall, lat, codes = await load(url, ignored)
        report("ignored", wall, lat, codes, cpu_seconds(proc.pid) - c0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)

    calls = json.loads((workdir / "calls.json").read_text())
    db = sqlite3.connect(workdir / "audit-intents.db")
    rows = db.execute("SELECT correlation_id, received_at, key, id FROM alerts").fetchall()
    db.close()
    received = {cid: at for cid, at, _, _ in rows}
    # Which correlation ids came from the paced run: the first N actionable rows.
    actionable = sorted((i, cid) for cid, _, _, i in rows if cid in {c for c, _, _ in calls})
    paced_cids = {cid for _, cid in actionable[: len(paced_ids)]}
    for name, subset in (
        (f"new @{PACED_RATE:.0f}/s", paced_cids),
        ("new alert", {cid for _, cid in actionable[len(paced_ids) :]}),
    ):
        to_call = [t - received[cid] for cid, t, _ in calls if cid in subset]
        to_done = [done - received[cid] for cid, _, done in calls if cid in subset]
        print(
            f"{name:<12} received -> scheduler called ({len(to_call)}): "
            f"p50 {pct(to_call, 0.5) * 1e3:6.2f} ms  p99 {pct(to_call, 0.99) * 1e3:6.2f} ms   "
            f"-> decided+actuated: p50 {pct(to_done, 0.5) * 1e3:6.2f} ms  "
            f"p99 {pct(to_done, 0.99) * 1e3:6.2f} ms  mean {statistics.fmean(to_done) * 1e3:.2f} ms"
        )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--serve", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.serve:
        serve_child(int(args.serve[0]), Path(args.serve[1]))
        return 0
    with tempfile.TemporaryDirectory(prefix="bench-webhook-") as d:
        asyncio.run(run(Path(d)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
