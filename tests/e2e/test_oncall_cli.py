"""`novabrain silence` and `novabrain alertmanager config` as an operator runs them: the installed
script against a real Alertmanager, and against the real scheduler for its audit log."""

from __future__ import annotations

import hashlib
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from alerts.alertmanager import alertmanager_config
from alerts.generate import templates
from deploy.procs import AlertmanagerProcess, free_port
from deploy.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
NOVABRAIN = str(Path(sys.executable).parent / "novabrain")
pytestmark = [
    pytest.mark.e2e,
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
    assert r.returncode == 1 and "cannot reach" in r.stderr and "Traceback" not in r.stderr


def test_with_the_scheduler_configured_an_unaudited_silence_is_not_created(
    am: AlertmanagerProcess, tmp_path: Path
) -> None:
    """The real scheduler has no endpoint for audit records yet (scheduler/service owns it):
    the call fails closed, and nothing is silenced."""
    token = "silence-test-operator-token"
    digest = hashlib.sha256(token.encode()).hexdigest()
    text = (ROOT / "deploy/stack.yaml").read_text()
    stack_file = tmp_path / "stack.yaml"
    stack_file.write_text(
        text.replace(
            "{name: platform-operator, role: operator, token_sha256: cea9836fdde5854f11f3fd25356a17d6568abf55cb11b98299e406d798a320c0}",
            f"{{name: platform-operator, role: operator, token_sha256: {digest}}}",
        )
    )
    (tmp_path / "token").write_text(token)
    port = free_port()
    sched = subprocess.Popen(
        [
            NOVABRAIN,
            "scheduler",
            "--port",
            str(port),
            "--stack",
            str(stack_file),
            "--state-dir",
            str(tmp_path / "state"),
        ],
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
        r = _run(
            "add",
            "--stack",
            str(stack_file),
            f"--alertmanager-url={am.url}",
            f"--scheduler-url=http://127.0.0.1:{port}",
            "--token-file",
            str(tmp_path / "token"),
            "--author",
            "li.wei",
            "--comment",
            "c",
            'node="gpu-node-3"',
        )
        assert r.returncode == 1, r.stdout + r.stderr
        assert "not audited, so not done" in r.stderr and "404" in r.stderr
        assert am.get_json("/api/v2/silences") == []
    finally:
        sched.send_signal(signal.SIGTERM)
        assert sched.wait(timeout=30) == 0


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
