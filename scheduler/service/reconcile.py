"""Exactly once in the audit log: every decision, and every alert state's receipt, whatever
caused it and whenever the process dies.

Decisions (in the scheduler's store) and alert states (in the intent queue) are
durable before their audit records are written, in another database: no
transaction covers both. So each store flags a row once its record is known
written. Whoever writes records notes them (``Marks.written``, from any
thread) and the flags are set in batches on each tick (``Marks.flush``); a
flag set late, or not at all, costs nothing but a look-up later.

A crash can leave rows unflagged, their records written or not. At the next
start, before anything else writes, ``reconcile`` looks each one up in the
audit log (by decision id, by alert-state key: both indexed), writes the
missing records, with who caused them, and sets the flags: each decision and
each receipt is in the log exactly once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Protocol

from scheduler.audit import AuditEntry, AuditLog
from scheduler.core.model import Decision
from scheduler.service.intents import IntentQueue
from scheduler.service.records import RECEIPTS, decision_entry, decision_user, receipt_entry
from scheduler.store.sqlite import Actor

log = logging.getLogger("novabrain.scheduler.service")
RECOVERED = "recovered after a restart: the record was not written before it"


class Decisions(Protocol):
    """What reconciling needs of ``scheduler.runtime.SchedulerRuntime``."""

    def unaudited(self) -> list[tuple[Decision, Actor | None]]: ...
    def mark_audited(self, ids: list[str]) -> None: ...


class Marks:
    """Rows whose records were written, until their flags are set (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._decisions: list[str] = []
        self._receipts: list[str] = []

    def written(self, entries: Iterable[AuditEntry]) -> None:
        decisions, receipts = [], []
        for e in entries:
            if e.operation.startswith("decision."):
                decisions.append(str(e.params["decision"]))
            elif e.operation in RECEIPTS:
                receipts.append(str(e.params["key"]))
        if decisions or receipts:
            with self._lock:
                self._decisions += decisions
                self._receipts += receipts

    def take(self) -> tuple[list[str], list[str]]:
        with self._lock:
            out = (self._decisions, self._receipts)
            self._decisions, self._receipts = [], []
        return out

    def give_back(self, decisions: list[str], receipts: list[str]) -> None:
        """Flags that could not be set now: tried again with the next flush."""
        with self._lock:
            self._decisions = decisions + self._decisions
            self._receipts = receipts + self._receipts


def reconcile(runtime: Decisions, intents: IntentQueue, audit: AuditLog) -> tuple[int, int]:
    """Write the receipts and decision records a crash kept out of the log; how many of each.

    Call before anything else writes: a record still on its way would be written twice.
    Receipts first, so that the log shows an alert received before what it caused.
    """
    pending = intents.unreceipted()
    have = audit.recorded_receipts([u.intent.key for u in pending])
    receipts = [
        receipt_entry(u.intent, u.user, u.source_ip, u.intent.reason or RECOVERED)
        for u in pending
        if u.intent.key not in have
    ]
    if receipts:
        audit.append_many(receipts)
    intents.mark_receipts([u.intent.key for u in pending])

    unaudited = runtime.unaudited()
    have = audit.recorded_decisions([d.id for d, _ in unaudited])
    decisions = []
    for d, actor in unaudited:
        if d.id in have:
            continue
        user, ip = (actor.user, actor.source_ip) if actor else (decision_user(d), "")
        decisions.append(decision_entry(d, user, ip))
    if decisions:
        audit.append_many(decisions)
    runtime.mark_audited([d.id for d, _ in unaudited])
    if receipts or decisions:
        log.warning(
            "audit log: %d alert receipt(s) and %d decision record(s) written after a restart",
            len(receipts),
            len(decisions),
        )
    return len(receipts), len(decisions)
