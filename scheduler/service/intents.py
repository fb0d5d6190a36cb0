"""The durable intent queue: every alert state seen once, actionable ones queued for the worker.

One SQLite table keyed on the alert's idempotency key (fingerprint, startsAt,
status). ``record_many`` inserts the alerts of many notifications in one
fsynced transaction and says, per notification, which were new; replays,
group resends and HA duplicates insert nothing. The worker reads ``pending``
rows, acts on them and ``finish``es them. Rows still pending after a crash may
have been acted on just before it: the caller checks the scheduler's decisions
for their correlation ids before acting again.

Writes go through one connection (under a lock, usually from a group-commit
thread); reads use a second one, so the event loop never waits for an fsync
to read the queue (WAL readers do not block on writers).
"""

from __future__ import annotations

import dataclasses
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduler.service.errors import IntentStoreUnavailable
from scheduler.service.payload import Intent
from scheduler.store.transaction import immediate
from scheduler.store.wal import Checkpointer, tune_writer

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    correlation_id TEXT NOT NULL,
    alert TEXT NOT NULL,
    pool TEXT NOT NULL,
    action TEXT NOT NULL,
    firing INTEGER NOT NULL,
    state TEXT NOT NULL,        -- pending | done | failed | ignored
    received_at REAL NOT NULL,  -- wall clock, for the alert-to-action latency
    updated_at REAL NOT NULL,
    outcome TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, id);
