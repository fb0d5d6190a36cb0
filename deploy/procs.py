"""Run the real Prometheus and Alertmanager binaries on loopback.

Used by the demo and by every test that needs them: a free port, a private
working directory, readiness awaited through the binary's own ``/-/ready``
endpoint, and a teardown that always runs (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import asyncio
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import yaml

PROMETHEUS_BIN = "prometheus"
ALERTMANAGER_BIN = "prometheus-alertmanager"  # Debian's name for the alertmanager binary


class ProcessError(RuntimeError):
    """A binary is missing, did not become ready, or answered an API call with an error."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ProcessError(
            f"{name} not found: install Debian's prometheus and prometheus-alertmanager "
            "(make test and make demo do this)"
        )
    return path


class _Managed:
    """A child process serving HTTP on 127.0.0.1:port, ready when ``ready_path`` answers 200."""

    name = "process"
    ready_path = "/-/ready"

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / f"{self.name}.log"

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def start(self, timeout: float = 30.0) -> None:
        argv = self._argv()
        with self.log_path.open("wb") as log:
            self._proc = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise ProcessError(
                    f"{self.name} exited with {self._proc.returncode}: {self.tail_log()}"
                )
            try:
                with urllib.request.urlopen(self.url + self.ready_path, timeout=1) as r:  # noqa: S310
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.1)
        self.stop()
        raise ProcessError(f"{self.name} not ready after {timeout}s: {self.tail_log()}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)

    def tail_log(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def reload(self) -> None:
        """Ask the process to re-read its configuration (both binaries take POST /-/reload)."""
        req = urllib.request.Request(self.url + "/-/reload", method="POST")  # noqa: S310
        with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
            if r.status != 200:
                raise ProcessError(f"{self.name} reload answered {r.status}")

    def get_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        try:
            with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            raise ProcessError(f"{self.name} {path}: HTTP {e.code}: {e.read()[:500]!r}") from None

    async def aget_json(self, path: str, params: dict[str, str] | None = None) -> Any:
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as s,
            s.get(self.url + path, params=params) as r,
        ):
            body = await r.read()
            if r.status != 200:
                raise ProcessError(f"{self.name} {path}: HTTP {r.status}: {body[:500]!r}")
            return json.loads(body)

    def __enter__(self) -> _Managed:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class PrometheusProcess(_Managed):
    """``prometheus`` with the given config (a dict, written as YAML) and rule files."""

    name = "prometheus"

    def __init__(
        self,
        config: dict[str, Any],
        workdir: Path,
        rule_files: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        super().__init__(workdir, port)
        self.config = dict(config)
        self.rule_files = dict(rule_files or {})

    def write_config(self) -> None:
        for name, text in self.rule_files.items():
            (self.workdir / name).write_text(text)
        if self.rule_files:
            self.config["rule_files"] = [str(self.workdir / n) for n in self.rule_files]
        (self.workdir / "prometheus.yml").write_text(yaml.safe_dump(self.config, sort_keys=False))

    def _argv(self) -> list[str]:
        self.write_config()
        return [
            _binary(PROMETHEUS_BIN),
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # Alerts' generatorURL (the Prometheus link in notifications) points here.
            f"--web.external-url={self.url}",
            "--web.enable-lifecycle",
            "--log.level=warn",
        ]

    def __enter__(self) -> PrometheusProcess:
        self.start()
        return self

    def query(self, expr: str) -> list[dict[str, Any]]:
        """Instant query; the result vector (``[]`` when the expression has no data)."""
        body = self.get_json("/api/v1/query", {"query": expr})
        return list(body["data"]["result"])

    async def aquery(self, expr: str) -> list[dict[str, Any]]:
        body = await self.aget_json("/api/v1/query", {"query": expr})
        return list(body["data"]["result"])

    def wait_for(
        self, expr: str, timeout: float = 60.0, interval: float = 0.5
    ) -> list[dict[str, Any]]:
        """Poll until ``expr`` returns data; raise ``ProcessError`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            res = self.query(expr)
            if res:
                return res
            if time.monotonic() > deadline:
                raise ProcessError(f"no data for {expr!r} after {timeout}s")
            time.sleep(interval)

    async def await_for(
        self, expr: str, timeout: float = 60.0, interval: float = 0.5
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            res = await self.aquery(expr)
            if res:
                return res
            if time.monotonic() > deadline:
                raise ProcessError(f"no data for {expr!r} after {timeout}s")
            await asyncio.sleep(interval)

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.get_json("/api/v1/alerts")["data"]["alerts"])

    async def aalerts(self) -> list[dict[str, Any]]:
        return list((await self.aget_json("/api/v1/alerts"))["data"]["alerts"])

    def targets(self) -> list[dict[str, Any]]:
        return list(self.get_json("/api/v1/targets")["data"]["activeTargets"])


class AlertmanagerProcess(_Managed):
    """``prometheus-alertmanager`` with the given config, clustering off (one instance)."""

    name = "alertmanager"

    def __init__(
        self, config: dict[str, Any], workdir: Path, files: dict[str, str] | None = None
    ) -> None:
        super().__init__(workdir)
        self.config = config
        # Paths relative to the config file (notification templates) -> their text.
        self.files = dict(files or {})

    def _argv(self) -> list[str]:
        for rel, text in self.files.items():
            path = self.workdir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        cfg = self.workdir / "alertmanager.yml"
        cfg.write_text(yaml.safe_dump(self.config, sort_keys=False, allow_unicode=True))
        return [
            _binary(ALERTMANAGER_BIN),
            f"--config.file={cfg}",
            f"--storage.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            # Links in notifications (silences) point here.
            f"--web.external-url={self.url}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ]

    def __enter__(self) -> AlertmanagerProcess:
        self.start()
        return self

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.get_json("/api/v2/alerts"))

    async def aalerts(self) -> list[dict[str, Any]]:
        return list(await self.aget_json("/api/v2/alerts"))
