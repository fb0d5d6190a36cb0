"""SQLite (WAL) persistence.

One transaction per scheduler call writes the decisions it took, every job it
changed (with the GPUs each job holds and the GPUs held for it: the
allocations), and the core's small timer/counter state. Only after that commit
does the runtime actuate, then it marks the decisions actuated. After a crash,
decisions recorded but not marked are replayed through the (idempotent)
actuator, and jobs that were ``preempting`` come back preempting with their
original grace deadline: in-flight preemptions resume exactly once.

Each decision is stored with who caused it (``Actor``: the API caller, or
nobody for the scheduler's own) and an ``audited`` flag, set once its audit
record is known written. A decision a crash kept out of the audit log is
still unflagged at the next start, with what its record needs.

Every ``sqlite3.Error`` surfaces as ``StoreUnavailable``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduler.core.errors import StoreUnavailable
from scheduler.core.model import Decision, JobKind, JobState, JobView
from scheduler.store.transaction import immediate
from scheduler.store.wal import Checkpointer, tune_writer

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    pool TEXT NOT NULL,
    state TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state);
CREATE TABLE IF NOT EXISTS allocations (
    gpu TEXT PRIMARY KEY,
    job TEXT NOT NULL,
    kind TEXT NOT NULL  -- 'runs' (the job is on it) or 'held' (freed for the job)
);
CREATE TABLE IF NOT EXISTS decisions (
    -- A rowid alias: rows are never deleted, so it grows with every insert, without
    -- AUTOINCREMENT's extra page write (sqlite_sequence) per transaction.
    seq INTEGER PRIMARY KEY,
    id TEXT UNIQUE NOT NULL,
    at REAL NOT NULL,
    pool TEXT NOT NULL,
    action TEXT NOT NULL,
    data TEXT NOT NULL,
    actuated INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""
# Decision columns added since the first schema. Rows of an older database were audited
# as they were decided (hence ``audited`` defaults to 1 there); new rows say so explicitly.
_ADDED = (
    ("audited", "INTEGER NOT NULL DEFAULT 1"),
    ("correlation_id", "TEXT NOT NULL DEFAULT ''"),
    ("actor", "TEXT NOT NULL DEFAULT ''"),  # JSON [user, source_ip]; '' for the scheduler
)
# Only decisions still to actuate (or audit) are indexed: the many stored as done at once
# cost no index write.
_INDEXES = """
DROP INDEX IF EXISTS decisions_pending;
CREATE INDEX IF NOT EXISTS decisions_unactuated ON decisions (seq) WHERE actuated = 0;
CREATE INDEX IF NOT EXISTS decisions_unaudited ON decisions (seq) WHERE audited = 0;
CREATE INDEX IF NOT EXISTS decisions_correlation ON decisions (correlation_id)
    WHERE correlation_id != '';
