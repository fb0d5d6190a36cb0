"""Verification of the chain: where it breaks, if it does."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path

from scheduler.audit.records import row_of
from scheduler.audit.schema import SELECT, open_ro


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


def _verify_chain(db: sqlite3.Connection) -> VerifyResult:
    chain = dict(
        (name, (seq, h)) for name, seq, h in db.execute("SELECT name, seq, hash FROM chain")
    )
    seq, prev = chain["anchor"]
    checked = 0
    for row in db.execute(SELECT + " ORDER BY seq"):
        r = row_of(row)
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
        with open_ro(archive) as a:
            ar = _verify_chain(a)
        if not ar.ok:
            return VerifyResult(False, ar.checked, ar.head_seq, ar.head_hash, ar.bad_seq,
                                f"in the archive: {ar.problem}")  # fmt: skip
        with open_ro(db) as d:
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
    with open_ro(db) as d:
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
