"""The service's background work: the scheduler's tick, retention, and WAL checkpoints.

The tick and retention loops run on the event loop and end at their next
check after ``stop``; the checkpoints run on a thread of their own, off every
commit path (``scheduler.store.wal``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable

from scheduler.audit import AuditEntry, AuditError, AuditLog, AuditUnavailable
from scheduler.audit.schema import PURGE
from scheduler.core.errors import SchedulerError, StoreUnavailable
from scheduler.service.audit_writer import AuditWriter
from scheduler.service.caller import Runtime, RuntimeCaller
from scheduler.service.config import ServiceConfig
from scheduler.service.denials import Denials
from scheduler.service.errors import IntentStoreUnavailable
from scheduler.service.intents import IntentQueue
from scheduler.service.reconcile import Marks
from scheduler.service.records import SCHEDULER_USER, decision_entry

log = logging.getLogger("novabrain.scheduler.service")
# Small, frequent checkpoints: each fsyncs the database file, and the disk makes the
# commits' own fsyncs wait behind it, so the fewer pages per checkpoint the shorter the
# stall. Measured at 1,000 alerts/s, alert -> actuator p99: 1 s -> ~25 ms,
# 0.2 s -> 10-17 ms, 0.05 s -> 5-7 ms.
CHECKPOINT_INTERVAL_SECONDS = 0.05


class Loops:
    def __init__(
        self,
        runtime: Runtime,
        *,
        call: RuntimeCaller,
        writer: AuditWriter,
        audit: AuditLog,
        intents: IntentQueue,
        denials: Denials,
        marks: Marks,
        clock: Callable[[], float],
        config: ServiceConfig,
    ) -> None:
        self.rt = runtime
        self.denials = denials
        self.marks = marks
        self.call = call
        self.writer = writer
        self.audit = audit
        self.intents = intents
        self.clock = clock
        self.config = config
        self.stopping = asyncio.Event()
        self._checkpoint_stop = threading.Event()
        self._checkpoint_thread = threading.Thread(
            target=self._checkpoints, name="wal-checkpoint", daemon=True
        )

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), timeout=seconds)

    async def ticker(self) -> None:
        while not self.stopping.is_set():
            try:
                decisions = await self.call(self.rt.tick)
            except StoreUnavailable as e:
                log.warning("tick: store unavailable: %s", e)
            except SchedulerError as e:
                log.error("tick failed: %s", e)
            else:
                entries = [decision_entry(d, SCHEDULER_USER) for d in decisions]
                entries += self.denials.due()
                # Records an audit outage kept back go out on the next tick at the latest,
                # not only with the next request.
                if entries or self.writer.backlog:
                    await self.writer.write_quietly(entries)
            await self.flush_marks()
            await self._sleep(self.config.tick_interval_seconds)

    async def flush_marks(self) -> None:
        """Flag the decisions and alert states whose records were written (``reconcile``)."""
        decisions, receipts = self.marks.take()
        try:
            if decisions:
                await self.call(self.rt.mark_audited, decisions)
                decisions = []
            if receipts:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, self.intents.mark_receipts, receipts)
                receipts = []
        except (StoreUnavailable, IntentStoreUnavailable) as e:
            log.warning("audit flags not set, retrying on the next tick: %s", e)
            self.marks.give_back(decisions, receipts)

    def maintain(self) -> None:
        """Retention: archive old audit records, purge those past the retention period,
        forget long-settled alert keys."""
        moved = self.audit.apply_retention()
        pruned = self.intents.prune(self.clock() - self.config.intent_key_retention_seconds)
        if moved or pruned:
            log.info(
                "retention: %d audit record(s) archived, %d alert key(s) pruned", moved, pruned
            )
        if self.config.audit_purge_after_seconds is None:
            return
        purged = self.audit.purge(self.clock() - self.config.audit_purge_after_seconds)
        if purged is None:
            return
        n, first = purged
        # The chain no longer starts at record 1: where it starts is recorded in the chain
        # itself and published, for verifiers (``audit verify --expect-first``).
        self.audit.append(
            AuditEntry(
                user=SCHEDULER_USER,
                source_ip="",
                object="audit",
                operation=PURGE,
                result="ok",
                reason=f"{n} record(s) past the retention period deleted from the archive",
                params={"records": n, "through_seq": first.seq, "through_hash": first.hash},
            )
        )
        log.warning("audit purge: %d record(s) deleted; the chain now starts after %s", n, first)

    async def maintenance(self) -> None:
        loop = asyncio.get_running_loop()
        while not self.stopping.is_set():
            try:
                # Archiving copies records between files: off the event loop.
                await loop.run_in_executor(None, self.maintain)
            except (AuditError, IntentStoreUnavailable) as e:
                log.error("retention failed, next try in an interval: %s", e)
            await self._sleep(self.config.maintenance_interval_seconds)

    def _checkpoints(self) -> None:
        """WAL upkeep of the three databases, off every commit path (``scheduler.store.wal``)."""
        stores = {
            "intent queue": self.intents.checkpoint,
            "audit log": self.audit.checkpoint,
            "scheduler store": self.rt.checkpoint,
        }
        failing: set[str] = set()
        while not self._checkpoint_stop.wait(CHECKPOINT_INTERVAL_SECONDS):
            for name, checkpoint in stores.items():
                try:
                    checkpoint()
                except (IntentStoreUnavailable, AuditUnavailable, SchedulerError) as e:
                    if name not in failing:  # once per outage, not five times a second
                        log.warning("%s: WAL checkpoint failed, retrying: %s", name, e)
                    failing.add(name)
                else:
                    failing.discard(name)

    def start_checkpoints(self) -> None:
        self._checkpoint_thread.start()

    async def stop_checkpoints(self) -> None:
        self._checkpoint_stop.set()
        await asyncio.get_running_loop().run_in_executor(None, self._checkpoint_thread.join)
