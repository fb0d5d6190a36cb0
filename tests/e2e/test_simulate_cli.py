"""`novabrain simulate` as an operator runs it: the installed script, as a process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from proc_testlib import NOVABRAIN, ROOT, STACK, env

sys.path.insert(0, str(ROOT / "tests" / "scheduler" / "sim"))
from simkit import write_trace

pytestmark = pytest.mark.process


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NOVABRAIN), "simulate", "--stack", str(STACK), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env=env(),
    )


def test_simulate_prints_the_table_and_writes_the_report(tmp_path: Path) -> None:
    trace = write_trace(tmp_path / "trace.csv")
    out = tmp_path / "report"
    p = run(
        "--trace", str(trace), "--out", str(out), "--variant", "fixed:autoscale=false", cwd=tmp_path
    )
    assert p.returncode == 0, p.stderr
    header = p.stdout.splitlines()[0].split()
    assert header[0] == "policy"
    rows = [line.split()[0] for line in p.stdout.splitlines()[2:6]]
    assert rows == ["static", "naive", "novabrain", "fixed"]
    # One progress line per policy (no terminal here: no bar).
    assert [line.split(":")[0] for line in p.stderr.splitlines()] == rows
    for name in (
        "report.md",
        "summary.json",
        "held.png",
        "waits.png",
        "utilisation.png",
        "lost.png",
    ):
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["policies"]["static"]["preemptions"]["count"] == 0
    assert summary["policies"]["novabrain"]["jobs"]["completed"] == 160


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--trace", "missing.csv"], "cannot read trace"),
        (["--trace", "{trace}", "--columns", "submit=a"], "--columns: missing duration, gpus"),
        (["--trace", "{trace}", "--columns", "submit=a,duration=b,gpus=c"], "no column 'a'"),
        (["--trace", "{trace}", "--gpus", "lots"], "--gpus 'lots'"),
        (["--trace", "{trace}", "--gpus", "0"], "--gpus 0"),
        (["--trace", "{trace}", "--policies", "static,greedy"], "unknown policy 'greedy'"),
        (
            ["--trace", "{trace}", "--variant", "x:fairness_cap=high"],
            "fairness_cap must be a number",
        ),
        (["--trace", "{trace}", "--variant", "x:colour=blue"], "unknown key 'colour'"),
        (["--trace", "{trace}", "--variant", "static:fairness_cap=1"], "names a built-in policy"),
        (["--trace", "{trace}", "--start", "tomorrow"], "--start 'tomorrow'"),
        (["--trace", "{trace}", "--out", "{trace}"], "is not a directory"),
    ],
)
def test_a_mistake_is_one_line_and_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    trace = write_trace(tmp_path / "trace.csv", jobs=5)
    p = run(*(a.format(trace=trace) for a in args), cwd=tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert "Traceback" not in p.stderr
