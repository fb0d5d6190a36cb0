"""Running ``novabrain`` as an operator does: the installed console script, as a process.

``NOVABRAIN_BIN`` names the script to run; ``make test`` points it at a wheel
installed into a clean venv outside the checkout, so a module missing from the
package or a file read relative to the checkout fails these tests. Without it,
the script beside this interpreter (the worktree's venv) is used. Commands run
in a temporary directory with ``PYTHONPATH`` unset, never in the checkout.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from deploy.procs import free_port

ROOT = Path(__file__).resolve().parents[2]
STACK = ROOT / "deploy" / "stack.yaml"
TIMEOUT = 60.0  # no command of the user's may hang: every run is bounded


def novabrain_bin() -> Path:
    named = os.environ.get("NOVABRAIN_BIN")
    if named:
        return Path(named)
    beside = Path(sys.executable).with_name("novabrain")
    found = beside if beside.exists() else shutil.which("novabrain")
    assert found, "no novabrain script: run 'make venv' (or set NOVABRAIN_BIN)"
    return Path(found)


NOVABRAIN = novabrain_bin()
INSTALLED = "NOVABRAIN_BIN" in os.environ
# The interpreter the script runs on (its venv's python), for checks on the package itself.
PYTHON = NOVABRAIN.with_name("python")


def env(**extra: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    out.update(extra)
    return out


def run(
    *args: str, cwd: Path, timeout: float = TIMEOUT, **extra_env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NOVABRAIN), *args],
        cwd=cwd,
        env=env(**extra_env),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def looks_like_a_traceback(text: str) -> bool:
    return (
        "Traceback (most recent call last)" in text
        or re.search(r"^\w+Error: ", text, re.M) is not None
    )


@dataclass
class Stopped:
    returncode: int
    stderr: str


class Server:
    """``novabrain <args> --host 127.0.0.1 --port <free>`` in the background, in ``cwd``.

    ``start`` waits for the log line that says where it listens; ``stop`` sends
    SIGTERM and reports how it exited.
    """

    def __init__(self, *args: str, cwd: Path, **extra_env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [*args, "--host", "127.0.0.1", "--port", str(self.port)]
        self.cwd = cwd
        self.env = env(**extra_env)
        self.log = cwd / f"server-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = TIMEOUT) -> Server:
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [str(NOVABRAIN), *self.args],
                cwd=self.cwd,
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
            )
        deadline = time.monotonic() + timeout
        while self.url not in self.stderr():
            if self.proc.poll() is not None:
                pytest.fail(f"{self.args[0]} exited {self.proc.returncode}: {self.stderr()}")
            if time.monotonic() > deadline:
                pytest.fail(f"{self.args[0]} never said it listens on {self.url}: {self.stderr()}")
            time.sleep(0.1)
        return self

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def get(self, path: str, token: str | None = None, method: str = "GET") -> tuple[int, bytes]:
        req = urllib.request.Request(self.url + path, method=method)  # noqa: S310 (http, loopback)
        if token is not None:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def stop(self, timeout: float = 15.0) -> Stopped:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"{self.args[0]} ignored SIGTERM for {timeout:.0f}s")
        return Stopped(code, self.stderr())

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def assert_clean_stop(stopped: Stopped) -> None:
    assert stopped.returncode == 0, stopped.stderr
    assert not looks_like_a_traceback(stopped.stderr), stopped.stderr


@dataclass(frozen=True)
class NewUser:
    name: str
    role: str
    token: str
    entry: str  # the line `token new` says to add to rbac.users


def new_user(name: str, role: str, cwd: Path) -> NewUser:
    """``novabrain token new``, read back as an operator reads it."""
    r = run("token", "new", f"--name={name}", "--role", role, cwd=cwd)  # a name may start with -
    assert r.returncode == 0, r.stderr
    token = re.search(r"^token:\s+(\S+)$", r.stdout, re.M)
    assert token, r.stdout
    return NewUser(name, role, token[1], r.stdout.rstrip("\n").splitlines()[-1])


def stack_with_users(users: list[NewUser], path: Path) -> Path:
    """The committed stack with each user's entry pasted, as printed, under ``rbac.users``."""
    text = STACK.read_text()
    anchor = "rbac:\n  users:\n"
    assert anchor in text
    pasted = "".join(f"  {u.entry}\n" for u in users)
    path.write_text(text.replace(anchor, anchor + pasted))
    return path
