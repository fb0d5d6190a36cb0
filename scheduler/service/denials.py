"""Denied requests, audited by event rather than by request.

Every denial is audited, but a flood of them must not become a flood of
fsynced records (one unauthenticated client could otherwise write hundreds a
second and fill the disk from outside). So denials are grouped by who tried
what and how it was refused: (source address, user, operation, status). The
first denial of a group in a window is written at once, in full, like any
request; the ones after it are counted, and when the window ends one record
says how many there were, and when. The log then grows with distinct events,
not with requests: at most two records per group per window.

The number of open groups is bounded too: past ``max_groups`` (many source
addresses, say), further denials are counted in one group per operation and
status whose source and user are ``*``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from scheduler.audit import AuditEntry

DEFAULT_WINDOW_SECONDS = 60.0
MAX_GROUPS = 1000
MANY = "*"  # the source and user of the overflow group

Key = tuple[str, str, str, str]  # source, user, operation, status


@dataclass
class _Group:
    first: AuditEntry  # the record written when the group opened
    opened: float
    count: int = 0  # denials since then, not yet written
    last: float = 0.0


class Denials:
    def __init__(
        self,
        clock: Callable[[], float],
        *,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
        max_groups: int = MAX_GROUPS,
    ) -> None:
        self.clock = clock
        self.window = window_seconds
        self.max_groups = max_groups
        self._groups: dict[Key, _Group] = {}

    def admit(self, entry: AuditEntry, status: int) -> AuditEntry | None:
        """The record to write for this denial now, or None: counted, written with its group."""
        now = self.clock()
        key = (entry.source_ip, entry.user, entry.operation, str(status))
        if key not in self._groups and len(self._groups) >= self.max_groups:
            key = (MANY, MANY, entry.operation, str(status))
            entry = dataclasses.replace(entry, source_ip=MANY, user=MANY)
        group = self._groups.get(key)
        if group is None:
            self._groups[key] = _Group(entry, now, last=now)
            return entry
        group.count += 1
        group.last = now
        return None

    def due(self, *, everything: bool = False) -> list[AuditEntry]:
        """One record per group whose window ended (all groups if ``everything``), for the
        denials counted since its first; the group closes, and the next denial opens another."""
        now = self.clock()
        out = []
        for key, g in list(self._groups.items()):
            if not everything and now - g.opened < self.window:
                continue
            del self._groups[key]
            if g.count:
                out.append(self._summary(g))
        return out

    def _summary(self, g: _Group) -> AuditEntry:
        first = g.first
        return dataclasses.replace(
            first,
            reason=f"{first.reason} (and {g.count} more like it)",
            params={
                "count": g.count,
                "first_at": g.opened,
                "last_at": g.last,
                "window_seconds": self.window,
            },
            correlation_id="",
        )
