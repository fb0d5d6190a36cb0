"""Multi-worker servers: prometheus_client's multiprocess mode, each worker a real process.

PROMETHEUS_MULTIPROC_DIR must be set before prometheus_client is imported, so
workers and the reader run as child interpreters with it in their environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.stack import Stack
from exporters.catalog.model import (
    MODEL_ERRORS,
    MODEL_IN_FLIGHT,
    MODEL_REQUEST_DURATION,
    MODEL_REQUESTS,
    MODEL_UNKNOWN_REQUESTS,
)
from exporters.instrument import MultiprocessError
from exporters.instrument.multiprocess import multiprocess_dir, multiprocess_registry

ROOT = Path(__file__).resolve().parents[3]
RISK = {"model": "risk-scorer", "version": "v3", "pool": "p0-risk"}

WORKER = """
import sys
from deploy.stack import load_stack
from exporters.instrument import ErrorReason, ModelInstruments, Outcome
ins = ModelInstruments(load_stack(sys.argv[1]), None, multiprocess=True)
rec = ins.recorder("risk-scorer")
for _ in range(int(sys.argv[2])):
    rec.in_flight.inc()
    rec.finish_ok(0.01)
if sys.argv[3] == "crash":
    rec.observe(0.3, Outcome.ERROR, ErrorReason.BACKEND)
    ins.get("no-such-model")
    rec.in_flight.inc()  # still in flight when the worker dies
"""

READER = """
import json, sys
from exporters.instrument.multiprocess import mark_process_dead, multiprocess_registry
if len(sys.argv) > 1:
    mark_process_dead(int(sys.argv[1]))
out = {}
for fam in multiprocess_registry().collect():
    for s in fam.samples:
        out[json.dumps([s.name, sorted(s.labels.items())])] = s.value
print(json.dumps(out))
"""


def _python(code: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    return r


def _value(samples: dict[str, float], name: str, labels: dict[str, str]) -> float | None:
    return samples.get(json.dumps([name, sorted(labels.items())]))


def test_workers_add_up_and_a_dead_worker_leaves_the_live_gauges(
    stack: Stack, tmp_path: Path
) -> None:
    mp = tmp_path / "prom-mp"
    mp.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(mp)}
    stack_path = str(ROOT / "deploy/stack.yaml")
    crashed = subprocess.Popen(
        [sys.executable, "-c", WORKER, stack_path, "3", "crash"], env=env, cwd=ROOT
    )
    assert crashed.wait(timeout=60) == 0
    _python(WORKER, stack_path, "2", "ok", env=env)

    samples = json.loads(_python(READER, env=env).stdout)
    assert _value(samples, MODEL_REQUESTS.series, {**RISK, "outcome": "ok"}) == 5
    assert _value(samples, MODEL_REQUESTS.series, {**RISK, "outcome": "error"}) == 1
    assert _value(samples, MODEL_ERRORS.series, {**RISK, "reason": "backend"}) == 1
    assert _value(samples, MODEL_UNKNOWN_REQUESTS.series, {}) == 1
    assert _value(samples, MODEL_REQUEST_DURATION.count, RISK) == 6
    # The model's own buckets, merged over workers: 5 fast, 1 past 4x the threshold.
    assert _value(samples, MODEL_REQUEST_DURATION.bucket, {**RISK, "le": "0.05"}) == 5
    assert _value(samples, MODEL_REQUEST_DURATION.bucket, {**RISK, "le": "0.2"}) == 5
    assert _value(samples, MODEL_REQUEST_DURATION.bucket, {**RISK, "le": "+Inf"}) == 6
    assert _value(samples, MODEL_IN_FLIGHT.series, RISK) == 1

    # The master's child_exit hook: the dead worker's request is no longer in flight,
    # while its counts stay (totals never go backwards when a worker is replaced).
    samples = json.loads(_python(READER, str(crashed.pid), env=env).stdout)
    assert _value(samples, MODEL_IN_FLIGHT.series, RISK) == 0
    assert _value(samples, MODEL_REQUESTS.series, {**RISK, "outcome": "ok"}) == 5


def test_multiprocess_needs_its_directory(tmp_path: Path) -> None:
    assert multiprocess_dir({}) is None
    assert multiprocess_dir({"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}) == str(tmp_path)
    with pytest.raises(MultiprocessError):
        multiprocess_registry(str(tmp_path / "missing"))
