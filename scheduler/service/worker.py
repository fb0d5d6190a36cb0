"""The intent worker: acts on durable intents in arrival order, once each, on its own thread.

The webhook's group-commit thread hands each batch of new intents over the
moment their transaction commits (``submit``, any thread), so an alert reaches
the scheduler without a trip through the event loop, and the loop, busy
answering the next notifications, never delays or pays for the acting.

For each batch the worker calls the runtime (decide, persist, actuate), then
writes the audit records and settles the intents in the queue. Both writes
are retried while their storage is down, never by acting again: an intent
leaves the worker's memory exactly once. An intent acted on but not yet
settled when the process dies is still ``pending`` in the table; at the next
start ``recover`` finds its decision by correlation id and settles it without
acting. An intent is settled only after its records are written.

At start the worker reads what the table holds pending (a previous run's
leftovers, or notifications that arrived while it was starting) from one
snapshot. Row ids grow in commit order, so a handed-over intent whose id is
at most the snapshot's largest was in that read, and is skipped.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Collection, Sequence
from typing import Protocol

from prometheus_client import Counter, Gauge, Histogram

from scheduler.audit import AuditEntry, AuditLog, AuditUnavailable
from scheduler.core.errors import SchedulerError, StoreUnavailable
from scheduler.core.model import Decision
from scheduler.service.errors import IntentStoreUnavailable
from scheduler.service.intents import IntentQueue, Outcome, QueuedIntent
from scheduler.service.payload import Intent
from scheduler.service.reconcile import Marks
from scheduler.service.records import ALERTMANAGER_USER, SCHEDULER_USER, decision_entry

log = logging.getLogger("novabrain.scheduler.service.worker")
BATCH = 64
AUDIT_BACKLOG_MAX = 10_000
# How long the audit records and settlements of acted-on intents may wait to share one
# write with the next ones: at 1,000 alerts/s, one fsync per ~20 instead of one each
# (measured: p50 alert -> actuator 2.0 -> 1.5 ms against 5 ms). The acting never waits:
# the runtime persisted each decision before actuating it, and a crash inside the window
# loses no record (``recover`` audits the decisions the log lacks).
WRITE_LINGER_SECONDS = 0.02
BARRIER_SECONDS = 5.0


class Runtime(Protocol):
    """What the worker needs of ``scheduler.runtime.SchedulerRuntime``."""

    def on_alert(
        self,
        *,
        pool: str,
        action: str,
        firing: bool,
        correlation_id: str,
        model: str = "",
        rate_rps: float | None = None,
    ) -> list[Decision]: ...
    def decisions_for(self, correlation_ids: Collection[str]) -> dict[str, list[Decision]]: ...


class IntentWorker:
    def __init__(
        self,
        runtime: Runtime,
        intents: IntentQueue,
        audit: AuditLog,
        *,
        clock: Callable[[], float],
        latency: Histogram,
        pending: Gauge,
        audit_records: Counter,
        retry_backoff_seconds: float,
        marks: Marks,
    ) -> None:
        self.rt = runtime
        self.marks = marks
        self.intents = intents
        self.audit = audit
        self.clock = clock
        self.m_latency = latency
        self.m_pending = pending
        self.m_audit = audit_records
        self.backoff = retry_backoff_seconds
        self._inbox: queue.SimpleQueue[tuple[list[tuple[int, Intent]], float] | None] = (
            queue.SimpleQueue()
        )
        self._ready: deque[QueuedIntent] = deque()
        self._unsettled: list[Outcome] = []
        self._unaudited: list[AuditEntry] = []
        self._loaded_upto = 0
        self._owed_upto = 0  # the largest row id whose records are owed
        self._audited = threading.Condition()
        self._audited_upto = 0  # row ids whose alert.queued records are written (or given up)
        self._write_at: float | None = None  # monotonic time the owed writes are due
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="intent-worker", daemon=True)

    # ------------------------------------------------------------------ any thread

    def start(self) -> None:
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def submit(self, recorded: Sequence[tuple[int, Intent]], received_at: float) -> None:
        """Hand over newly committed intents (row id, intent); those without an action are kept out."""
        actionable = [(row_id, i) for row_id, i in recorded if i.action]
        if actionable:
            self._inbox.put((actionable, received_at))

    def audited_upto(self, row_id: int) -> None:
        """The webhook's records for intents up to ``row_id`` are written (any thread)."""
        with self._audited:
            self._audited_upto = max(self._audited_upto, row_id)
            self._audited.notify_all()

    def stop(self, timeout: float) -> bool:
        """Finish the batch in hand, write what is owed, and end; False if it did not end in time."""
        self._stop.set()
        self._inbox.put(None)
        self._thread.join(timeout)
        return not self._thread.is_alive()

    # ------------------------------------------------------------------ the worker's thread

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.recover()
                self._load()
                break
            except (IntentStoreUnavailable, SchedulerError, AuditUnavailable) as e:
                log.error("intent recovery failed, retrying: %s", e)
                self._stop.wait(self.backoff)
            except Exception:
                log.exception("intent recovery failed (a bug), retrying")
                self._stop.wait(self.backoff)
        while not self._stop.is_set():
            try:
                self._step()
            except Exception:
                # A bug must not silently end the only thread that acts on alerts.
                log.exception("intent worker step failed, retrying")
                self._stop.wait(self.backoff)
        self._write_owed()

    def _step(self) -> None:
        """Take what was handed over, act on a batch, write what is owed when it is due."""
        if self._write_at is None and (self._unsettled or self._unaudited):
            self._write_at = time.monotonic() + WRITE_LINGER_SECONDS
        due = None if self._write_at is None else max(0.0, self._write_at - time.monotonic())
        self._take(block=not self._ready and due != 0.0, timeout=due)
        if self._ready and not self._stop.is_set():
            try:
                self._act_batch()
            except StoreUnavailable as e:
                log.warning("intent worker: scheduler store unavailable, retrying: %s", e)
                self._stop.wait(self.backoff)
        # What this batch owes is given its due time at the top of the next step.
        if self._write_at is not None and time.monotonic() >= self._write_at:
            self._write_owed()

    def _take(self, *, block: bool, timeout: float | None) -> None:
        """Move handed-over intents into the ready queue (waiting for some if ``block``)."""
        try:
            item = self._inbox.get(block=block, timeout=timeout if block else None)
            while True:
                if item is not None:
                    self._queue(*item)
                item = self._inbox.get_nowait()
        except queue.Empty:
            pass
        self.m_pending.set(len(self._ready))

    def _queue(self, recorded: list[tuple[int, Intent]], received_at: float) -> None:
        for row_id, i in recorded:
            if row_id <= self._loaded_upto:
                continue  # the startup read has it
            self._ready.append(
                QueuedIntent(
                    row_id,
                    i.key,
                    i.correlation_id,
                    i.alert,
                    i.pool,
                    i.action,
                    i.firing,
                    received_at,
                    i.model,
                    i.rate_rps,
                )
            )

    def _load(self) -> None:
        pending, self._loaded_upto = self.intents.pending_snapshot()
        self._ready.extend(pending)
        self.m_pending.set(len(self._ready))

    def recover(self) -> None:
        """Settle intents a crash may have interrupted: done if the runtime recorded their decision.

        The worker settles an intent only after the scheduler acted on it, so a
        pending intent may have been acted on just before a crash; its
        correlation id in the scheduler's decisions says so. (Decision records
        the crash kept out of the audit log were written by ``reconcile``
        before the worker started.)
        """
        pending = self.intents.fetch_pending()
        if not pending:
            return
        by_cid = self.rt.decisions_for([it.correlation_id for it in pending])
        done = [it for it in pending if it.correlation_id in by_cid]
        if not done:
            return
        outcome = "acted on before a restart: decision already recorded"
        # Settled first: the startup read that follows must not see them pending.
        self.intents.finish_many([([Outcome(it.id, "done", outcome) for it in done], self.clock())])
        for it in done:
            self._unaudited.append(
                AuditEntry(
                    user=SCHEDULER_USER,
                    source_ip="",
                    object=f"pool/{it.pool}",
                    operation="alert.recovered",
                    result="ok",
                    reason=outcome,
                    params={
                        "action": it.action,
                        "firing": it.firing,
                        "key": it.key,
                        "decisions": [d.id for d in by_cid[it.correlation_id]],
                    },
                    correlation_id=it.correlation_id,
                )
            )

    def _act_batch(self) -> None:
        """Act on the oldest ready intents in order; a store outage stops the batch where it is."""
        for _ in range(min(BATCH, len(self._ready))):
            it = self._ready[0]
            outcome, entries = self.act(it)  # StoreUnavailable: it stays first in line
            self._ready.popleft()
            self._owed_upto = max(self._owed_upto, it.id)
            self._unsettled.append(outcome)
            self._unaudited += entries
        self.m_pending.set(len(self._ready))

    def act(self, it: QueuedIntent) -> tuple[Outcome, list[AuditEntry]]:
        """Carry out one intent: its outcome for the queue and its audit records.

        ``StoreUnavailable`` propagates (retried); any other failure settles the intent as failed.
        """
        base = {"action": it.action, "firing": it.firing, "alert": it.alert, "key": it.key}
        obj, op = f"pool/{it.pool}", f"alert.{it.action}"
        try:
            decisions = self.rt.on_alert(
                pool=it.pool,
                action=it.action,
                firing=it.firing,
                correlation_id=it.correlation_id,
                model=it.model,
                rate_rps=it.rate_rps,
            )
        except StoreUnavailable:
            raise
        except Exception as e:
            if not isinstance(e, SchedulerError):
                # A bug: logged with its traceback, and the intent is not retried forever.
                log.exception("acting on %s failed", it.correlation_id)
            reason = f"{type(e).__name__}: {e}"
            entry = AuditEntry(
                ALERTMANAGER_USER, "", obj, op, "failed", reason, base, it.correlation_id
            )
            return Outcome(it.id, "failed", reason), [entry]
        self.m_latency.labels(it.action).observe(max(0.0, self.clock() - it.received_at))
        ids = [d.id for d in decisions]
        reason = ("firing" if it.firing else "resolved") + f": {len(ids)} decision(s)"
        entries = [
            AuditEntry(
                ALERTMANAGER_USER,
                "",
                obj,
                op,
                "ok",
                reason,
                {**base, "decisions": ids},
                it.correlation_id,
            )
        ]
        entries += [decision_entry(d, ALERTMANAGER_USER) for d in decisions]
        return Outcome(it.id, "done", ",".join(ids)), entries

    def _write_owed(self) -> None:
        """Write the audit records and settle the intents acted on; kept for a retry if not written."""
        self._write_at = None
        if self._unaudited and self._owed_upto > self._loaded_upto:
            # After the records of the alerts' arrival (written within a few ms of the
            # hand-over; the wait is bounded in case that write is stuck).
            with self._audited:
                self._audited.wait_for(
                    lambda: self._audited_upto >= self._owed_upto, timeout=BARRIER_SECONDS
                )
        if self._unaudited:
            try:
                self.audit.append_many(self._unaudited)
            except AuditUnavailable as e:
                log.error("audit log unavailable, %d record(s) kept for retry: %s", len(self._unaudited), e)  # fmt: skip
                self._unaudited = self._unaudited[-AUDIT_BACKLOG_MAX:]
                self._write_at = time.monotonic() + self.backoff
                # Settled only once audited: a crash meanwhile leaves them pending, and
                # recovery then records what they caused.
                return
            self.m_audit.labels("written").inc(len(self._unaudited))
            self.marks.written(self._unaudited)
            self._unaudited = []
        if self._unsettled:
            try:
                self.intents.finish_many([(self._unsettled, self.clock())])
            except IntentStoreUnavailable as e:
                # Still pending in the table: after a restart, recovery finds their decisions.
                log.warning("settling %d intent(s) failed, retrying: %s", len(self._unsettled), e)
                self._write_at = time.monotonic() + self.backoff
            else:
                self._unsettled = []
