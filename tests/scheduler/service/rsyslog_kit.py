"""A real syslog collector on loopback: Debian's rsyslogd, TCP input, each message's MSG
written as one line to a file (``make tools`` installs it)."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from deploy.procs import free_port

RSYSLOGD = shutil.which("rsyslogd") or "/usr/sbin/rsyslogd"
needs_rsyslogd = pytest.mark.skipif(
    not Path(RSYSLOGD).exists(), reason="rsyslogd not installed (make tools installs it)"
)

CONFIG = """
global(workDirectory="{work}")
module(load="imtcp")
template(name="msgonly" type="string" string="%msg%\\n")
input(type="imtcp" port="{port}" address="127.0.0.1" ruleset="audit")
ruleset(name="audit") {{
  action(type="omfile" file="{out}" template="msgonly" flushOnTXEnd="on" asyncWriting="off")
}}
"""


class Rsyslog:
    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.out = workdir / "received.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Rsyslog:
        conf = self.workdir / "rsyslog.conf"
        conf.write_text(CONFIG.format(work=self.workdir, port=self.port, out=self.out))
        self.proc = subprocess.Popen(
            [RSYSLOGD, "-n", "-f", str(conf), "-i", str(self.workdir / "pid")],
            stdout=subprocess.DEVNULL,
            stderr=(self.workdir / "rsyslogd.log").open("ab"),
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.workdir / "rsyslogd.log").read_text()
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError("rsyslogd did not listen")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=20)
        self.proc = None

    def received(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]

    def wait_for(self, n: int, timeout: float = 20.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.received()
            if len({r["seq"] for r in got}) >= n or time.monotonic() > deadline:
                return got
            time.sleep(0.05)

    def __enter__(self) -> Rsyslog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
