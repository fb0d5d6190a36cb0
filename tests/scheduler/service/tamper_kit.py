"""What an attacker with write access to the audit database does, as named scenarios.

Each scenario changes a ten-record chain (written by ``fill``) the way an
attacker would after dropping the guard triggers, and says which record a
verifier must report. The library, the API and the CLI are each held to the
same list (``test_audit_log``, ``test_service_audit_api``, ``tests/e2e``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scheduler.audit import AuditEntry, AuditLog, ChainPoint
from scheduler.audit.records import GENESIS, record_hash

RECORDS = 10


class StepClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def entry(i: int) -> AuditEntry:
    return AuditEntry(
        user="alice" if i % 2 else "bob",
        source_ip="127.0.0.1",
        object=f"job/{i}",
        operation="jobs.submit",
        result="ok",
        reason="200",
        params={"i": i},
        correlation_id=f"req-{i}",
    )


def fill(log: AuditLog, n: int = RECORDS) -> ChainPoint:
    """Append ``n`` records; the head to publish."""
    for i in range(1, n + 1):
        log.append(entry(i))
    return ChainPoint(*log.head())


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None)
    for trigger in ("audit_no_update", "audit_no_delete", "audit_continues_head",
                    "audit_moves_head"):  # fmt: skip
        db.execute(f"DROP TRIGGER IF EXISTS {trigger}")
    return db


def _row(db: sqlite3.Connection, seq: int) -> list[object]:
    return list(db.execute("SELECT * FROM audit WHERE seq = ?", (seq,)).fetchone())


def _rehash(row: list[object]) -> str:
    return record_hash(*row[:11])  # type: ignore[arg-type]


def forge(path: Path, seq: int, *, prev: str | None = None) -> None:
    """Change record ``seq``'s user and recompute its own hash (and nothing else)."""
    db = _open(path)
    row = _row(db, seq)
    row[2] = "mallory"
    if prev is not None:
        row[10] = prev
    row[11] = _rehash(row)
    db.execute(
        "UPDATE audit SET user = ?, prev_hash = ?, hash = ? WHERE seq = ?",
        (row[2], row[10], row[11], seq),
    )
    db.close()


def _sql(*statements: str) -> Callable[[Path], None]:
    def run(path: Path) -> None:
        db = _open(path)
        for s in statements:
            db.execute(s)
        db.close()

    return run


def _delete_first_and_move_anchor(path: Path) -> None:
    db = _open(path)
    h5 = _row(db, 5)[11]
    db.execute("DELETE FROM audit WHERE seq <= 5")
    db.execute("UPDATE chain SET seq = 5, hash = ? WHERE name = 'anchor'", (h5,))
    db.close()


def _delete_all_and_copy_head_to_anchor(path: Path) -> None:
    db = _open(path)
    db.execute("DELETE FROM audit")
    db.execute(
        "UPDATE chain SET seq = (SELECT seq FROM chain WHERE name = 'head'), "
        "hash = (SELECT hash FROM chain WHERE name = 'head') WHERE name = 'anchor'"
    )
    db.close()


def _truncate_and_rewind_head(path: Path) -> None:
    db = _open(path)
    h8 = _row(db, 8)[11]
    db.execute("DELETE FROM audit WHERE seq > 8")
    db.execute("UPDATE chain SET seq = 8, hash = ? WHERE name = 'head'", (h8,))
    db.close()


def _swap_contents(path: Path) -> None:
    """Records 3 and 4 trade places: each keeps its sequence number, not its content."""
    db = _open(path)
    r3, r4 = _row(db, 3), _row(db, 4)
    cols = ("ts", "user", "source_ip", "object", "operation", "params", "result", "reason",
            "correlation_id", "prev_hash", "hash")  # fmt: skip
    sets = ", ".join(f"{c} = ?" for c in cols)
    db.execute(f"UPDATE audit SET {sets} WHERE seq = 3", (*r4[1:],))  # noqa: S608
    db.execute(f"UPDATE audit SET {sets} WHERE seq = 4", (*r3[1:],))  # noqa: S608
    db.close()


def _rewrite_everything(path: Path) -> None:
    """A consistent rewrite: every record changed and rehashed, the head row moved along."""
    db = _open(path)
    prev = GENESIS
    for seq in range(1, RECORDS + 1):
        row = _row(db, seq)
        row[2], row[10] = "mallory", prev
        row[11] = prev = _rehash(row)
        db.execute(
            "UPDATE audit SET user = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            (row[2], row[10], row[11], seq),
        )
    db.execute("UPDATE chain SET hash = ? WHERE name = 'head'", (prev,))
    db.close()


@dataclass(frozen=True)
class Scenario:
    name: str
    tamper: Callable[[Path], None]
    bad_seq: int
    words: str  # a pattern the problem the verifier reports must match
    needs_published_head: bool = False  # the file alone cannot show it


SCENARIOS = (
    Scenario("edited", _sql("UPDATE audit SET result = 'denied' WHERE seq = 6"), 6, "edited"),
    Scenario("forged, hash recomputed", lambda p: forge(p, 4), 4, "hash recomputed"),
    Scenario(
        "last record forged",
        lambda p: forge(p, RECORDS),
        RECORDS,
        "hash recomputed|not the published one",
    ),
    Scenario("replaced by a forgery", lambda p: forge(p, 6, prev="e" * 64), 6, "replaced"),
    Scenario("deleted", _sql("DELETE FROM audit WHERE seq = 5"), 5, r"missing \(deleted\)"),
    Scenario("first five deleted, anchor moved", _delete_first_and_move_anchor, 1, "records 1..5"),
    Scenario(
        "all deleted, head copied to the anchor",
        _delete_all_and_copy_head_to_anchor,
        1,
        "records 1..10",
    ),
    Scenario("all deleted", _sql("DELETE FROM audit"), 1, "records 1..10 are missing"),
    Scenario("reordered", _swap_contents, 3, "edited or moved"),
    Scenario("truncated", _sql("DELETE FROM audit WHERE seq > 8"), 9, "truncated"),
    Scenario("truncated, head rewound", _truncate_and_rewind_head, 9, "truncated", True),
    Scenario("rewritten consistently", _rewrite_everything, RECORDS, "history rewritten", True),
)
