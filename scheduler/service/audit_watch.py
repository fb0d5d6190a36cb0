"""The audit log's keepers: the background verifier, the head publisher and the forwarder.

On a thread of its own, every ``audit_verify_interval_seconds``, the guard
(``scheduler.audit.guard``) verifies the records appended since its last
pass and a slice of the whole chain again; it sets
``AUDIT_CHAIN_VERIFIED`` (1, or 0 once tampering is found: the
generated alert ``NovabrainAuditChainTampered`` pages) and the last verified
sequence number. Every ``audit_publish_interval_seconds`` it publishes the
verified head: the metric ``AUDIT_HEAD_SEQ`` and a log line
``audit head SEQ:HASH`` for an off-box collector to keep, the value ``novabrain
audit verify --expect-head`` takes. A second thread forwards each record off
the box (``scheduler.audit.forward``) when the stack asks for it.

Both threads only read the database (their own connections), and give the
GIL back every switch interval: the event loop keeps answering.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from deploy.stack import AuditForward
from scheduler.audit import AuditError, AuditLog
from scheduler.audit.forward import FileSink, Forwarder, Sink, SyslogSink
from scheduler.audit.guard import Guard
from scheduler.service.config import ServiceConfig
from scheduler.service.metrics import ServiceMetrics

log = logging.getLogger("novabrain.scheduler.audit")
MAX_BACKOFF_SECONDS = 30.0


def sink_for(forward: AuditForward) -> Sink:
    if forward.to == "syslog":
        return SyslogSink(forward.address)
    return FileSink(Path(forward.path))


class AuditWatch:
    def __init__(self, audit: AuditLog, *, metrics: ServiceMetrics, config: ServiceConfig) -> None:
        self.audit = audit
        self.metrics = metrics
        self.config = config
        self.guard = Guard(audit.path, archive=audit.archive_path, first=audit.purged_through)
        self.forwarder: Forwarder | None = None
        if config.audit_forward is not None:
            self.forwarder = Forwarder(
                audit.path,
                sink_for(config.audit_forward),
                cursor_path=audit.path.with_name(audit.path.stem + "-forward.cursor"),
                archive=audit.archive_path,
            )
            self._show_forwarded()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._verify, name="audit-verify", daemon=True)]
        if self.forwarder is not None:
            self._threads.append(
                threading.Thread(target=self._forward, name="audit-forward", daemon=True)
            )
        self._published = 0.0
        self._alarmed = False

    def _show_forwarded(self) -> None:
        if self.forwarder is not None and self.metrics.forwarded_seq is not None:
            self.metrics.forwarded_seq.set(self.forwarder.cursor.seq)

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        """Ends both threads; what was appended so far is forwarded first (bounded)."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10.0)
        if self.forwarder is not None:
            try:
                while self.forwarder.pump():
                    pass
            except (OSError, AuditError) as e:
                log.warning("audit forwarding: stopping with records not yet sent: %s", e)
            self.forwarder.close()

    # ------------------------------------------------------------------ verify and publish

    def verify_once(self) -> None:
        try:
            state = self.guard.check()
        except AuditError as e:  # unreadable now (locked, being replaced): next pass
            log.warning("audit verification could not read the log: %s", e)
            return
        self.metrics.chain_verified.set(1 if state.ok else 0)
        self.metrics.verified_seq.set(state.verified.seq)
        if not state.ok:
            if not self._alarmed:
                log.critical(
                    "audit log TAMPERED at record %s: %s (verified up to %d:%s)",
                    state.bad_seq,
                    state.problem,
                    state.verified.seq,
                    state.verified.hash,
                )
                self._alarmed = True
            return
        now = time.monotonic()
        if now - self._published >= self.config.audit_publish_interval_seconds:
            self._published = now
            self.metrics.head_seq.set(state.verified.seq)
            # The line an off-box collector keeps: `audit verify --expect-head` takes it.
            log.info("audit head %s", state.verified)

    def _verify(self) -> None:
        while True:
            try:
                self.verify_once()
            except Exception:
                log.exception("audit verification failed (a bug), retrying")
            if self._stop.wait(self.config.audit_verify_interval_seconds):
                return

    # ------------------------------------------------------------------ forward

    def _forward(self) -> None:
        assert self.forwarder is not None
        backoff = 0.0
        while not self._stop.wait(backoff or self.config.forward_interval_seconds):
            try:
                while self.forwarder.pump() and not self._stop.is_set():
                    pass
            except (OSError, AuditError) as e:
                self.metrics.forward_failures.inc()
                if not backoff:  # once per outage
                    log.warning("audit forwarding failed, retrying: %s", e)
                backoff = min(MAX_BACKOFF_SECONDS, max(0.5, backoff * 2))
                continue
            except Exception:
                log.exception("audit forwarding failed (a bug), retrying")
                backoff = MAX_BACKOFF_SECONDS
                continue
            if backoff:
                log.info("audit forwarding resumed at record %d", self.forwarder.cursor.seq)
            backoff = 0.0
            self._show_forwarded()
