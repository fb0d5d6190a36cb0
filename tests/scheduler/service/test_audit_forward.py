"""The off-box copy: each record, as appended, to a real syslog collector (rsyslogd on
loopback) or to a JSON Lines file; retried while the collector is down; nothing lost, and
nothing repeated across restarts."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import threading
import time
from collections import Counter
from pathlib import Path

from rsyslog_kit import Rsyslog, needs_rsyslogd
from service_testkit import auth, start_env
from tamper_kit import StepClock, entry

from deploy.stack import AuditForward
from exporters.catalog.service import AUDIT_FORWARDED_SEQ, AUDIT_HEAD_SEQ
from scheduler.audit import AuditLog, export
from scheduler.audit.forward import FileSink, Forwarder, SyslogSink
from scheduler.service.config import ServiceConfig
from scheduler.service.ratelimit import RateLimit


def _append(log: AuditLog, first: int, n: int) -> None:
    log.append_many([entry(i) for i in range(first, first + n)])


def _exported(log: AuditLog) -> list[dict[str, object]]:
    buf = io.StringIO()
    export(log.path, out=buf, fmt="jsonl")
    return [json.loads(line) for line in buf.getvalue().splitlines()]


def _drain(f: Forwarder) -> None:
    while f.pump():
        pass


def test_a_file_holds_each_record_once_across_restarts_and_crashes(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "audit.db", clock=StepClock())
    out, cursor = tmp_path / "ship" / "audit.jsonl", tmp_path / "audit-forward.cursor"
    _append(log, 1, 7)
    f = Forwarder(log.path, FileSink(out), cursor_path=cursor, batch=3)
    _drain(f)
    _append(log, 8, 5)
    f = Forwarder(log.path, FileSink(out), cursor_path=cursor, batch=3)  # a restart
    _drain(f)
    # A crash after a write, before the cursor's update: the file says what it holds.
    cursor.write_text("3:" + json.loads(out.read_text().splitlines()[2])["hash"])
    with out.open("a") as fh:
        fh.write('{"seq": 13, "cut sh')  # ... and one mid-line
    _append(log, 13, 2)
    _drain(Forwarder(log.path, FileSink(out), cursor_path=cursor, batch=3))
    lines = [json.loads(x) for x in out.read_text().splitlines()]
    assert lines == _exported(log)  # every record, once, in order, exactly as exported


@needs_rsyslogd
def test_syslog_gets_every_record_once_and_a_collector_outage_loses_nothing(
    tmp_path: Path,
) -> None:
    log = AuditLog(tmp_path / "audit.db", clock=StepClock())
    cursor = tmp_path / "audit-forward.cursor"
    with Rsyslog(tmp_path / "rsyslog") as collector:
        _append(log, 1, 20)
        f = Forwarder(log.path, SyslogSink(collector.address), cursor_path=cursor, batch=8)
        _drain(f)
        assert collector.wait_for(20) == _exported(log)
        # The collector goes away: delivery fails, and is retried until it is back.
        collector.stop()
        _append(log, 21, 10)
        failures = 0
        for _ in range(3):
            try:
                _drain(f)
            except OSError:
                failures += 1
        assert failures and f.cursor.seq < 30
        collector.start()
        _drain(f)
        got = collector.wait_for(30)
    seqs = Counter(int(r["seq"]) for r in got)
    assert set(seqs) == set(range(1, 31))  # nothing lost
    # At least once over a broken connection: at most the batch sent before the break again.
    assert sum(seqs.values()) - 30 <= 8
    assert sorted({json.dumps(r, sort_keys=True) for r in got}) == sorted(
        json.dumps(r, sort_keys=True) for r in _exported(log)
    )


@needs_rsyslogd
async def test_the_running_service_forwards_and_a_restart_repeats_nothing(
    tmp_path: Path,
) -> None:
    with Rsyslog(tmp_path / "rsyslog") as collector:
        cfg = ServiceConfig(
            anonymous_rate=RateLimit(1e6, 1e6),
            audit_forward=AuditForward("syslog", address=collector.address),
            forward_interval_seconds=0.05,
        )
        for run in range(2):  # the second run resumes from the persisted cursor
            env = await start_env(tmp_path, cfg)
            try:
                for _ in range(5):
                    r = await env.client.get("/api/v1/pools", headers=auth("viewer"))
                    assert r.status == 200
            finally:
                await env.client.close()  # a clean stop forwards what is left
            log = AuditLog(tmp_path / "audit.db")
            head = log.head()[0]
            assert head == 5 * (run + 1)
            got = collector.wait_for(head)
            assert [r["seq"] for r in got] == list(range(1, head + 1))  # none lost, none twice
            assert got == _exported(log)
            log.close()


class _ClosingCollector:
    """A collector that reads one batch on its first connection, and closes it (a restart,
    a crash) with the next batch unread in its buffer: that batch is gone, though the
    sender's ``sendall`` returned. Every later connection is read in full."""

    def __init__(self, first_batch: int) -> None:
        self.first_batch = first_batch
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.seqs: list[int] = []
        self.closed = threading.Event()
        self.crash = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _frames(self, conn: socket.socket, limit: int | None) -> None:
        buf, n = b"", 0
        while limit is None or n < limit:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
            while b" " in buf:
                size, _, rest = buf.partition(b" ")
                if len(rest) < int(size):
                    break
                msg, buf = rest[: int(size)], rest[int(size) :]
                self.seqs.append(json.loads(msg.split(b" - ", 1)[1])["seq"])
                n += 1

    def _serve(self) -> None:
        conn, _ = self.sock.accept()
        self._frames(conn, self.first_batch)
        self.crash.wait(10)
        conn.close()
        self.closed.set()
        while True:
            conn, _ = self.sock.accept()
            self._frames(conn, None)


