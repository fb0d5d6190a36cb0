"""The tamper-evident audit log: append-only SQLite, each record chained to the one before.

Every record carries ``prev_hash`` (the hash of the record before it) and
``hash`` = SHA-256 over its own content, its sequence number and ``prev_hash``.
Editing a record breaks its own hash; deleting or reordering records breaks the
chain (``prev_hash`` or the contiguous sequence); cutting records off the end
is caught by the ``head`` row, written in the same transaction as each record.
Triggers refuse UPDATE and DELETE so that only a deliberate attacker (who
drops them) can change history, and ``verify`` then says where.

Someone who rewrites the whole chain consistently can only be caught against a
head hash kept elsewhere: ``AuditLog.head()`` gives it for publishing, and
``verify(..., expected_head=...)`` checks against it.

Retention moves a prefix of the chain, unchanged, into an archive database and
records the last archived hash as the live log's ``anchor``; the archive and the
live log then verify as one chain (``verify(db, archive=...)``).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from operator import attrgetter
from pathlib import Path
from typing import Any, TextIO

from scheduler.store.transaction import immediate
from scheduler.store.wal import Checkpointer, tune_writer

GENESIS = "0" * 64
EXPORT_FORMATS = ("csv", "jsonl")
FIELDS = (
    "seq",
    "ts",
    "time",
    "user",
    "source_ip",
    "object",
    "operation",
    "params",
    "result",
    "reason",
    "correlation_id",
    "prev_hash",
    "hash",
)

_SCHEMA = """
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

_NO_UPDATE = """CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"""
_NO_DELETE = """CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;"""
_MOVED = "does not continue the chain head"
# The database keeps the chain itself: a record must follow the head (next sequence
# number, the head's hash as its prev_hash), and inserting it moves the head.
_CONTINUES = """CREATE TRIGGER IF NOT EXISTS audit_continues_head BEFORE INSERT ON audit
WHEN NEW.seq != (SELECT seq + 1 FROM chain WHERE name = 'head')
  OR NEW.prev_hash != (SELECT hash FROM chain WHERE name = 'head')
BEGIN SELECT RAISE(ABORT, 'audit record does not continue the chain head'); END;"""
_MOVES_HEAD = """CREATE TRIGGER IF NOT EXISTS audit_moves_head AFTER INSERT ON audit
BEGIN UPDATE chain SET seq = NEW.seq, hash = NEW.hash WHERE name = 'head'; END;"""
_TRIGGERS = "\n".join((_NO_UPDATE, _NO_DELETE, _CONTINUES, _MOVES_HEAD))


class AuditError(Exception):
    """Base of the audit log's errors."""


class AuditUnavailable(AuditError):
    """The audit database cannot be written now (locked, read-only, disk full): retry later."""


class AuditQueryError(AuditError):
    """A query or export argument is invalid (bad time, unknown format)."""


@dataclass(frozen=True)
class AuditEntry:
    """What a caller records; the log adds time, sequence number and hashes."""

    user: str
    source_ip: str
    object: str
    operation: str
    result: str
    reason: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    correlation_id: str = ""


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    ts: float
    user: str
    source_ip: str
    object: str
    operation: str
    params: str  # canonical JSON, exactly as hashed
    result: str
    reason: str
    correlation_id: str
    prev_hash: str
    hash: str

    def row(self) -> tuple[Any, ...]:
        """The record as stored: one value per column, in column order."""
        return _ROW(self)

    def expected_hash(self) -> str:
        """The hash this record must carry: every other field, chained to ``prev_hash``."""
        return record_hash(*self.row()[:-1])

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "time": _iso(self.ts),
            "user": self.user,
            "source_ip": self.source_ip,
            "object": self.object,
            "operation": self.operation,
            "params": json.loads(self.params),
            "result": self.result,
            "reason": self.reason,
            "correlation_id": self.correlation_id,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


