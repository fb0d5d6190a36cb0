"""The service's audit writes from the event loop: group-committed, and kept for a retry.

Requests and background loops hand their records here. Records written while
others are being committed share the next commit (``GroupCommit``). When the
audit log cannot be written, the records stay in a bounded backlog and go out
first with the next write (the tick loop makes one at least every tick).
"""

from __future__ import annotations

import logging

from prometheus_client import Counter

from scheduler.audit import AuditEntry, AuditLog, AuditUnavailable
from scheduler.service.batch import GroupCommit
from scheduler.service.reconcile import Marks

log = logging.getLogger("novabrain.scheduler.service")
AUDIT_BACKLOG_MAX = 10_000


class AuditWriter:
    def __init__(self, audit: AuditLog, records: Counter, marks: Marks) -> None:
        self.audit = audit
        self.m_audit = records
        self.marks = marks
        self.commit = GroupCommit(self._append_batches, name="audit")
        self.backlog: list[AuditEntry] = []

    def _append_batches(self, batches: list[list[AuditEntry]]) -> list[None]:
        self.audit.append_many([e for b in batches for e in b])
        return [None] * len(batches)

    async def write(self, entries: list[AuditEntry]) -> None:
        """Append, retrying what failed before first; raise ``AuditUnavailable`` if not written."""
        batch, self.backlog = self.backlog + entries, []
        try:
            await self.commit.submit(batch)
        except AuditUnavailable:
            self.backlog = (batch + self.backlog)[-AUDIT_BACKLOG_MAX:]
            self.m_audit.labels("failed").inc(len(entries))
            raise
        self.m_audit.labels("written").inc(len(batch))
        self.marks.written(batch)

    async def write_quietly(self, entries: list[AuditEntry]) -> None:
        """For background work: a failed write stays in the backlog for the next attempt."""
        try:
            await self.write(entries)
        except AuditUnavailable as e:
            log.error("audit log unavailable, %d record(s) kept for retry: %s", len(entries), e)

    def replace_held(self, held: AuditEntry, replacement: AuditEntry) -> None:
        """A record kept back for a retry must say what the caller was finally answered."""
        self.backlog = [replacement if e is held else e for e in self.backlog]

    async def close(self) -> None:
        await self.commit.close()
