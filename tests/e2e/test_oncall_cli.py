"""`novabrain silence` and `novabrain alertmanager config` as an operator runs them: the installed
script against a real Alertmanager, and against the real scheduler for its audit log."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import signal
import sqlite3
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import proc_testlib
import pytest

from alerts.alertmanager import alertmanager_config
from alerts.generate import templates
from deploy.procs import AlertmanagerProcess, free_port
from deploy.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
# The installed script under `make test` (see proc_testlib), the venv's otherwise.
NOVABRAIN = str(proc_testlib.NOVABRAIN)
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.process,
    pytest.mark.skipif(shutil.which("prometheus-alertmanager") is None, reason="no alertmanager"),
]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NOVABRAIN, "silence", *args], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def am(stack: Stack, tmp_path: Path) -> AlertmanagerProcess:
    with AlertmanagerProcess(
        alertmanager_config(stack), tmp_path / "am", files=templates(stack)
    ) as p:
        yield p


def test_add_list_expire(am: AlertmanagerProcess) -> None:
    url = f"--alertmanager-url={am.url}"
    r = _run(
        "add",
        url,
        "--author",
        "li.wei",
        "--comment",
        "CHG-1234 power upgrade",
        "--duration",
        "3h",
        'node=~"gpu-node-3|gpu-node-4"',
        'alertname=~"NovabrainGpu.*"',
    )
    assert r.returncode == 0, r.stderr
    sid = r.stdout.strip()
    assert "not audited" in r.stderr  # no --token-file: said so, not hidden
    listed = _run("list", url)
    assert listed.returncode == 0
    (line,) = listed.stdout.splitlines()
    assert line.startswith(sid) and "active" in line
    assert 'node=~"gpu-node-3|gpu-node-4"' in line and "li.wei: CHG-1234 power upgrade" in line
    gone = _run("expire", url, "--author", "li.wei", sid)
    assert gone.returncode == 0, gone.stderr
    assert _run("list", url).stdout == ""
    assert "expired" in _run("list", url, "--all").stdout


def test_p0_matchers_are_refused_and_nothing_is_created(am: AlertmanagerProcess) -> None:
    r = _run(
        "add", f"--alertmanager-url={am.url}", "--author", "a", "--comment", "c", 'pool="p0-risk"'
    )
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "refused" in r.stderr and "Traceback" not in r.stderr
    assert am.get_json("/api/v2/silences") == []


def test_user_mistakes_exit_2_in_one_line(am: AlertmanagerProcess) -> None:
    for args in (["node=gpu-node-3"], ["--duration", "forever", 'node="x"']):
        r = _run("add", f"--alertmanager-url={am.url}", "--author", "a", "--comment", "c", *args)
        assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    r = _run("list", f"--alertmanager-url=http://127.0.0.1:{free_port()}")
    assert r.returncode == 2 and "cannot reach" in r.stderr and "Traceback" not in r.stderr


@dataclass(frozen=True)
class Scheduler:
    url: str
    audit_db: Path
    stack_file: Path
    token_files: dict[str, Path]  # role -> a file with that role's token


TOKENS = {"platform-operator": "operator", "sre-viewer": "viewer"}


@pytest.fixture
def scheduler(tmp_path: Path) -> Iterator[Scheduler]:
    """The installed `novabrain scheduler`, its stack's operator and viewer holding tokens
    this test knows."""
    text = (ROOT / "deploy/stack.yaml").read_text()
    token_files = {}
    for user, role in TOKENS.items():
        token = f"silence-test-{role}-token"
        text, n = re.subn(
            rf"(name: {user}, role: {role}, token_sha256: )[0-9a-f]{{64}}",
            lambda m, t=token: m[1] + hashlib.sha256(t.encode()).hexdigest(),
            text,
        )
        assert n == 1, user
        token_files[role] = tmp_path / f"{role}-token"
        token_files[role].write_text(token + "\n")
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(text)
    port = free_port()
    state = tmp_path / "state"
    argv = [NOVABRAIN, "scheduler", "--port", str(port), "--stack", str(stack_file)]
    sched = subprocess.Popen(
        [*argv, "--state-dir", str(state)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and sched.poll() is None
                time.sleep(0.2)
        yield Scheduler(f"http://127.0.0.1:{port}", state / "audit.db", stack_file, token_files)
    finally:
        sched.send_signal(signal.SIGTERM)
        assert sched.wait(timeout=30) == 0


def _audited(s: Scheduler, am: AlertmanagerProcess, role: str, *args: str) -> subprocess.CompletedProcess[str]:  # fmt: skip
    sub, *rest = args
    return _run(
        sub,
        "--stack",
        str(s.stack_file),
        f"--alertmanager-url={am.url}",
        f"--scheduler-url={s.url}",
        "--token-file",
        str(s.token_files[role]),
        *rest,
    )


def _export(db: Path, *args: str) -> list[dict[str, Any]]:
    r = subprocess.run(
        [NOVABRAIN, "audit", "export", "--db", str(db), "--format", "jsonl", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def _ts(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


ADD = ("--author", "li.wei", "--comment", "CHG-1234 power upgrade", 'node="gpu-node-3"')


def test_each_silence_call_is_in_the_schedulers_audit_log(
    am: AlertmanagerProcess, scheduler: Scheduler
) -> None:
    """Installed `novabrain silence` -> real scheduler -> audit log -> `novabrain audit export`:
    each call recorded before it is made and after, as the token's user from this host."""
    r = _audited(scheduler, am, "operator", "add", *ADD)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""  # audited: no warning
    sid = r.stdout.strip()
    (silence,) = am.get_json("/api/v2/silences")
    requested, done = _export(scheduler.audit_db, "--operation", "silence.add")
    assert [(x["object"], x["result"]) for x in (requested, done)] == [
        ("silence", "requested"),
        (f"silence/{sid}", "ok"),
    ]
    # In that order around the silence Alertmanager created.
    assert requested["ts"] <= _ts(silence["updatedAt"]) <= done["ts"]
    for rec in (requested, done):
        assert (rec["user"], rec["source_ip"]) == ("platform-operator", "127.0.0.1")
    params = requested["params"]
    assert params == done["params"]  # the same silence, before and after
    assert params["matchers"] == ['node="gpu-node-3"']
    assert (params["author"], params["comment"]) == ("li.wei", "CHG-1234 power upgrade")
    # Alertmanager keeps milliseconds, and starts a silence no earlier than it created it.
    assert abs(_ts(params["endsAt"]) - _ts(silence["endsAt"])) < 0.001
    assert _ts(params["startsAt"]) <= _ts(silence["startsAt"])
    gone = _audited(scheduler, am, "operator", "expire", "--author", "li.wei", sid)
    assert gone.returncode == 0, gone.stderr
    expired = _export(scheduler.audit_db, "--operation", "silence.expire")
    assert [(x["object"], x["result"], x["user"]) for x in expired] == [
        (f"silence/{sid}", "requested", "platform-operator"),
        (f"silence/{sid}", "ok", "platform-operator"),
    ]
    verified = subprocess.run(
        [NOVABRAIN, "audit", "verify", "--db", str(scheduler.audit_db)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_with_the_scheduler_down_nothing_is_silenced(
    am: AlertmanagerProcess, tmp_path: Path
) -> None:
    """Fails closed: a call that cannot be audited is not made."""
    token = tmp_path / "token"
    token.write_text("any-token")
    r = _run(
        "add",
        f"--alertmanager-url={am.url}",
        f"--scheduler-url=http://127.0.0.1:{free_port()}",
        "--token-file",
        str(token),
        *ADD,
    )
    assert r.returncode == 2, r.stdout + r.stderr  # an unreachable URL: exit 2, as every command
    assert "not audited, so not done" in r.stderr and "cannot reach" in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert am.get_json("/api/v2/silences") == []


def test_when_the_audit_log_cannot_be_written_nothing_is_silenced(
    am: AlertmanagerProcess, scheduler: Scheduler
) -> None:
    """Another process holds the audit database's write lock: the scheduler answers 503
    (not a 2xx) and the silence is not created; once the lock goes, the log says so."""
    db = sqlite3.connect(scheduler.audit_db, isolation_level=None, timeout=30)
    db.execute("BEGIN EXCLUSIVE")
    try:
        r = _audited(scheduler, am, "operator", "add", *ADD)
    finally:
        db.execute("ROLLBACK")
        db.close()
    assert r.returncode == 1, r.stdout + r.stderr
    assert "not audited, so not done" in r.stderr, r.stderr
    assert am.get_json("/api/v2/silences") == []
    deadline = time.monotonic() + 30
    while not (recs := _export(scheduler.audit_db, "--operation", "silence.add")):
        assert time.monotonic() < deadline, "the held record was never written"
        time.sleep(0.2)
    (rec,) = recs
    assert (rec["result"], rec["reason"]) == ("error", "503 storage unavailable: audit log")


def test_a_token_without_the_permission_is_refused_and_audited(
    am: AlertmanagerProcess, scheduler: Scheduler
) -> None:
    r = _audited(scheduler, am, "viewer", "add", *ADD)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "not audited, so not done" in r.stderr and "403" in r.stderr
    assert am.get_json("/api/v2/silences") == []
    (denied,) = _export(scheduler.audit_db, "--operation", "audit.record")
    assert (denied["user"], denied["result"]) == ("sre-viewer", "denied")
    assert _export(scheduler.audit_db, "--operation", "silence.add") == []


def test_alertmanager_config_writes_the_deployable_config(tmp_path: Path) -> None:
    """`novabrain alertmanager config`: the WeCom secret read from its file into a 0600
    config that amtool accepts; a missing secret file is one line and exit 2."""
    secret = tmp_path / "wecom-secret"
    secret.write_text("corp-secret-value\n")
    text = (
        (ROOT / "deploy/stack.yaml").read_text().replace("/etc/novabrain/wecom-secret", str(secret))
    )
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(text)
    out = tmp_path / "etc"
    r = subprocess.run(
        [NOVABRAIN, "alertmanager", "config", "--stack", str(stack_file), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    config = out / "alertmanager.yml"
    assert config.stat().st_mode & 0o777 == 0o600
    assert "api_secret: corp-secret-value" in config.read_text()
    assert (out / "templates/email.tmpl").read_text() == (
        ROOT / "deploy/generated/templates/email.tmpl"
    ).read_text()
    checked = subprocess.run(
        ["amtool", "check-config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    secret.unlink()
    r = subprocess.run(
        [
            NOVABRAIN,
            "alertmanager",
            "config",
            "--stack",
            str(stack_file),
            "--out",
            str(tmp_path / "x"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "cannot read secret file" in r.stderr
