"""`novabrain audit verify` and `audit export` as an operator runs them: the installed script,
as a subprocess. Three outcomes, three exit codes: intact (0), tampered (1, and where, on
stdout), cannot be read (2, one line on stderr, no traceback)."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
from proc_testlib import NOVABRAIN, TIMEOUT, env

from scheduler.audit import AuditLog
from tests.scheduler.service.tamper_kit import SCENARIOS, Scenario, StepClock, fill

pytestmark = [pytest.mark.e2e, pytest.mark.process]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(NOVABRAIN), *argv],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env=env(),
    )


def one_line_error(p: subprocess.CompletedProcess[str]) -> str:
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    assert "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("novabrain: "), p.stderr
    return lines[0]


def test_the_installed_script_is_the_one_tested() -> None:
    assert NOVABRAIN.is_file(), f"{NOVABRAIN}: run `make venv`"


def test_an_intact_log_exits_0(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.db", clock=StepClock())
    head = fill(log)
    log.close()
    for extra in ([], ["--expect-head", str(head)]):
        p = run("audit", "verify", "--db", str(log.path), *extra)
        assert p.returncode == 0, p.stdout + p.stderr
        assert p.stdout.strip() == f"ok: 10 records verified, head {head}"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_each_kind_of_tampering_exits_1_naming_the_record(
    tmp_path: Path, scenario: Scenario
) -> None:
    log = AuditLog(tmp_path / "audit.db", clock=StepClock())
    head = fill(log)
    log.close()
    scenario.tamper(log.path)
    p = run("audit", "verify", "--db", str(log.path), "--expect-head", str(head))
    assert p.returncode == 1, p.stdout + p.stderr
    assert p.stdout.startswith(f"TAMPERED at record {scenario.bad_seq}:"), p.stdout
    assert re.search(scenario.words, p.stdout), p.stdout
    alone = run("audit", "verify", "--db", str(log.path))
    assert alone.returncode == (0 if scenario.needs_published_head else 1), alone.stdout


def test_an_archived_prefix_verifies_only_with_its_archive(tmp_path: Path) -> None:
    archive = tmp_path / "audit-archive.db"
    log = AuditLog(tmp_path / "audit.db", clock=StepClock(), retention_seconds=5.5,
                   archive_path=archive)  # fmt: skip
    head = fill(log)
    assert log.apply_retention() == 5  # now = t0 + 11: records 1..5 are older than 5.5 s
    log.close()
    p = run("audit", "verify", "--db", str(log.path), "--archive", str(archive),
            "--expect-head", str(head))  # fmt: skip
    assert p.returncode == 0 and "ok: 10 records" in p.stdout, p.stdout + p.stderr
    p = run("audit", "verify", "--db", str(log.path))
    assert p.returncode == 1 and "verify with the archive" in p.stdout


def _not_an_audit_log(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE jobs (id TEXT)")
    db.close()


UNREADABLE = {
    "missing": (lambda p: None, "no audit database"),
    "empty": (lambda p: p.write_bytes(b""), "not an audit log (an empty database)"),
    "corrupt": (lambda p: p.write_bytes(b"garbage " * 1000), "not a readable database"),
    "another database": (_not_an_audit_log, "without the audit tables"),
}


@pytest.mark.parametrize("what", list(UNREADABLE))
def test_a_file_that_is_not_an_audit_log_exits_2_in_one_line(tmp_path: Path, what: str) -> None:
    make, words = UNREADABLE[what]
    path = tmp_path / "audit.db"
    make(path)
    assert words in one_line_error(run("audit", "verify", "--db", str(path)))
    assert words in one_line_error(run("audit", "export", "--db", str(path)))


def test_a_malformed_published_head_exits_2_in_one_line(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.db", clock=StepClock())
    fill(log)
    log.close()
    for flag in ("--expect-head", "--expect-first"):
        line = one_line_error(run("audit", "verify", "--db", str(log.path), flag, "10:xyz"))
        assert "SEQ:HASH" in line