def test_a_batch_sent_into_a_connection_the_collector_closed_is_sent_again(
    tmp_path: Path,
) -> None:
    log = AuditLog(tmp_path / "audit.db", clock=StepClock())
    collector = _ClosingCollector(first_batch=4)
    f = Forwarder(log.path, SyslogSink(collector.address), cursor_path=tmp_path / "c", batch=4)
    _append(log, 1, 4)
    assert f.pump() == 4
    _append(log, 5, 4)
    assert f.pump() == 4  # accepted by the kernel; the collector will never read it
    collector.crash.set()
    assert collector.closed.wait(10)
    _append(log, 9, 4)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            _drain(f)
            break
        except OSError:
            time.sleep(0.05)  # the break shows; the cursor steps back over the lost batch
    while len(set(collector.seqs)) < 12 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(collector.seqs) == set(range(1, 13))


async def test_the_forwarded_position_is_exported_only_when_forwarding(tmp_path: Path) -> None:
    """Without audit.forward there is no copy to lag: no forwarded series, so
    NovabrainAuditForwardingBehind (head - forwarded > 0) has nothing to fire on."""
    for forward in (None, AuditForward("file", path=str(tmp_path / "copy.jsonl"))):
        cfg = ServiceConfig(
            audit_forward=forward,
            forward_interval_seconds=0.05,
            audit_publish_interval_seconds=0.05,
            audit_verify_interval_seconds=0.05,
        )
        (tmp_path / str(forward is None)).mkdir()
        env = await start_env(tmp_path / str(forward is None), cfg)
        try:
            for _ in range(3):
                r = await env.client.get("/api/v1/pools", headers=auth("viewer"))
                assert r.status == 200
            reg = env.service.registry
            deadline = time.monotonic() + 10
            while not reg.get_sample_value(AUDIT_HEAD_SEQ.series):
                assert time.monotonic() < deadline, "no head published"
                await asyncio.sleep(0.05)
            forwarded = reg.get_sample_value(AUDIT_FORWARDED_SEQ.series)
            if forward is None:
                assert forwarded is None
            else:
                while reg.get_sample_value(AUDIT_FORWARDED_SEQ.series) < 3:
                    assert time.monotonic() < deadline, "nothing forwarded"
                    await asyncio.sleep(0.05)
        finally:
            await env.client.close()
