"""A copy of every audit record off the box, as it is appended (PCI DSS 10.3.3).

Each record goes as one JSON line (the record as ``export`` writes it, hash
included), in chain order, to a ``Sink``:

* ``SyslogSink``: RFC 5424 messages over TCP, octet-counted (RFC 6587), to a
  collector such as rsyslog or syslog-ng: facility 13 (log audit), severity 6,
  APP-NAME ``novabrain``, MSGID ``audit``, the JSON line as MSG;
* ``FileSink``: a JSON Lines file, fsynced, for a log shipper to tail.

``Forwarder`` keeps its position (the last record delivered: seq and hash) in a
small cursor file, replaced atomically and fsynced after each delivery; a
restart resumes after it. A file sink is its own cursor as well: its last
line says what it holds, so a crash between a write and the cursor's update
repeats nothing. Syslog over TCP has no acknowledgement: a batch sent into a
connection the collector had just closed can vanish, so when a broken
connection shows (on the next send, or as end-of-file before it), the batch
sent before the break is sent again. Delivery to syslog is therefore at least
once, and each line carries its ``seq`` for the collector to drop repeats;
nothing is sent twice after a clean stop.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from scheduler.audit.records import AuditRecord
from scheduler.audit.schema import open_ro
from scheduler.audit.verify import START, ChainPoint, chain_row, rows_after, snapshot

BATCH = 500
FACILITY_LOG_AUDIT = 13
SEVERITY_INFORMATIONAL = 6
APP_NAME = "novabrain"
MSGID = "audit"


def line_of(r: AuditRecord) -> str:
    """A record as one JSON line, exactly as ``export`` writes it."""
    return json.dumps(r.as_dict(), sort_keys=True)


class Sink(Protocol):
    # True when a delivery can vanish after ``send`` returned (no acknowledgement): after a
    # failure the batch before is sent again.
    resend_after_break: bool

    def send(self, records: Sequence[AuditRecord]) -> None:
        """Deliver, in order; ``OSError`` if not (all) delivered."""

    def holds(self) -> ChainPoint | None:
        """The last record the destination is known to hold, if it can tell."""

    def close(self) -> None: ...


class SyslogSink:
    resend_after_break = True

    def __init__(self, address: str, *, timeout: float = 5.0, hostname: str | None = None) -> None:
        host, _, port = address.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.timeout = timeout
        self.hostname = (hostname or socket.gethostname() or "-").replace(" ", "_")[:255]
        self._sock: socket.socket | None = None

    def message(self, r: AuditRecord) -> bytes:
        ts = datetime.fromtimestamp(r.ts, UTC).isoformat(timespec="microseconds")
        pri = FACILITY_LOG_AUDIT * 8 + SEVERITY_INFORMATIONAL
        head = f"<{pri}>1 {ts.replace('+00:00', 'Z')} {self.hostname} {APP_NAME} {os.getpid()}"
        body = f"{head} {MSGID} - {line_of(r)}".encode()
        return str(len(body)).encode() + b" " + body  # RFC 6587 octet counting

    def _connected(self) -> socket.socket:
        sock = self._sock
        if sock is not None and _closed_by_peer(sock):
            self.close()
            raise ConnectionResetError("the collector closed the connection")
        if sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            self._sock = sock
        return sock

    def send(self, records: Sequence[AuditRecord]) -> None:
        sock = self._connected()
        try:
            sock.sendall(b"".join(self.message(r) for r in records))
        except OSError:
            self.close()
            raise

    def holds(self) -> ChainPoint | None:
        return None

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def _closed_by_peer(sock: socket.socket) -> bool:
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class FileSink:
    resend_after_break = False

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def send(self, records: Sequence[AuditRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            f.write("".join(line_of(r) + "\n" for r in records))
            f.flush()
            os.fsync(f.fileno())

    def holds(self) -> ChainPoint | None:
        """The file's last complete line; a line a crash cut short is removed first."""
        if not self.path.exists():
            return None
        with self.path.open("rb+") as f:
            end = f.seek(0, os.SEEK_END)
            start = max(0, end - 65536)
            f.seek(start)
            tail = f.read()
            if tail and not tail.endswith(b"\n"):
                cut = tail.rfind(b"\n") + 1
                f.truncate(start + cut)
                tail = tail[:cut]
        lines = tail.splitlines()
        if not lines:
            return None
        last = json.loads(lines[-1])
        return ChainPoint(int(last["seq"]), str(last["hash"]))

    def close(self) -> None:
        return None


class Forwarder:
    """Sends what was appended since its cursor; ``pump`` from one thread."""

    def __init__(
        self,
        db: Path,
        sink: Sink,
        *,
        cursor_path: Path,
        archive: Path | None = None,
        batch: int = BATCH,
    ) -> None:
        self.db = Path(db)
        self.sink = sink
        self.cursor_path = Path(cursor_path)
        self.archive = archive
        self.batch = batch
        self.cursor = self._load()
        self._sent_before: ChainPoint | None = None  # the cursor before the last batch sent

    def _load(self) -> ChainPoint:
        saved = START
        if self.cursor_path.exists():
            saved = ChainPoint.parse(self.cursor_path.read_text())
        held = self.sink.holds()
        return held if held is not None and held.seq >= saved.seq else saved

    def _save(self) -> None:
        tmp = self.cursor_path.with_suffix(".tmp")
        with tmp.open("w") as f:
            f.write(str(self.cursor))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.cursor_path)
        fd = os.open(self.cursor_path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _next(self) -> list[AuditRecord]:
        with open_ro(self.db) as d, snapshot(d):
            anchor = chain_row(d, "anchor")
            if self.cursor.seq >= anchor.seq:
                return list(rows_after(d, self.cursor.seq, limit=self.batch))
        # Archived before it was forwarded (the service was down a long time).
        if self.archive is None or not self.archive.exists():
            return []
        with open_ro(self.archive) as a, snapshot(a):
            return list(rows_after(a, self.cursor.seq, limit=self.batch))

    def pump(self) -> int:
        """Forward one batch; how many records went (0: nothing new). ``OSError`` from the
        sink means not delivered: the cursor stays (and steps back over the batch sent just
        before, which a broken connection may have lost)."""
        records = self._next()
        if not records:
            return 0
        try:
            self.sink.send(records)
        except OSError:
            if self._sent_before is not None and self.sink.resend_after_break:
                self.cursor, self._sent_before = self._sent_before, None
                self._save()
            raise
        self._sent_before = self.cursor
        last = records[-1]
        self.cursor = ChainPoint(last.seq, last.hash)
        self._save()
        return len(records)

    def close(self) -> None:
        self.sink.close()
