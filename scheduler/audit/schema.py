"""The audit database: its tables, the triggers that keep the chain, and plain reads.

The database keeps the chain itself: triggers refuse UPDATE and DELETE, refuse
a record that does not continue the head, and move the head with each insert.
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from scheduler.audit.errors import AuditUnreadable
from scheduler.audit.records import COLUMNS, AuditRecord, row_of
from scheduler.store.wal import tune_writer

SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    user TEXT NOT NULL,
    source_ip TEXT NOT NULL,
    object TEXT NOT NULL,
    operation TEXT NOT NULL,
    params TEXT NOT NULL,
    result TEXT NOT NULL,
    reason TEXT NOT NULL,
    correlation_id TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_ts ON audit (ts);
-- One row each: 'head' is the last record written, 'anchor' the last one archived
-- (the record the live chain continues from). Both start at GENESIS.
CREATE TABLE IF NOT EXISTS chain (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT OR IGNORE INTO chain (name, seq, hash) VALUES ('head', 0, '0000000000000000000000000000000000000000000000000000000000000000');
INSERT OR IGNORE INTO chain (name, seq, hash) VALUES ('anchor', 0, '0000000000000000000000000000000000000000000000000000000000000000');
"""

NO_UPDATE = """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"""
NO_DELETE = """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"""
MOVED = "does not continue the chain head"
# The database keeps the chain itself: a record must follow the head (next sequence
# number, the head's hash as its prev_hash), and inserting it moves the head.
CONTINUES = """CREATE TRIGGER IF NOT EXISTS audit_continues_head BEFORE INSERT ON audit
WHEN NEW.seq != (SELECT seq + 1 FROM chain WHERE name = 'head')
  OR NEW.prev_hash != (SELECT hash FROM chain WHERE name = 'head')
BEGIN SELECT RAISE(ABORT, 'audit record does not continue the chain head'); END;"""
MOVES_HEAD = """CREATE TRIGGER IF NOT EXISTS audit_moves_head AFTER INSERT ON audit
BEGIN UPDATE chain SET seq = NEW.seq, hash = NEW.hash WHERE name = 'head'; END;"""
TRIGGERS = "\n".join((NO_UPDATE, NO_DELETE, CONTINUES, MOVES_HEAD))
# What the service's records refer to, indexed so that a restart can tell which decisions
# and alert receipts a crash kept out of the log (only those records are indexed).
DECISION_OPS = "operation GLOB 'decision.*'"
RECEIPT_OPS = "operation IN ('alert.queued', 'alert.ignored')"
PURGE = "audit.purge"  # the record a purge leaves: where the chain now starts
PURGE_OPS = f"operation = '{PURGE}'"
REFERENCES = f"""
CREATE INDEX IF NOT EXISTS audit_decision ON audit (json_extract(params, '$.decision'))
    WHERE {DECISION_OPS};
CREATE INDEX IF NOT EXISTS audit_receipt ON audit (json_extract(params, '$.key'))
    WHERE {RECEIPT_OPS};
CREATE INDEX IF NOT EXISTS audit_purge ON audit (seq) WHERE {PURGE_OPS};
"""


SELECT = f"SELECT {', '.join(COLUMNS)} FROM audit"  # noqa: S608
ROW_PARAMS = "(" + ",".join("?" * len(COLUMNS)) + ")"
INSERT = f"INSERT INTO audit ({', '.join(COLUMNS)}) VALUES {ROW_PARAMS}"  # noqa: S608
# SQLite binds at most 32,766 parameters per statement (12 a record); bigger batches are
# chunked inside one explicit transaction.
MAX_ROWS = 2500


def insert_sql(n: int) -> str:
    # Only the number of rows varies, never a value: every value is bound.
    return f"INSERT INTO audit ({', '.join(COLUMNS)}) VALUES {','.join([ROW_PARAMS] * n)}"  # noqa: S608


def connect(path: Path, timeout: float) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: a record the caller was told is written survives a power cut, not only a crash.
    db.execute("PRAGMA synchronous=FULL")
    tune_writer(db)  # the service checkpoints in the background
    return db


def query_records(
    db: sqlite3.Connection,
    *,
    since: float | None,
    until: float | None,
    user: str | None,
    operation: str | None,
    correlation_id: str | None = None,
    limit: int | None = None,
) -> list[AuditRecord]:
    filters = (
        ("ts >= ?", since),
        ("ts < ?", until),
        ("user = ?", user),
        ("operation = ?", operation),
        ("correlation_id = ?", correlation_id),
    )
    where = [cond for cond, value in filters if value is not None]
    args: list[float | str | int] = [value for _, value in filters if value is not None]
    # Only the fixed fragments above are joined into the SQL; every value is bound.
    sql = SELECT
    if where:
        sql += " WHERE " + " AND ".join(where)
    if limit is not None:
        sql = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT ?) ORDER BY seq"  # noqa: S608
        args.append(max(0, int(limit)))
    else:
        sql += " ORDER BY seq"
    return [row_of(r) for r in db.execute(sql, args).fetchall()]


def open_ro(path: Path) -> contextlib.closing[sqlite3.Connection]:
    """A read-only connection to an audit database; ``AuditUnreadable`` if it is missing,
    corrupt, or not an audit log (no ``audit`` and ``chain`` tables)."""
    path = Path(path)
    if not path.is_file():
        raise AuditUnreadable(f"no audit database at {path}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as e:
        raise AuditUnreadable(f"cannot open {path}: {e}") from None
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error as e:
        db.close()
        raise AuditUnreadable(f"{path} is not a readable database: {e}") from None
    if not {"audit", "chain"} <= tables:
        db.close()
        what = "an empty database" if not tables else "a database without the audit tables"
        raise AuditUnreadable(f"{path} is not an audit log ({what})")
    return contextlib.closing(db)
