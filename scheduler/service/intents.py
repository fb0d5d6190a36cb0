"""The durable intent queue: every alert state seen once, actionable ones queued for the worker.

One SQLite table keyed on the alert's idempotency key (fingerprint, startsAt,
status). ``record`` inserts a notification's alerts in one fsynced transaction
and says which were new; replays, group resends and HA duplicates insert
nothing. The worker ``claim``s the oldest pending intent (marked ``running`` and
committed before the scheduler is called) and ``finish``es it; an intent found
``running`` after a crash is handed back by ``interrupted`` so the caller can
find out whether its action already happened.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

from scheduler.service.errors import IntentStoreUnavailable
from scheduler.service.payload import Intent

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    correlation_id TEXT NOT NULL,
    alert TEXT NOT NULL,
    pool TEXT NOT NULL,
    action TEXT NOT NULL,
    firing INTEGER NOT NULL,
    state TEXT NOT NULL,        -- pending | running | done | failed | ignored
    received_at REAL NOT NULL,  -- wall clock, for the alert-to-action latency
    updated_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    outcome TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS alerts_state ON alerts (state, id);
"""


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
    attempts: int


_COLS = "id, key, correlation_id, alert, pool, action, firing, received_at, attempts"


def _queued(r: tuple[object, ...]) -> QueuedIntent:
    return QueuedIntent(
        int(r[0]),  # type: ignore[call-overload]
        str(r[1]),
        str(r[2]),
        str(r[3]),
        str(r[4]),
        str(r[5]),
        bool(r[6]),
        float(r[7]),  # type: ignore[arg-type]
        int(r[8]),  # type: ignore[call-overload]
    )


class IntentQueue:
    def __init__(self, path: Path, *, busy_timeout: float = 5.0) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(
                self.path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # FULL: the webhook answers 2xx only after this commit reached the disk.
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise IntentStoreUnavailable(f"cannot open intent queue {self.path}: {e}") from e

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _write(self, sql: str, args: tuple[object, ...]) -> None:
        with self._lock:
            try:
                self._db.execute(sql, args)
            except sqlite3.Error as e:
                raise IntentStoreUnavailable(f"intent queue {self.path}: {e}") from e

    def record(self, intents: list[Intent], received_at: float) -> list[Intent]:
        """Persist every alert state not seen before; return those (in order)."""
        new: list[Intent] = []
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for it in intents:
                        cur = self._db.execute(
                            "INSERT OR IGNORE INTO alerts (key, correlation_id, alert, pool, "
                            "action, firing, state, received_at, updated_at, outcome) "
                            "VALUES (?,?,?,?,?,?,?,?,?,?)",
                            (
                                it.key,
                                it.correlation_id,
                                it.alert,
                                it.pool,
                                it.action,
                                int(it.firing),
                                "pending" if it.action else "ignored",
                                received_at,
                                received_at,
                                it.reason,
                            ),
                        )
                        if cur.rowcount == 1:
                            new.append(it)
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise IntentStoreUnavailable(f"intent queue {self.path}: {e}") from e
        return new

    def claim(self, now: float) -> QueuedIntent | None:
        """The oldest pending intent, now marked running (committed before it is acted on)."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    row = self._db.execute(
                        f"SELECT {_COLS} FROM alerts WHERE state = 'pending' ORDER BY id LIMIT 1"  # noqa: S608
                    ).fetchone()
                    if row is not None:
                        self._db.execute(
                            "UPDATE alerts SET state = 'running', attempts = attempts + 1, "
                            "updated_at = ? WHERE id = ?",
                            (now, row[0]),
                        )
                    self._db.execute("COMMIT")
                except BaseException:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as e:
                raise IntentStoreUnavailable(f"intent queue {self.path}: {e}") from e
        return None if row is None else _queued((*row[:8], row[8] + 1))

    def interrupted(self) -> list[QueuedIntent]:
        """Intents left running by a crash: their action may or may not have happened."""
        with self._lock:
            rows = self._db.execute(
                f"SELECT {_COLS} FROM alerts WHERE state = 'running' ORDER BY id"  # noqa: S608
            ).fetchall()
        return [_queued(r) for r in rows]

    def finish(self, intent_id: int, state: str, outcome: str, now: float) -> None:
        if state not in ("done", "failed", "pending"):
            raise ValueError(f"unknown final state {state!r}")
        self._write(
            "UPDATE alerts SET state = ?, outcome = ?, updated_at = ? WHERE id = ?",
            (state, outcome, now, intent_id),
        )

    def pending(self) -> int:
        with self._lock:
            (n,) = self._db.execute(
                "SELECT count(*) FROM alerts WHERE state IN ('pending', 'running')"
            ).fetchone()
        return int(n)

    def states(self) -> dict[str, int]:
        """How many alert states are in each state (for tests and /healthz)."""
        with self._lock:
            rows = self._db.execute("SELECT state, count(*) FROM alerts GROUP BY state").fetchall()
        return {str(s): int(n) for s, n in rows}

    def prune(self, older_than: float) -> int:
        """Forget settled alert states last touched before ``older_than``.

        A replay of a pruned state would act again, so callers keep far longer
        than Alertmanager ever resends (its repeat_interval).
        """
        with self._lock:
            try:
                cur = self._db.execute(
                    "DELETE FROM alerts WHERE state IN ('done', 'failed', 'ignored') "
                    "AND updated_at < ?",
                    (older_than,),
                )
            except sqlite3.Error as e:
                raise IntentStoreUnavailable(f"intent queue {self.path}: {e}") from e
        return int(cur.rowcount)