# The table's columns are AuditRecord's fields, in order: one definition for
# the hash input, the stored row and both statements. (The names are our own
# field names, never input, so building the SQL from them is safe.)
_COLUMNS = tuple(f.name for f in fields(AuditRecord))
_ROW = attrgetter(*_COLUMNS)
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM audit"  # noqa: S608
_ROW_PARAMS = "(" + ",".join("?" * len(_COLUMNS)) + ")"
_INSERT = f"INSERT INTO audit ({', '.join(_COLUMNS)}) VALUES {_ROW_PARAMS}"  # noqa: S608
# SQLite binds at most 32,766 parameters per statement (12 a record); bigger batches are
# chunked inside one explicit transaction.
_MAX_ROWS = 2500


def _insert_sql(n: int) -> str:
    # Only the number of rows varies, never a value: every value is bound.
    return f"INSERT INTO audit ({', '.join(_COLUMNS)}) VALUES {','.join([_ROW_PARAMS] * n)}"  # noqa: S608


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of ``verify``: ``ok``, how many records were checked, and where it broke."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    bad_seq: int | None = None
    problem: str = ""

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.checked} records verified, head {self.head_seq} {self.head_hash}"
        return f"TAMPERED at record {self.bad_seq}: {self.problem} ({self.checked} verified before)"


