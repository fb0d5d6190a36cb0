"""Verification of the chain: whether it is whole, and which record was tampered with.

A chain is whole when every record from its start to its head is present, in
order, each matching its own hash and chained to the record before it, and
the ``head`` row names the last record. Its start is the beginning (record 1
follows the genesis hash) or, after a purge past the retention period, a
*published first point*: a log that starts anywhere else is missing its
beginning. Records archived by retention verify only with their archive.

A verifier can be fooled by a consistent rewrite of the chain's end (records
deleted or rehashed, and the head row moved to match), so the service
publishes its head (``seq:hash``) off the box, and ``verify`` checks a
published head when given one: the record at that sequence number must still
carry that hash.

Where a link breaks, the record blamed is the one that changed:

* a record edited and rehashed keeps a valid hash, but its successor is still
  chained to its old hash (or, for the last record, the head row is): the
  break follows it;
* a record replaced by a forged one with another ``prev_hash`` breaks both of
  its links: the break surrounds it.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduler.audit.errors import AuditUnreadable
from scheduler.audit.records import GENESIS, AuditRecord, record_hash, row_of
from scheduler.audit.schema import SELECT, open_ro

_POINT = re.compile(r"^(\d{1,18}):([0-9a-f]{64})$")


@dataclass(frozen=True)
class ChainPoint:
    """A place in the chain: a record's sequence number and hash, written ``SEQ:HASH``.

    ``ChainPoint(0, GENESIS)`` is the point before record 1.
    """

    seq: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> ChainPoint:
        m = _POINT.match(text.strip())
        if not m:
            raise ValueError(f"not SEQ:HASH (a sequence number, ':', 64 hex digits): {text!r}")
        return cls(int(m[1]), m[2])

    def __str__(self) -> str:
        return f"{self.seq}:{self.hash}"


START = ChainPoint(0, GENESIS)


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of ``verify``: ``ok``, how many records were checked, and where it broke."""

    ok: bool
    checked: int
    head_seq: int
    head_hash: str
    bad_seq: int | None = None
    problem: str = ""
    first_seq: int = 0  # the chain verified starts after this record (0: at record 1)

    @property
    def head(self) -> ChainPoint:
        return ChainPoint(self.head_seq, self.head_hash)

    def __str__(self) -> str:
        if self.ok:
            return f"ok: {self.checked} records verified, head {self.head_seq}:{self.head_hash}"
        return f"TAMPERED at record {self.bad_seq}: {self.problem} ({self.checked} verified before)"


class Tampered(Exception):
    """Internal: carries a finding out of the walk."""

    def __init__(self, bad_seq: int, problem: str) -> None:
        super().__init__(problem)
        self.bad_seq = bad_seq
        self.problem = problem


def raw_rows_after(
    db: sqlite3.Connection, after: int = 0, *, upto: int | None = None, limit: int = -1
) -> Iterator[tuple[Any, ...]]:
    """Stored rows after ``after`` (through ``upto``), in order, at most ``limit`` (-1: all)."""
    sql = SELECT + " WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?"
    return iter(db.execute(sql, (after, (1 << 62) if upto is None else upto, limit)))


def rows_after(
    db: sqlite3.Connection, after: int = 0, *, upto: int | None = None, limit: int = -1
) -> Iterator[AuditRecord]:
    """``raw_rows_after`` as records."""
    for row in raw_rows_after(db, after, upto=upto, limit=limit):
        yield row_of(row)


