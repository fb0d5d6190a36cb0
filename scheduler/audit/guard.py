"""Verification that keeps up with a growing chain: for a service to run in the background.

The first ``check`` verifies the whole chain (``verify``). Each check after it
verifies what was appended since (the tail: from the last record verified,
which must still carry the hash it had), and re-verifies a slice of the whole
chain (a sweep from its start, ``sweep_batch`` records a check, over the
archive then the live log; when it reaches the tail a new sweep begins). So a
record appended is verified within one check, and a record changed after it
was verified is found within one sweep.

A finding is confirmed by a full ``verify`` before it is reported (archiving
moves records between two files, which a sweep could see half-way), and then
stays: the data stays tampered until someone looks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from scheduler.audit.schema import open_ro
from scheduler.audit.verify import (
    ChainPoint,
    Tampered,
    Walk,
    chain_row,
    check_start,
    raw_rows_after,
    snapshot,
    verify,
)

SWEEP_BATCH = 5000


@dataclass(frozen=True)
class GuardState:
    ok: bool
    verified: ChainPoint  # the last record verified
    problem: str = ""
    bad_seq: int | None = None
    sweeps: int = 0  # full sweeps completed since start


class Guard:
    def __init__(
        self,
        db: Path,
        *,
        archive: Path | None = None,
        first: Callable[[], ChainPoint | None] = lambda: None,
        sweep_batch: int = SWEEP_BATCH,
    ) -> None:
        self.db = Path(db)
        self.archive = archive
        self.first = first  # where a purge left the chain starting, if it did
        self.sweep_batch = sweep_batch
        self._tail: ChainPoint | None = None
        self._sweep: Walk | None = None
        self._sweep_in_archive = False
        self._sweeps = 0
        self._finding: GuardState | None = None

    def _archive(self) -> Path | None:
        return self.archive if self.archive is not None and self.archive.exists() else None

    def check(self) -> GuardState:
        """One pass; raises ``AuditUnreadable`` (nothing can be said this time)."""
        if self._finding is not None:
            return self._finding
        try:
            if self._tail is None:
                self._full()
            else:
                self._check_tail()
                self._sweep_step()
        except Tampered:
            self._tail, self._sweep = None, None
            self._full()  # the finding, confirmed (or not) on the whole chain at once
        return self._state()

    def _state(self) -> GuardState:
        if self._finding is not None:
            return self._finding
        assert self._tail is not None
        return GuardState(True, self._tail, sweeps=self._sweeps)

    def _full(self) -> None:
        res = verify(self.db, archive=self._archive(), expected_first=self.first())
        if not res.ok:
            self._finding = GuardState(False, res.head, res.problem, res.bad_seq, self._sweeps)
            return
        self._tail = res.head

    def _check_tail(self) -> None:
        tail = self._tail
        assert tail is not None
        with open_ro(self.db) as d, snapshot(d):
            anchor = chain_row(d, "anchor")
            if tail.seq > anchor.seq:
                row = d.execute("SELECT hash FROM audit WHERE seq = ?", (tail.seq,)).fetchone()
                if row is None or row[0] != tail.hash:
                    raise Tampered(tail.seq, f"record {tail.seq} changed after it was verified")
            walk = Walk(tail if tail.seq >= anchor.seq else anchor)
            walk.run(raw_rows_after(d, walk.at.seq))
            walk.finish(chain_row(d, "head"))
        self._tail = walk.at

    def _sweep_step(self) -> None:
        """Re-verify up to ``sweep_batch`` records, continuing the sweep under way."""
        tail = self._tail
        assert tail is not None
        budget = self.sweep_batch
        if self._sweep is None:
            archive = self._archive()
            self._sweep_in_archive = archive is not None
            with open_ro(archive or self.db) as d, snapshot(d):
                start = chain_row(d, "anchor")
            check_start(start, self.first())
            self._sweep = Walk(start)
        walk = self._sweep
        if self._sweep_in_archive:
            archive = self._archive()
            assert archive is not None
            with open_ro(archive) as a, snapshot(a):
                before = walk.checked
                walk.run(raw_rows_after(a, walk.at.seq, limit=budget))
                budget -= walk.checked - before
                if budget <= 0:
                    return
                walk.finish(chain_row(a, "head"))
            self._sweep_in_archive = False
            with open_ro(self.db) as d, snapshot(d):
                anchor = chain_row(d, "anchor")
            if anchor != walk.at:
                raise Tampered(walk.at.seq + 1, "the live log does not continue the archive")
        with open_ro(self.db) as d, snapshot(d):
            walk.run(raw_rows_after(d, walk.at.seq, upto=tail.seq, limit=budget))
        if walk.at.seq >= tail.seq:
            walk.settle(linked=True)  # the tail check saw the next record link on
            if walk.at != tail:
                raise Tampered(tail.seq, f"record {tail.seq} changed after it was verified")
            self._sweep = None
            self._sweeps += 1