"""
# Columns added since the first schema: (name, definition), added to older databases.
_ADDED = (
    # The alert across its states (``Alert.pair``): a resolved one makes a later firing late.
    ("pair", "TEXT NOT NULL DEFAULT ''"),
    # Who delivered it, and whether its receipt is known written to the audit log (rows of
    # an older database were audited as they arrived; new rows say so explicitly).
    ("user", "TEXT NOT NULL DEFAULT ''"),
    ("source_ip", "TEXT NOT NULL DEFAULT ''"),
    ("receipt", "INTEGER NOT NULL DEFAULT 1"),
    # The model a P0 latency alert is about and the request rate it carried (NULL: none):
    # what sizes the grant, kept so that a restart acts on the same numbers.
    ("model", "TEXT NOT NULL DEFAULT ''"),
    ("rate_rps", "REAL"),
)
# No index on ``receipt``: it is read once, at startup, and an index would cost a write
# per alert state and another when its flag is set.
_INDEXES = """
CREATE INDEX IF NOT EXISTS alerts_resolved ON alerts (pair) WHERE firing = 0;
DROP INDEX IF EXISTS alerts_unreceipted;
"""
RECENT_KEYS = 100_000
LATE_FIRING = "a firing delivered after its resolved (fingerprint, startsAt): the alert is over"
FINAL_STATES = ("done", "failed")


@dataclass(frozen=True)
class QueuedIntent:
    id: int
    key: str
    correlation_id: str
    alert: str
    pool: str
    action: str
    firing: bool
    received_at: float
    model: str = ""
    rate_rps: float | None = None


@dataclass(frozen=True)
class Unreceipted:
    """An alert state whose receipt is not known written to the audit log."""

    intent: Intent
    state: str
    user: str
    source_ip: str


@dataclass(frozen=True)
class Outcome:
    """How the worker settled one intent: ``state`` is ``done`` or ``failed``."""

    id: int
    state: str
    outcome: str


_COLUMNS = (
    "key, correlation_id, alert, pool, action, firing, state, received_at, updated_at, outcome, "
    "pair, user, source_ip, receipt, model, rate_rps"
)
_PLACEHOLDERS = "(" + ",".join("?" * len(_COLUMNS.split(","))) + ")"
# SQLite binds at most 32,766 parameters per statement (16 a row); bigger batches are
# chunked inside one explicit transaction.
_MAX_ROWS = 2000


def _insert(n: int) -> str:
    values = ",".join([_PLACEHOLDERS] * n)
    # Only the row count varies, never a value: every value is bound.
    return f"INSERT OR IGNORE INTO alerts ({_COLUMNS}) VALUES {values} RETURNING key, id"  # noqa: S608


def _flat(rows: Sequence[tuple[object, ...]]) -> list[object]:
    return [v for r in rows for v in r]


_PENDING = (
    "SELECT id, key, correlation_id, alert, pool, action, firing, received_at, model, rate_rps "
    "FROM alerts WHERE state = 'pending' ORDER BY id"
)


def _queued(r: tuple[Any, ...]) -> QueuedIntent:
    return QueuedIntent(
        int(r[0]), str(r[1]), str(r[2]), str(r[3]), str(r[4]), str(r[5]), bool(r[6]),
        float(r[7]), str(r[8]), None if r[9] is None else float(r[9]),
    )  # fmt: skip


def _connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    # FULL: the webhook answers 2xx only after the commit reached the disk.
    db.execute("PRAGMA synchronous=FULL")
    tune_writer(db)  # the service checkpoints in the background
    return db


class IntentQueue:
    def __init__(self, path: Path, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._rlock = threading.Lock()
        # Keys known recorded (the latest ``RECENT_KEYS``): their replays skip a look-up.
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._checkpointer = Checkpointer(self.path)
        try:
            self._db = _connect(self.path, busy_timeout)
            self._db.executescript(_SCHEMA)
            have = {r[1] for r in self._db.execute("PRAGMA table_info(alerts)")}
            for name, definition in _ADDED:
                if name not in have:
                    # Names and definitions are our own constants, never input.
                    self._db.execute(f"ALTER TABLE alerts ADD COLUMN {name} {definition}")
            self._db.executescript(_INDEXES)
            self._rdb = _connect(self.path, busy_timeout)
        except sqlite3.Error as e:
            raise IntentStoreUnavailable(f"cannot open intent queue {self.path}: {e}") from e

    def close(self) -> None:
        with self._lock, self._rlock:
            self._checkpointer.close()
            self._db.close()
            self._rdb.close()

    def checkpoint(self) -> None:
        """Move the WAL into the database file (``scheduler.store.wal``); beside writers."""
        try:
            self._checkpointer.checkpoint()
        except sqlite3.Error as e:
            raise IntentStoreUnavailable(f"checkpoint {self.path}: {e}") from e

    def _transaction(self, body: Sequence[tuple[str, tuple[object, ...]]]) -> list[tuple[int, int]]:
        """Run statements in one transaction; the rowcount and last row id of each."""
        counts = []
        with self._lock:
            try:
                with immediate(self._db):
                    for sql, args in body:
                        cur = self._db.execute(sql, args)
                        counts.append((cur.rowcount, cur.lastrowid or 0))
            except sqlite3.Error as e:
                raise IntentStoreUnavailable(f"intent queue {self.path}: {e}") from e
        return counts

    def record_many(
        self,
        batches: list[tuple[list[Intent], float]],
        senders: Sequence[tuple[str, str]] | None = None,
    ) -> list[list[tuple[int, Intent]]]:
        """Persist every alert state not seen before, for many notifications in one commit.

        ``batches``: (intents, received_at) per notification; ``senders``: (user, source
        address) of each, kept for its receipt. Returns the new intents of each, with
        their row ids (what ``finish`` takes). A key seen twice in one batch is new for
        its first notification only.

        One statement (a multi-row ``INSERT OR IGNORE ... RETURNING``) is one implicit
        transaction: one call into SQLite and one fsync for the whole batch.
        """
        ids: dict[str, int] = {}
        with self._lock:
            try:
                late = self._late_firings(batches)
                who = senders or [("", "")] * len(batches)
                rows = [
                    (it.key, it.correlation_id, it.alert, it.pool, it.action, int(it.firing),
                     "pending" if it.action and it.key not in late else "ignored", received,
                     received, LATE_FIRING if it.key in late else it.reason, it.pair, user, ip, 0,
                     it.model, it.rate_rps)
                    for (intents, received), (user, ip) in zip(batches, who, strict=True)
                    for it in intents
                ]  # fmt: skip
                if not rows:
                    return [[] for _ in batches]
                if len(rows) <= _MAX_ROWS:
                    ids.update(self._db.execute(_insert(len(rows)), _flat(rows)).fetchall())
                else:
                    with immediate(self._db):
                        for i in range(0, len(rows), _MAX_ROWS):
                            chunk = rows[i : i + _MAX_ROWS]
                            ids.update(self._db.execute(_insert(len(chunk)), _flat(chunk)).fetchall())  # fmt: skip
            except sqlite3.Error as e:
                raise IntentStoreUnavailable(f"intent queue {self.path}: {e}") from e
            for intents, _ in batches:
                for it in intents:
                    self._recent[it.key] = None
            while len(self._recent) > RECENT_KEYS:
                self._recent.popitem(last=False)
        out = []
        for intents, _ in batches:
            new = []
            for it in intents:
                row_id = ids.pop(it.key, None)  # popped: a second copy is a duplicate
                if row_id is not None:
                    if it.key in late:
                        it = dataclasses.replace(it, action="", reason=LATE_FIRING)
                    new.append((row_id, it))
            out.append(new)
        return out

    def _late_firings(self, batches: list[tuple[list[Intent], float]]) -> set[str]:
        """Keys of the firings whose alert's resolved state is recorded already, or comes
        before them in these batches: recorded, never acted on (under the write lock).

        Alertmanager peers in HA and late retries deliver states out of order; a firing
        acted on after its resolved would leave the pool "firing" for ever.
        """
        # A key recorded already is a replay: nothing of it is inserted, nothing to look up.
        firing = {
            it.pair
            for intents, _ in batches
            for it in intents
            if it.firing and it.pair and it.key not in self._recent
        }
        if not firing:
            return set()
        resolved: set[str] = set()
        pairs = list(firing)
        for i in range(0, len(pairs), _MAX_ROWS):
            chunk = pairs[i : i + _MAX_ROWS]
            marks = ",".join("?" * len(chunk))
            # Only the number of placeholders varies; every value is bound.
            sql = f"SELECT pair FROM alerts WHERE firing = 0 AND pair IN ({marks})"  # noqa: S608
            resolved.update(r[0] for r in self._db.execute(sql, chunk))
        late: set[str] = set()
        seen: set[str] = set()
        for intents, _ in batches:
            for it in intents:
                if it.key in seen:
                    continue  # a duplicate: only a key's first copy can be inserted
                seen.add(it.key)
                if not it.firing:
                    resolved.add(it.pair)
                elif it.pair in resolved:
                    late.add(it.key)
        return late

    def record(self, intents: list[Intent], received_at: float) -> list[tuple[int, Intent]]:
        return self.record_many([(intents, received_at)])[0]

    def mark_receipts(self, keys: Sequence[str]) -> None:
        """These alert states' receipts are written to the audit log."""
        if keys:
            self._transaction([("UPDATE alerts SET receipt = 1 WHERE key = ?", (k,)) for k in keys])

    def unreceipted(self) -> list[Unreceipted]:
        """Alert states whose receipt is not known written, in arrival order."""
        rows = self._read(
            "SELECT key, correlation_id, alert, pool, action, firing, outcome, pair, state, "
            "user, source_ip FROM alerts WHERE receipt = 0 ORDER BY id"
        )
        out = []
        for key, cid, alert, pool, action, firing, outcome, pair, state, user, ip in rows:
            ignored = state == "ignored"
            it = Intent(str(key), str(cid), str(alert), str(pool), "" if ignored else str(action),
                        bool(firing), str(outcome) if ignored else "", str(pair))  # fmt: skip
            out.append(Unreceipted(it, str(state), str(user), str(ip)))
        return out

    def finish_many(self, batches: list[tuple[list[Outcome], float]]) -> list[None]:
        body: list[tuple[str, tuple[object, ...]]] = []
        for outcomes, now in batches:
            for o in outcomes:
                if o.state not in FINAL_STATES:
                    raise ValueError(f"unknown state {o.state!r}")
                body.append(
                    (
                        "UPDATE alerts SET state = ?, outcome = ?, updated_at = ? WHERE id = ?",
                        (o.state, o.outcome[:1000], now, o.id),
                    )
                )
        self._transaction(body)
        return [None] * len(batches)

    def _read(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self._rlock:
            try:
                return list(self._rdb.execute(sql, args).fetchall())
            except sqlite3.Error as e:
                raise IntentStoreUnavailable(f"intent queue {self.path}: {e}") from e

    def fetch_pending(self) -> list[QueuedIntent]:
        """Every pending intent, in arrival order."""
        rows = self._read(_PENDING)
        return [_queued(r) for r in rows]

    def pending_snapshot(self) -> tuple[list[QueuedIntent], int]:
        """Every pending intent, and the largest row id committed, read from one snapshot.

        Any intent committed after the snapshot has a larger id than the one returned.
        """
        with self._rlock:
            try:
                self._rdb.execute("BEGIN")
                try:
                    rows = self._rdb.execute(_PENDING).fetchall()
                    ((last,),) = self._rdb.execute("SELECT coalesce(max(id), 0) FROM alerts")
                finally:
                    self._rdb.execute("COMMIT")
            except sqlite3.Error as e:
                raise IntentStoreUnavailable(f"intent queue {self.path}: {e}") from e
        return [_queued(r) for r in rows], int(last)

    def pending(self) -> int:
        ((n,),) = self._read("SELECT count(*) FROM alerts WHERE state = 'pending'")
        return int(n)

    def states(self) -> dict[str, int]:
        """How many alert states are in each state (for tests and /healthz)."""
        rows = self._read("SELECT state, count(*) FROM alerts GROUP BY state")
        return {str(s): int(n) for s, n in rows}

    def prune(self, older_than: float) -> int:
        """Forget settled alert states last touched before ``older_than``.

        A replay of a pruned state would act again, so callers keep far longer
        than Alertmanager ever resends (its repeat_interval).
        """
        self._recent.clear()  # pruned keys are new again
        ((n, _),) = self._transaction(
            [
                (
                    "DELETE FROM alerts WHERE state IN ('done', 'failed', 'ignored') "
                    "AND updated_at < ?",
                    (older_than,),
                )
            ]
        )
        return n
