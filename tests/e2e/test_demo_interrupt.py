"""`novabrain demo` stops everything it started when interrupted (Ctrl-C or SIGTERM)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from proc_testlib import NOVABRAIN, STACK, env

pytestmark = [pytest.mark.e2e, pytest.mark.process]


def _processes_using(workdir: Path) -> list[str]:
    """Command lines of live processes that mention ``workdir`` (the demo, Prometheus, Alertmanager)."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(workdir) in cmd:
            out.append(cmd)
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_demo_leaves_nothing_running(tmp_path: Path, sig: signal.Signals) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.Popen(
        [str(NOVABRAIN), "demo", "--stack", str(STACK), "--workdir", str(workdir)],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # A child of a non-interactive shell may inherit SIGINT ignored; restore it
        # as a terminal's Ctrl-C would find it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 120
        for line in proc.stdout:
            if "stack up" in line:
                break
            assert time.monotonic() < deadline, "demo did not come up"
        running = _processes_using(workdir)
        assert any("prometheus " in c for c in running) and any(
            "alertmanager " in c for c in running
        )
        proc.send_signal(sig)
        rest, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "everything stopped" in rest
    assert _processes_using(workdir) == []