def canonical_params(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def record_hash(
    seq: int,
    ts: float,
    user: str,
    source_ip: str,
    obj: str,
    operation: str,
    params: str,
    result: str,
    reason: str,
    correlation_id: str,
    prev_hash: str,
) -> str:
    # Each field length-prefixed: boundaries stay unambiguous ("ab","c" != "a","bc")
    # whatever the fields contain, and it is several times cheaper than a JSON encoding.
    parts = (str(seq), repr(ts), user, source_ip, obj, operation, params, result, reason,
             correlation_id)  # fmt: skip
    body = "".join(f"{len(p)}:{p}" for p in parts)
    return hashlib.sha256(f"{prev_hash}:{body}".encode()).hexdigest()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(value: str | float | None) -> float | None:
    """Unix seconds from a number, a numeric string or an ISO 8601 time (naive means UTC)."""
    if value is None or isinstance(value, float | int):
        return None if value is None else float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise AuditQueryError(f"not a time: {value!r} (ISO 8601 or unix seconds)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def _connect(path: Path, timeout: float) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: a record the caller was told is written survives a power cut, not only a crash.
    db.execute("PRAGMA synchronous=FULL")
    tune_writer(db)  # the service checkpoints in the background
    return db


def _row(r: tuple[Any, ...]) -> AuditRecord:
    return AuditRecord(*r)


class AuditLog:
    """Append-only, hash-chained audit records in one SQLite file.

    Safe to share between threads (one lock) and between processes (each append
    reads the head inside its own write transaction).
    """

    def __init__(
        self,
        path: Path,
        *,
        clock: Callable[[], float] = time.time,
        retention_seconds: float | None = None,
        archive_path: Path | None = None,
        busy_timeout: float = 5.0,
    ) -> None:
        if retention_seconds is not None and archive_path is None:
            raise AuditError("retention needs an archive_path: archived records are kept there")
        self.path = Path(path)
        self.clock = clock
        self.retention_seconds = retention_seconds
        self.archive_path = archive_path
        self._lock = threading.Lock()
        self._head: tuple[int, str] | None = None  # (seq, hash), as last written or read
        self._checkpointer = Checkpointer(self.path)
        try:
            self._db = _connect(self.path, busy_timeout)
            self._db.executescript(_SCHEMA + _TRIGGERS)
        except sqlite3.Error as e:
            raise AuditUnavailable(f"cannot open audit log {self.path}: {e}") from e

    def close(self) -> None:
        with self._lock:
            self._checkpointer.close()
            self._db.close()

    # ------------------------------------------------------------------ writing

    def checkpoint(self) -> None:
        """Move the WAL into the database file (``scheduler.store.wal``); beside writers."""
        try:
            self._checkpointer.checkpoint()
        except sqlite3.Error as e:
            raise AuditUnavailable(f"checkpoint {self.path}: {e}") from e

    def append(self, entry: AuditEntry) -> AuditRecord:
        return self.append_many([entry])[0]

    def append_many(self, entries: list[AuditEntry]) -> list[AuditRecord]:
        """Write entries in one transaction, in order; raise ``AuditUnavailable`` if not written.

        The head is cached between appends; the database's own triggers check that
        the first record continues it and move it along. So a batch is one statement,
        one call into SQLite (each call is a wait for the GIL when the event loop is
        busy), and one fsync. If another writer moved the head, the cache is
        refreshed and the batch rebuilt once.
        """
        if not entries:
            return []
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._head is None:
                        self._head = self._db.execute(
                            "SELECT seq, hash FROM chain WHERE name = 'head'"
                        ).fetchone()
                    out = self._records(entries, *self._head)
                    self._insert([r.row() for r in out])
                except sqlite3.IntegrityError as e:
                    self._head = None
                    if attempt == 1 and _MOVED in str(e):
                        continue
                    raise AuditUnavailable(f"audit log {self.path} not written: {e}") from e
                except sqlite3.Error as e:
                    self._head = None
                    raise AuditUnavailable(f"audit log {self.path} not written: {e}") from e
                self._head = (out[-1].seq, out[-1].hash)
                return out
        raise AssertionError("unreachable")  # pragma: no cover

    def _records(self, entries: list[AuditEntry], seq: int, prev: str) -> list[AuditRecord]:
        out = []
        ts = float(self.clock())
        for e in entries:
            seq += 1
            # Built field by field in column order (no dataclass round trips):
            # this runs for every request the service answers.
            fields_ = (seq, ts, e.user, e.source_ip, e.object, e.operation,
                       canonical_params(e.params), e.result, e.reason, e.correlation_id, prev)  # fmt: skip
            prev = record_hash(*fields_)
            out.append(AuditRecord(*fields_, prev))
        return out

    def _insert(self, rows: list[tuple[Any, ...]]) -> None:
        if len(rows) <= _MAX_ROWS:
            self._db.execute(_insert_sql(len(rows)), [v for r in rows for v in r])
            return
        with immediate(self._db):
            for i in range(0, len(rows), _MAX_ROWS):
                chunk = rows[i : i + _MAX_ROWS]
                self._db.execute(_insert_sql(len(chunk)), [v for r in chunk for v in r])

    # ------------------------------------------------------------------ reading

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record: publish it elsewhere to pin the whole history."""
        with self._lock:
            seq, h = self._db.execute("SELECT seq, hash FROM chain WHERE name = 'head'").fetchone()
        return int(seq), str(h)

    def query(
        self,
        *,
        since: str | float | None = None,
        until: str | float | None = None,
        user: str | None = None,
        operation: str | None = None,
        correlation_id: str | None = None,
        limit: int | None = None,
    ) -> list[AuditRecord]:
        """Records in chain order; ``since`` inclusive, ``until`` exclusive; ``limit`` keeps the newest."""
        with self._lock:
            return _query(
                self._db,
                since=parse_time(since),
                until=parse_time(until),
                user=user,
                operation=operation,
                correlation_id=correlation_id,
                limit=limit,
            )

    # ------------------------------------------------------------------ retention

    def apply_retention(self) -> int:
        """Archive records older than the retention period; how many moved (0 without retention)."""
        if self.retention_seconds is None or self.archive_path is None:
            return 0
        return self.archive(self.clock() - self.retention_seconds, self.archive_path)

    def archive(self, before: float, archive_path: Path) -> int:
        """Move the oldest records (the chain prefix older than ``before``) to ``archive_path``.

        The archive is written and committed first; a crash before the live log
        is trimmed leaves records in both, and the next run skips what the
        archive already holds, so nothing is lost or doubled.
        """
        with self._lock:
            try:
                arch = _connect(Path(archive_path), 5.0)
                try:
                    arch.executescript(_SCHEMA + _TRIGGERS)
                    a_seq, a_hash = arch.execute(
                        "SELECT seq, hash FROM chain WHERE name = 'head'"
                    ).fetchone()
                    anchor_seq, anchor_hash = self._db.execute(
                        "SELECT seq, hash FROM chain WHERE name = 'anchor'"
                    ).fetchone()
                    if a_seq == 0 and anchor_seq > 0:
                        # A fresh archive continues where the last one ended.
                        arch.execute(
                            "UPDATE chain SET seq = ?, hash = ? WHERE name IN ('head', 'anchor')",
                            (anchor_seq, anchor_hash),
                        )
                        a_seq, a_hash = anchor_seq, anchor_hash
                    elif a_seq < anchor_seq or (a_seq == anchor_seq and a_hash != anchor_hash):
                        raise AuditError(
                            f"archive {archive_path} ends at record {a_seq} but the log was "
                            f"archived up to {anchor_seq}: use the matching archive"
                        )
                    rows = [_row(r) for r in self._db.execute(_SELECT + " ORDER BY seq").fetchall()]
                    prefix: list[AuditRecord] = []
                    for r in rows:
                        if r.ts >= before:
                            break
                        prefix.append(r)
                    if not prefix:
                        return 0
                    new = [r for r in prefix if r.seq > a_seq]
                    # The archive's triggers check each record continues its head and move it.
                    with immediate(arch):
                        arch.executemany(_INSERT, [r.row() for r in new])
                    last = prefix[-1]
                finally:
                    arch.close()
                # Retention is the one sanctioned delete: lift the guard inside the transaction.
                with immediate(self._db):
                    self._db.execute("DROP TRIGGER audit_no_delete")
                    self._db.execute("DELETE FROM audit WHERE seq <= ?", (last.seq,))
                    self._db.execute(
                        "UPDATE chain SET seq = ?, hash = ? WHERE name = 'anchor'",
                        (last.seq, last.hash),
                    )
                    self._db.execute(_NO_DELETE)
            except sqlite3.Error as e:
                raise AuditUnavailable(f"archiving {self.path} failed: {e}") from e
        return len(prefix)


def _query(
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
    sql = _SELECT
    if where:
        sql += " WHERE " + " AND ".join(where)
    if limit is not None:
        sql = f"SELECT * FROM ({sql} ORDER BY seq DESC LIMIT ?) ORDER BY seq"  # noqa: S608
        args.append(max(0, int(limit)))
    else:
        sql += " ORDER BY seq"
    return [_row(r) for r in db.execute(sql, args).fetchall()]


# ---------------------------------------------------------------------- verify / export


def _open_ro(path: Path) -> contextlib.closing[sqlite3.Connection]:
    if not Path(path).exists():
        raise AuditError(f"no audit database at {path}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    except sqlite3.Error as e:
        raise AuditUnavailable(f"cannot open {path}: {e}") from e
    return contextlib.closing(db)


def _verify_chain(db: sqlite3.Connection) -> VerifyResult:
    chain = dict(
        (name, (seq, h)) for name, seq, h in db.execute("SELECT name, seq, hash FROM chain")
    )
    seq, prev = chain["anchor"]
    checked = 0
    for row in db.execute(_SELECT + " ORDER BY seq"):
        r = _row(row)
        expected_seq = seq + 1
        if r.seq != expected_seq:
            what = (
                f"record {expected_seq} is missing (deleted)"
                if r.seq > expected_seq
                else f"record {r.seq} appears after {seq} (reordered)"
            )
            return VerifyResult(False, checked, seq, prev, expected_seq, what)
        recomputed = r.expected_hash()
        if recomputed != r.hash:
            return VerifyResult(
                False,
                checked,
                seq,
                prev,
                r.seq,
                "content does not match its hash (edited or moved)",
            )
        if r.prev_hash != prev:
            return VerifyResult(
                False,
                checked,
                seq,
                prev,
                r.seq,
                f"does not follow record {seq} (chain broken: reordered, inserted or rehashed)",
            )
        seq, prev = r.seq, r.hash
        checked += 1
    head_seq, head_hash = chain["head"]
    if (seq, prev) != (head_seq, head_hash):
        if head_seq > seq:
            problem = f"records {seq + 1}..{head_seq} are missing (truncated)"
        else:
            problem = f"the head says record {head_seq} but the chain ends at {seq}"
        return VerifyResult(False, checked, seq, prev, seq + 1, problem)
    return VerifyResult(True, checked, seq, prev)


def verify(
    db: Path, *, archive: Path | None = None, expected_head: str | None = None
) -> VerifyResult:
    """Check the whole chain of ``db`` (and of its ``archive`` before it, if given).

    ``expected_head``: a head hash published earlier; the chain must contain it
    (as its head, or as an earlier record when the log has grown since).
    """
    offset = 0
    if archive is not None:
        with _open_ro(archive) as a:
            ar = _verify_chain(a)
        if not ar.ok:
            return VerifyResult(False, ar.checked, ar.head_seq, ar.head_hash, ar.bad_seq,
                                f"in the archive: {ar.problem}")  # fmt: skip
        with _open_ro(db) as d:
            anchor = d.execute("SELECT seq, hash FROM chain WHERE name = 'anchor'").fetchone()
        if tuple(anchor) != (ar.head_seq, ar.head_hash):
            return VerifyResult(
                False,
                ar.checked,
                ar.head_seq,
                ar.head_hash,
                ar.head_seq + 1,
                f"the log continues from record {anchor[0]} but the archive ends at {ar.head_seq}",
            )
        offset = ar.checked
    with _open_ro(db) as d:
        res = _verify_chain(d)
        if res.ok and expected_head is not None and expected_head != res.head_hash:
            found = d.execute("SELECT seq FROM audit WHERE hash = ?", (expected_head,)).fetchone()
            if found is None:
                return VerifyResult(
                    False, res.checked + offset, res.head_seq, res.head_hash, None,
                    f"the published head {expected_head} is not in the chain (history rewritten)",
                )  # fmt: skip
    return VerifyResult(
        res.ok, res.checked + offset, res.head_seq, res.head_hash, res.bad_seq, res.problem
    )


def iter_export(records: list[AuditRecord], fmt: str) -> Iterator[str]:
    """The records as CSV (header first) or JSON Lines, one string per line."""
    if fmt not in EXPORT_FORMATS:
        raise AuditQueryError(f"unknown format {fmt!r}: one of {', '.join(EXPORT_FORMATS)}")
    if fmt == "jsonl":
        for r in records:
            yield json.dumps(r.as_dict(), sort_keys=True) + "\n"
        return

    class _Line:
        value = ""

        def write(self, s: str) -> int:
            self.value = s
            return len(s)

    line = _Line()
    w = csv.writer(line, lineterminator="\n")
    w.writerow(FIELDS)
    yield line.value
    for r in records:
        d = r.as_dict()
        d["params"] = r.params
        w.writerow([d[f] for f in FIELDS])
        yield line.value


def export(
    db: Path,
    *,
    out: TextIO,
    fmt: str = "jsonl",
    since: str | float | None = None,
    until: str | float | None = None,
    user: str | None = None,
    operation: str | None = None,
) -> int:
    """Write the matching records to ``out``; how many were written."""
    if fmt not in EXPORT_FORMATS:
        raise AuditQueryError(f"unknown format {fmt!r}: one of {', '.join(EXPORT_FORMATS)}")
    with _open_ro(db) as d:
        records = _query(
            d, since=parse_time(since), until=parse_time(until), user=user, operation=operation
        )
    for line in iter_export(records, fmt):
        out.write(line)
    return len(records)
