"""Each server command as a process: it starts, serves, says where it listens, stops on SIGTERM.

``gpu-exporter`` (both backends), ``model-server`` with ``loadgen`` against it,
and ``scheduler`` with ``token new``, ``stack check`` and ``audit verify`` /
``audit export`` on the state it wrote. Each is the installed console script
(see proc_testlib), run outside the checkout.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from proc_testlib import (
    INSTALLED,
    PYTHON,
    ROOT,
    STACK,
    Server,
    assert_clean_stop,
    new_user,
    run,
    stack_with_users,
)

from deploy.stack_fields import user_name_problem
from exporters.catalog.gpu import GPU_INFO, GPU_UTILIZATION
from exporters.catalog.model import MODEL_REQUESTS

pytestmark = pytest.mark.process


def test_the_installed_package_is_the_one_under_test(tmp_path: Path) -> None:
    """Under ``make test`` the script is a wheel's, in a venv outside the checkout; the
    trace sample it ships is package data, readable from there."""
    code = (
        "import deploy, scheduler.sim.docs as d, scheduler.sim.reader as r; "
        "print(deploy.__file__); print(len(r.read(d.SAMPLE).jobs))"
    )
    r = subprocess.run(
        [str(PYTHON), "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    where, jobs = r.stdout.split()
    assert int(jobs) >= 200
    if INSTALLED:
        assert not Path(where).is_relative_to(ROOT), where


@pytest.mark.parametrize("node", [None, "gpu-node-2"], ids=["all-nodes", "one-node"])
def test_gpu_exporter_sim_serves_and_stops(tmp_path: Path, node: str | None) -> None:
    args = ["gpu-exporter", "--backend", "sim", "--stack", str(STACK)]
    args += ["--label", "cluster=sh-prod", "--label", "rack=r7"]
    if node:
        args += ["--node", node]
    with Server(*args, cwd=tmp_path) as server:
        status, body = server.get("/metrics")
        assert status == 200
        text = body.decode()
        samples = [
            line for line in text.splitlines() if line.startswith(GPU_UTILIZATION.series + "{")
        ]
        assert len(samples) == (8 if node else 32)
        assert all('cluster="sh-prod"' in s and 'rack="r7"' in s for s in samples)
        if node:
            assert all(f'node="{node}"' in s for s in samples)
        assert GPU_INFO.series in text
        status, body = server.get("/healthz")
        assert status == 200 and json.loads(body)["gpus_up"] == (8 if node else 32)
        assert_clean_stop(server.stop())


def test_gpu_exporter_nvml_without_a_driver_serves_its_health(tmp_path: Path) -> None:
    """No GPU here: NVML is not found, and the exporter says so in /healthz and its health
    metrics instead of exiting (restarting would not bring a driver)."""
    with Server("gpu-exporter", "--backend", "nvml", "--stack", str(STACK), cwd=tmp_path) as server:
        status, body = server.get("/healthz")
        assert status == 200 and json.loads(body)["nvml"] == "down"
        status, body = server.get("/metrics")
        assert status == 200 and b"novabrain_gpu_exporter_" in body
        assert_clean_stop(server.stop())


def test_model_server_serves_loadgen_and_stops(tmp_path: Path) -> None:
    with Server("model-server", "--stack", str(STACK), cwd=tmp_path) as server:
        status, body = server.get("/v1/models/risk-scorer/infer", method="POST")
        assert status == 200 and json.loads(body)["model"] == "risk-scorer"
        status, _ = server.get("/healthz")
        assert status == 200
        load = run(
            "loadgen",
            "--url",
            server.url,
            "--model",
            "risk-scorer",
            "--rate",
            "40",
            "--seconds",
            "1",
            cwd=tmp_path,
        )
        assert load.returncode == 0, load.stderr
        assert ", errors 0," in load.stdout and "sent 0," not in load.stdout
        status, body = server.get("/metrics")
        assert status == 200 and MODEL_REQUESTS.series in body.decode()
        stopped = server.stop()
    assert_clean_stop(stopped)


# Names made of what YAML gives meaning to, and some that are not ASCII: a string-formatted
# entry breaks on most of them.
YAML_NAMES = st.text(
    st.sampled_from([*"ab #:*&!|>'\"%@`,[]{}?-~", "é", "李"]), min_size=1, max_size=16
).filter(lambda n: user_name_problem(n) is None)
# The issue's own examples, in every run.
FIXED_NAMES = ["x, role: admin", "# ops #", "*alias"]


@settings(max_examples=3, deadline=None)
@given(
    st.lists(YAML_NAMES, min_size=3, max_size=3, unique=True).filter(
        lambda ns: not set(ns) & set(FIXED_NAMES)
    )
)
def test_scheduler_serves_users_from_token_new_and_its_audit_log_verifies(
    names: list[str],
) -> None:
    with tempfile.TemporaryDirectory() as d:
        _serve_users_and_verify_the_audit_log(Path(d), [*FIXED_NAMES, *names])


def _serve_users_and_verify_the_audit_log(tmp_path: Path, names: list[str]) -> None:
    roles = ["viewer", "operator", "admin"]
    users = [new_user(n, roles[i % 3], tmp_path) for i, n in enumerate(names)]
    stack = stack_with_users(users, tmp_path / "stack.yaml")
    checked = run("stack", "check", "--stack", str(stack), cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    assert f"{4 + len(users)} users" in checked.stdout

    state = tmp_path / "state"
    with Server("scheduler", "--stack", str(stack), "--state-dir", str(state), cwd=tmp_path) as s:
        assert s.get("/healthz")[0] == 200
        assert b"novabrain_" in s.get("/metrics")[1]
        for u in users:
            status, body = s.get("/api/v1/pools", token=u.token)
            assert status == 200, (u.name, body)
            assert {p["name"] for p in json.loads(body)} == {"p0-risk", "p1-train", "p2-batch"}
        status, body = s.get("/api/v1/policy", token=users[0].token)
        assert status == 200 and json.loads(body)["rebalance_step_gpus"] == 8
        assert s.get("/api/v1/pools", token="not-a-token")[0] == 401
        stopped = s.stop()
    assert_clean_stop(stopped)
    assert "listening on" in stopped.stderr

    verified = run("audit", "verify", "--db", str(state / "audit.db"), cwd=tmp_path)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    exported = run("audit", "export", "--db", str(state / "audit.db"), cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    records = [json.loads(line) for line in exported.stdout.splitlines()]
    # Each user's request is in the log under the name exactly as given to token new.
    seen = {(r["user"], r["operation"], r["result"]) for r in records}
    for u in users:
        assert (u.name, "pools.list", "ok") in seen
    assert any(r["result"] == "denied" for r in records)
