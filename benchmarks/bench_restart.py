"""What a scheduler restart costs: SIGKILL the process, time until the webhook answers again.

This is the part of a pod restart that is ours (Kubernetes adds the container
restart and the kubelet's back-off, from 0 s on a first crash up to 5 min in a
crash loop). The scheduler runs as an operator runs it, the installed
``novabrain scheduler`` on a stack file and a state directory, with a known
alertmanager token (only its hash is in the stack). Each run:

1. the process has acted on alerts (its SQLite state and audit log are on disk);
2. it is killed with SIGKILL (no clean shutdown: what an OOM kill or a node's
   kubelet does), and the same command is started at once on the same state;
3. a new notification is POSTed every 5 ms until one is answered 2xx.

Printed per run: kill -> /healthz 200, kill -> webhook 2xx, and whether every
decision made before the kill is still there after it. Two state sizes side by
side (a fresh log, and one with thousands of alerts and decisions), and, for
scale, the start of ``novabrain --help`` (the Python interpreter and imports).
The machine is shared: run it more than once and read the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_webhook import notification  # noqa: E402

from deploy.procs import free_port  # noqa: E402
from scheduler.service.auth import hash_token  # noqa: E402

NOVABRAIN = Path(sys.executable).parent / "novabrain"
AM_TOKEN = "bench-restart-alertmanager"
VIEWER_TOKEN = "bench-restart-viewer"


def write_stack(workdir: Path) -> Path:
    doc = yaml.safe_load((ROOT / "deploy/stack.yaml").read_text())
    doc["rbac"]["users"] = [
        {"name": "alertmanager", "role": "alertmanager", "token_sha256": hash_token(AM_TOKEN)},
        {"name": "bench-viewer", "role": "viewer", "token_sha256": hash_token(VIEWER_TOKEN)},
    ]
    path = workdir / "stack.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def start(stack: Path, state: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [str(NOVABRAIN), "scheduler", f"--stack={stack}", f"--state-dir={state}",
             "--host=127.0.0.1", f"--port={port}"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip


def request(url: str, *, body: bytes | None = None, token: str | None = None) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    method = "POST" if body else "GET"
    req = urllib.request.Request(url, data=body, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(req, timeout=2) as r:  # noqa: S310 - loopback
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def until(ok: Any, timeout: float = 120.0) -> float:
    """Poll every 5 ms; the monotonic time ``ok()`` first held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if ok():
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.005)
    raise SystemExit("no answer in time")


def decisions(base: str) -> set[str]:
    status, body = request(f"{base}/api/v1/decisions?limit=10000", token=VIEWER_TOKEN)
    assert status == 200, status
    return {d["id"] for d in (body["items"] if isinstance(body, dict) else body)}


def deliver(hook: str, body: bytes) -> bool:
    """One notification; True once answered 2xx (a 503 asks Alertmanager to retry)."""
    return request(hook, body=body, token=AM_TOKEN)[0] < 300


def drained(base: str) -> None:
    until(lambda: request(f"{base}/healthz")[1]["pending_intents"] == 0)


def scenario(name: str, workdir: Path, alerts: int, runs: int) -> list[float]:
    workdir.mkdir()
    stack, state, log = write_stack(workdir), workdir / "state", workdir / "scheduler.log"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    hook = f"{base}/api/v1/alerts"
    proc = start(stack, state, port, log)
    until(lambda: request(f"{base}/healthz")[0] == 200)
    seq = 0
    for _ in range(alerts):  # history: alert states acted on, decisions and audit records
        seq += 1
        body = notification(seq, actionable=True)
        until(lambda body=body: deliver(hook, body))
    drained(base)
    to_webhook = []
    print(f"{name}: {alerts} alerts of history")
    for run in range(1, runs + 1):
        before = decisions(base)
        killed = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc = start(stack, state, port, log)
        healthy = until(lambda: request(f"{base}/healthz")[0] == 200)
        seq += 1
        body = notification(seq, actionable=True)
        serving = until(lambda body=body: deliver(hook, body))
        drained(base)
        after = decisions(base)
        to_webhook.append(serving - killed)
        print(
            f"  run {run}: kill -> /healthz 200 {(healthy - killed) * 1e3:7.0f} ms"
            f"   kill -> webhook 2xx {(serving - killed) * 1e3:7.0f} ms"
            f"   decisions {len(before)} -> {len(after)}"
            f" ({'none lost' if before <= after else 'LOST ' + str(len(before - after))})"
        )
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    verify = subprocess.run(
        [str(NOVABRAIN), "audit", "verify", f"--db={state / 'audit.db'}"],
        capture_output=True, text=True,
    )  # fmt: skip
    print(f"  SIGTERM exit {code}; audit verify after {runs} SIGKILLs: {verify.stdout.strip()}")
    print(
        f"  kill -> webhook 2xx: median {statistics.median(to_webhook) * 1e3:.0f} ms,"
        f" min {min(to_webhook) * 1e3:.0f}, max {max(to_webhook) * 1e3:.0f}"
    )
    return to_webhook


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5, help="kills per scenario (default 5)")
    p.add_argument("--history", type=int, default=3000, help="alerts before the big-state runs")
    args = p.parse_args()
    t0 = time.monotonic()
    subprocess.run([str(NOVABRAIN), "--help"], capture_output=True, check=True)
    print(f"novabrain --help (interpreter and CLI start): {(time.monotonic() - t0) * 1e3:.0f} ms")
    with tempfile.TemporaryDirectory(prefix="bench-restart-") as d:
        scenario("fresh state", Path(d) / "fresh", 10, args.runs)
        scenario("grown state", Path(d) / "grown", args.history, args.runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