def chain_row(db: sqlite3.Connection, name: str) -> ChainPoint:
    row = db.execute("SELECT seq, hash FROM chain WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise Tampered(1, f"the chain's {name!r} row is gone")
    return ChainPoint(int(row[0]), str(row[1]))


@contextlib.contextmanager
def snapshot(db: sqlite3.Connection) -> Iterator[None]:
    """One read transaction: the records and the head row as of one moment, while the
    service goes on appending (separate reads could see a head newer than the records)."""
    db.execute("BEGIN")
    try:
        yield
    finally:
        db.execute("COMMIT")


class Walk:
    """Checks records one by one from a start point; raises ``Tampered`` at the first fault.

    A broken link is judged one record later (see the module docstring), so
    ``finish`` must be called with the head row once the records run out.
    """

    def __init__(self, start: ChainPoint, *, expect: ChainPoint | None = None) -> None:
        self.start = start
        self.at = start  # the last record checked (or the start point)
        self.checked = 0
        self.expect = expect  # a published point the chain must contain
        self._moved = False  # a record was checked: a broken link can blame the one before
        self._suspect: AuditRecord | None = None  # a record whose link to the one before broke

    def step(self, r: AuditRecord) -> None:
        want = self.at.seq + 1
        if r.seq != want:
            self.settle(linked=False)
            if r.seq > want:
                gone = (
                    f"record {want} is" if r.seq == want + 1 else f"records {want}..{r.seq - 1} are"
                )
                raise Tampered(want, f"{gone} missing (deleted)")
            raise Tampered(r.seq, f"record {r.seq} appears after record {self.at.seq} (reordered)")
        if r.expected_hash() != r.hash:
            self.settle(linked=False)
            raise Tampered(r.seq, "content does not match its hash (edited or moved)")
        self.settle(linked=r.prev_hash == self.at.hash)
        if r.prev_hash != self.at.hash:
            if not self._moved:
                raise Tampered(
                    r.seq, f"does not continue the chain's start ({self.at.seq}): chain broken"
                )
            self._suspect = r
        if self.expect is not None and r.seq == self.expect.seq and r.hash != self.expect.hash:
            raise Tampered(
                r.seq, f"record {r.seq} is not the published one {self.expect} (history rewritten)"
            )
        self.at = ChainPoint(r.seq, r.hash)
        self._moved = True
        self.checked += 1

    def run(self, rows: Iterable[tuple[Any, ...]]) -> None:
        """``step`` through stored rows. A record in order, chained and matching its hash
        is checked on the spot (most are: the service verifies thousands a second); any
        other goes through ``step``, which says what is wrong."""
        at_seq, at_hash, n = self.at.seq, self.at.hash, 0
        expect = -1 if self.expect is None else self.expect.seq
        try:
            for row in rows:
                seq = row[0]
                if (
                    self._suspect is None
                    and seq == at_seq + 1
                    and seq != expect
                    and row[10] == at_hash
                    and record_hash(*row[:11]) == row[11]
                ):
                    at_seq, at_hash, n = seq, row[11], n + 1
                    continue
                self._sync(at_seq, at_hash, n)
                n = 0
                self.step(row_of(row))
                at_seq, at_hash = self.at.seq, self.at.hash
        finally:
            self._sync(at_seq, at_hash, n)

    def _sync(self, seq: int, h: str, n: int) -> None:
        if n:
            self.at = ChainPoint(seq, h)
            self.checked += n
            self._moved = True

    def settle(self, *, linked: bool) -> None:
        """A link broke one record ago: blame the record before it, unless the record after
        the break does not link onward either (then it is the forged one)."""
        suspect, self._suspect = self._suspect, None
        if suspect is None:
            return
        if linked:
            before = suspect.seq - 1
            raise Tampered(
                before,
                f"record {before} was changed and its hash recomputed: record {suspect.seq} "
                "is chained to its original hash (forged)",
            )
        raise Tampered(suspect.seq, f"record {suspect.seq} was replaced (forged)")

    def finish(self, head: ChainPoint) -> None:
        """The records ran out: the head row must name the last one."""
        at = self.at
        if head == at:
            self.settle(linked=True)
            return
        if head.seq > at.seq:
            self.settle(linked=True)
            span = (
                f"record {at.seq + 1} is"
                if head.seq == at.seq + 1
                else (f"records {at.seq + 1}..{head.seq} are")
            )
            raise Tampered(at.seq + 1, f"{span} missing (truncated)")
        if head.seq < at.seq:
            raise Tampered(
                head.seq + 1, f"records after the head ({head.seq}) were added outside the log"
            )
        # Same sequence number, another hash: the head row keeps the last record's
        # original hash, so the last record was changed (or replaced) and rehashed.
        if self._suspect is not None:
            self.settle(linked=False)
        raise Tampered(
            at.seq,
            f"record {at.seq} was changed and its hash recomputed: the head row keeps its "
            "original hash (forged)",
        )

    def check_expected_head(self) -> None:
        """After ``finish``: a published head beyond the end means records were cut off."""
        p = self.expect
        if p is None:
            return
        if p.seq > self.at.seq:
            raise Tampered(
                self.at.seq + 1,
                f"the published head {p.seq} is past the chain's end ({self.at.seq}): "
                f"records {self.at.seq + 1}..{p.seq} were deleted (truncated)",
            )
        if p.seq == self.start.seq and p.hash != self.start.hash:
            raise Tampered(p.seq, f"the chain does not contain the published head {p}")
        if p.seq < self.start.seq:
            raise Tampered(
                self.start.seq,
                f"the published head {p.seq} precedes this chain's start ({self.start.seq}): "
                "verify with the archive",
            )


def check_start(start: ChainPoint, first: ChainPoint | None) -> None:
    if start in (START, first):
        return
    if first is not None and start.seq > first.seq:
        raise Tampered(
            first.seq + 1,
            f"the chain starts after record {start.seq}, not after the published first point "
            f"{first.seq}: records {first.seq + 1}..{start.seq} were deleted",
        )
    if first is not None and start.seq == first.seq:
        raise Tampered(start.seq + 1, f"the chain does not start from the published point {first}")
    raise Tampered(
        1,
        f"the chain starts after record {start.seq}: records 1..{start.seq} are not here "
        "(deleted, or archived: verify with the archive; after a purge, give the published "
        "first point)",
    )


def verify(
    db: Path,
    *,
    archive: Path | None = None,
    expected_head: ChainPoint | None = None,
    expected_first: ChainPoint | None = None,
) -> VerifyResult:
    """Check the whole chain of ``db`` (after its ``archive``, if given).

    ``expected_head``: a head published earlier; the chain must hold that
    record with that hash (as its head, or further back when it has grown).
    ``expected_first``: the point a purge left the chain starting from;
    without it, the chain must start at the beginning.

    Raises ``AuditUnreadable`` for a file that is missing, corrupt or not an
    audit log.
    """
    walk: Walk | None = None
    try:
        if archive is not None:
            with open_ro(archive) as a, snapshot(a):
                start = chain_row(a, "anchor")
                check_start(start, expected_first)
                walk = Walk(start, expect=expected_head)
                try:
                    walk.run(raw_rows_after(a, start.seq))
                    walk.finish(chain_row(a, "head"))
                except Tampered as t:
                    raise Tampered(t.bad_seq, f"in the archive: {t.problem}") from None
            with open_ro(db) as d, snapshot(d):
                anchor = chain_row(d, "anchor")
                if anchor != walk.at:
                    raise Tampered(
                        walk.at.seq + 1,
                        f"the log continues from record {anchor.seq} but the archive ends at "
                        f"{walk.at.seq}",
                    )
                walk.run(raw_rows_after(d, anchor.seq))
                walk.finish(chain_row(d, "head"))
        else:
            with open_ro(db) as d, snapshot(d):
                start = chain_row(d, "anchor")
                check_start(start, expected_first)
                walk = Walk(start, expect=expected_head)
                walk.run(raw_rows_after(d, start.seq))
                walk.finish(chain_row(d, "head"))
        walk.check_expected_head()
    except Tampered as t:
        at = walk.at if walk is not None else START
        checked = walk.checked if walk is not None else 0
        first = walk.start.seq if walk is not None else 0
        return VerifyResult(False, checked, at.seq, at.hash, t.bad_seq, t.problem, first)
    except sqlite3.DatabaseError as e:
        raise AuditUnreadable(f"cannot read the audit log: {e}") from None
    return VerifyResult(True, walk.checked, walk.at.seq, walk.at.hash, first_seq=walk.start.seq)
