"""The tamper-evident audit log: append-only SQLite, each record chained to the one before.

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

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

from scheduler.audit.errors import AuditError, AuditUnavailable
from scheduler.audit.records import (
    AuditEntry,
    AuditRecord,
    canonical_params,
    parse_time,
    record_hash,
    row_of,
)
from scheduler.audit.schema import (
    DECISION_OPS,
    INSERT,
    MAX_ROWS,
    MOVED,
    NO_DELETE,
    PURGE_OPS,
    RECEIPT_OPS,
    REFERENCES,
    SCHEMA,
    SELECT,
    TRIGGERS,
    connect,
    insert_sql,
    open_ro,
    query_records,
)
from scheduler.audit.verify import ChainPoint
from scheduler.store.transaction import immediate
from scheduler.store.wal import Checkpointer


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
            self._db = connect(self.path, busy_timeout)
            self._db.executescript(SCHEMA + TRIGGERS + REFERENCES)
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
                    if attempt == 1 and MOVED in str(e):
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
        if len(rows) <= MAX_ROWS:
            self._db.execute(insert_sql(len(rows)), [v for r in rows for v in r])
            return
        with immediate(self._db):
            for i in range(0, len(rows), MAX_ROWS):
                chunk = rows[i : i + MAX_ROWS]
                self._db.execute(insert_sql(len(chunk)), [v for r in chunk for v in r])

    # ------------------------------------------------------------------ reading

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record: publish it elsewhere to pin the whole history."""
        with self._lock:
            seq, h = self._db.execute("SELECT seq, hash FROM chain WHERE name = 'head'").fetchone()
        return int(seq), str(h)

    def recorded_decisions(self, ids: Collection[str]) -> set[str]:
        """Which of these decision ids have their ``decision.*`` record in the live log."""
        return self._referenced("decision", DECISION_OPS, ids)

    def recorded_receipts(self, keys: Collection[str]) -> set[str]:
        """Which of these alert-state keys have their receipt (``alert.queued`` or
        ``alert.ignored``) in the live log."""
        return self._referenced("key", RECEIPT_OPS, keys)

    def _referenced(self, field: str, ops: str, values: Collection[str]) -> set[str]:
        found: set[str] = set()
        todo = list(values)
        with self._lock:
            try:
                for i in range(0, len(todo), 500):
                    chunk = todo[i : i + 500]
                    marks = ",".join("?" * len(chunk))
                    # The field, the operations and the placeholders are our own constants;
                    # every value is bound. The terms match the partial index's, so it is used.
                    sql = (
                        f"SELECT json_extract(params, '$.{field}') FROM audit "  # noqa: S608
                        f"WHERE {ops} AND json_extract(params, '$.{field}') IN ({marks})"
                    )
                    found.update(str(r[0]) for r in self._db.execute(sql, chunk))
            except sqlite3.Error as e:
                raise AuditUnavailable(f"audit log {self.path}: {e}") from e
        return found

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
            return query_records(
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

    def purge(self, before: float) -> tuple[int, ChainPoint] | None:
        """Delete archived records older than ``before``, the end of their retention period.

        The archive's chain then starts after the last record deleted: that point is
        returned, for the caller to record and publish, since a chain that does not start
        at record 1 verifies only against it (``verify(..., expected_first=...)``).
        None when nothing was old enough (or nothing is archived).
        """
        if self.archive_path is None or not self.archive_path.exists():
            return None
        with self._lock:
            try:
                arch = connect(self.archive_path, 5.0)
                try:
                    (last,) = arch.execute(
                        "SELECT max(seq) FROM audit WHERE seq < coalesce("
                        "(SELECT min(seq) FROM audit WHERE ts >= ?), 1 << 62)",
                        (before,),
                    ).fetchone()
                    if last is None:
                        return None
                    h, n = arch.execute(
                        "SELECT (SELECT hash FROM audit WHERE seq = ?), "
                        "(SELECT count(*) FROM audit WHERE seq <= ?)",
                        (last, last),
                    ).fetchone()
                    # The one other sanctioned delete: lift the guard inside the transaction.
                    with immediate(arch):
                        arch.execute("DROP TRIGGER audit_no_delete")
                        arch.execute("DELETE FROM audit WHERE seq <= ?", (last,))
                        arch.execute(
                            "UPDATE chain SET seq = ?, hash = ? WHERE name = 'anchor'", (last, h)
                        )
                        arch.execute(NO_DELETE)
                finally:
                    arch.close()
            except sqlite3.Error as e:
                raise AuditUnavailable(f"purging {self.archive_path} failed: {e}") from e
        return int(n), ChainPoint(int(last), str(h))

    def purged_through(self) -> ChainPoint | None:
        """Where the latest purge left the chain starting, as its ``audit.purge`` record says
        (looked for in the live log, then in the archive). Reads on connections of its
        own, through a small index: the background verifier asks on every sweep, and must
        neither scan the log nor hold up the writers."""
        for path in (self.path, self.archive_path):
            if path is None or not path.exists():
                continue
            try:
                with open_ro(path) as db:
                    row = db.execute(
                        f"SELECT params FROM audit WHERE {PURGE_OPS} ORDER BY seq DESC LIMIT 1"  # noqa: S608
                    ).fetchone()
            except sqlite3.Error as e:
                raise AuditUnavailable(f"audit log {path}: {e}") from e
            if row is not None:
                p = json.loads(row[0])
                return ChainPoint(int(p["through_seq"]), str(p["through_hash"]))
        return None

    def archive(self, before: float, archive_path: Path) -> int:
        """Move the oldest records (the chain prefix older than ``before``) to ``archive_path``.

        The archive is written and committed first; a crash before the live log
        is trimmed leaves records in both, and the next run skips what the
        archive already holds, so nothing is lost or doubled.
        """
        with self._lock:
            try:
                arch = connect(Path(archive_path), 5.0)
                try:
                    arch.executescript(SCHEMA + TRIGGERS + REFERENCES)
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
                    # The prefix: every record before the first one not older than ``before``
                    # (found through the time index, not by reading the whole log).
                    (keep,) = self._db.execute(
                        "SELECT min(seq) FROM audit WHERE ts >= ?", (before,)
                    ).fetchone()
                    sql = SELECT + " ORDER BY seq"
                    args: tuple[int, ...] = ()
                    if keep is not None:
                        sql = SELECT + " WHERE seq < ? ORDER BY seq"
                        args = (int(keep),)
                    prefix = [row_of(r) for r in self._db.execute(sql, args).fetchall()]
                    if not prefix:
                        return 0
                    new = [r for r in prefix if r.seq > a_seq]
                    # The archive's triggers check each record continues its head and move it.
                    with immediate(arch):
                        arch.executemany(INSERT, [r.row() for r in new])
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
                    self._db.execute(NO_DELETE)
            except sqlite3.Error as e:
                raise AuditUnavailable(f"archiving {self.path} failed: {e}") from e
        return len(prefix)