"""


@dataclass(frozen=True)
class Actor:
    """Who caused a decision: an API caller (user, source address); the scheduler is ``None``."""

    user: str
    source_ip: str = ""


# The meta keys that change on (nearly) every decision; written in a row of their own.
_COUNTERS = frozenset({"decision_seq", "job_seq", "cycles_refused"})


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._meta_rest: dict[str, Any] | None = None  # the meta row as last written
        self._checkpointer = Checkpointer(self.path)
        try:
            self._db = sqlite3.connect(
                str(self.path), isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            tune_writer(self._db)  # checkpointed in the background (``checkpoint``)
            self._db.executescript(SCHEMA)
            have = {r[1] for r in self._db.execute("PRAGMA table_info(decisions)")}
            for name, definition in _ADDED:
                if name not in have:
                    # Names and definitions are our own constants, never input.
                    self._db.execute(f"ALTER TABLE decisions ADD COLUMN {name} {definition}")
            if "correlation_id" not in have:
                self._db.execute(
                    "UPDATE decisions SET correlation_id = "
                    "coalesce(json_extract(data, '$.correlation_id'), '')"
                )
            self._db.executescript(_INDEXES)
        except sqlite3.Error as e:
            raise StoreUnavailable(f"cannot open {self.path}: {e}") from e

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        try:
            with immediate(self._db) as db:
                yield db
        except sqlite3.Error as e:
            raise StoreUnavailable(f"{self.path}: {e}") from e

    def journal_mode(self) -> str:
        return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    def write(
        self,
        decisions: Sequence[Decision],
        jobs: Sequence[JobView],
        meta: dict[str, Any],
        *,
        actuated: Collection[str] = (),
        actor: Actor | None = None,
    ) -> None:
        """Record decisions, changed jobs and their allocations, and the core's meta, atomically.

        Decisions in ``actuated`` need no actuation and are stored as done; ``actor`` is
        who caused them. The meta row is rewritten only when it changed (most calls change
        only counters).
        """
        who = "" if actor is None else json.dumps([actor.user, actor.source_ip])
        # The counters change on every decision, the rest (policy, timers) seldom: the
        # rest is compared, and encoded and rewritten only when it changed.
        counters = {k: v for k, v in meta.items() if k in _COUNTERS}
        rest = {k: v for k, v in meta.items() if k not in _COUNTERS}
        with self._tx() as db:
            db.executemany(
                "INSERT OR IGNORE INTO decisions (id, at, pool, action, data, actuated, audited, "
                "correlation_id, actor) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)",
                [
                    (d.id, d.at, d.pool, d.action, json.dumps(d.to_dict()), int(d.id in actuated),
                     d.correlation_id, who)
                    for d in decisions
                ],
            )  # fmt: skip
            for j in jobs:
                db.execute(
                    "INSERT OR REPLACE INTO jobs (id, pool, state, data) VALUES (?, ?, ?, ?)",
                    (j.id, j.pool, j.state.value, json.dumps(j.to_dict())),
                )
                db.execute("DELETE FROM allocations WHERE job = ?", (j.id,))
                db.executemany(
                    "INSERT OR REPLACE INTO allocations (gpu, job, kind) VALUES (?, ?, 'runs')",
                    [(u, j.id) for u in j.gpu_ids],
                )
                db.executemany(
                    "INSERT OR REPLACE INTO allocations (gpu, job, kind) VALUES (?, ?, 'held')",
                    [(u, j.id) for u in j.held_gpu_ids],
                )
            db.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('counters', ?)",
                (json.dumps(counters),),
            )
            if rest != self._meta_rest:
                db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('core', ?)",
                    (json.dumps(rest),),
                )
        self._meta_rest = rest

    def mark_actuated(self, ids: Sequence[str]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE decisions SET actuated = 1 WHERE id = ?", [(i,) for i in ids])

    def mark_audited(self, ids: Sequence[str]) -> None:
        with self._tx() as db:
            db.executemany("UPDATE decisions SET audited = 1 WHERE id = ?", [(i,) for i in ids])

    def unaudited(self) -> list[tuple[Decision, Actor | None]]:
        """Decisions whose audit record is not known written, oldest first, with their actor."""
        try:
            rows = self._db.execute(
                "SELECT data, actor FROM decisions WHERE audited = 0 ORDER BY seq"
            ).fetchall()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"{self.path}: {e}") from e
        out = []
        for data, actor in rows:
            who = Actor(*json.loads(actor)) if actor else None
            out.append((Decision.from_dict(json.loads(data)), who))
        return out

    def decisions_for(self, correlation_ids: Collection[str]) -> dict[str, list[Decision]]:
        """The decisions taken for each of these correlation ids (those with any), oldest first."""
        out: dict[str, list[Decision]] = {}
        ids = list(correlation_ids)
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            marks = ",".join("?" * len(chunk))
            # Only the number of placeholders varies; every value is bound.
            sql = f"SELECT data FROM decisions WHERE correlation_id IN ({marks}) ORDER BY seq"  # noqa: S608
            for d in self._decisions(sql, tuple(chunk)):
                out.setdefault(d.correlation_id, []).append(d)
        return out

    def unactuated(self) -> list[Decision]:
        return self._decisions("SELECT data FROM decisions WHERE actuated = 0 ORDER BY seq", ())

    def decisions(self, limit: int = 100) -> list[Decision]:
        """The latest ``limit`` decisions, newest first."""
        return self._decisions("SELECT data FROM decisions ORDER BY seq DESC LIMIT ?", (limit,))

    def _decisions(self, sql: str, args: tuple[Any, ...]) -> list[Decision]:
        try:
            rows = self._db.execute(sql, args).fetchall()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"{self.path}: {e}") from e
        return [Decision.from_dict(json.loads(r[0])) for r in rows]

    def load(self) -> tuple[list[JobView], dict[str, Any] | None]:
        """Every stored job (unfinished ones first-class) and the core's meta, if any."""
        try:
            rows = self._db.execute("SELECT data FROM jobs ORDER BY id").fetchall()
            parts = dict(self._db.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.Error as e:
            raise StoreUnavailable(f"{self.path}: {e}") from e
        jobs = [_job_from_dict(json.loads(r[0])) for r in rows]
        if "core" not in parts:
            return jobs, None
        # A database written before the counters had their own row keeps them in 'core'.
        meta = json.loads(parts["core"]) | json.loads(parts.get("counters", "{}"))
        return jobs, meta

    def allocations(self) -> dict[str, tuple[str, str]]:
        """gpu -> (job, 'runs' | 'held'), as stored."""
        rows = self._db.execute("SELECT gpu, job, kind FROM allocations").fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def checkpoint(self) -> None:
        try:
            self._checkpointer.checkpoint()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"checkpoint {self.path}: {e}") from e

    def close(self) -> None:
        try:
            self._checkpointer.close()
            self._db.close()
        except sqlite3.Error as e:
            raise StoreUnavailable(f"{self.path}: {e}") from e


def _job_from_dict(d: dict[str, Any]) -> JobView:
    return JobView(
        id=d["id"],
        pool=d["pool"],
        gpus=int(d["gpus"]),
        kind=JobKind(d["kind"]),
        state=JobState(d["state"]),
        preemptible=bool(d["preemptible"]),
        checkpointable=bool(d["checkpointable"]),
        grace_seconds=float(d["grace_seconds"]),
        duration_seconds=d["duration_seconds"],
        submitted_at=float(d["submitted_at"]),
        queued_at=float(d["queued_at"]),
        started_at=d["started_at"],
        last_checkpoint=d["last_checkpoint"],
        progress_seconds=float(d["progress_seconds"]),
        checkpoint_progress_seconds=float(d["checkpoint_progress_seconds"]),
        resume_count=int(d["resume_count"]),
        preemptions=tuple(float(t) for t in d["preemptions"]),
        gpu_seconds_lost=float(d["gpu_seconds_lost"]),
        gpu_ids=tuple(d["gpu_ids"]),
        held_gpu_ids=tuple(d["held_gpu_ids"]),
        pending_victims=tuple(d["pending_victims"]),
        preempted_for=d["preempted_for"],
        deadline=d["deadline"],
        elastic=bool(d["elastic"]),
        reservation=d["reservation"],
        correlation_id=str(d.get("correlation_id", "")),
        preemptions_total=int(d.get("preemptions_total", len(d["preemptions"]))),
        # Absent in rows written before jobs had pods: the core gives them today's.
        pods=tuple(int(p) for p in d.get("pods", ())),
    )
