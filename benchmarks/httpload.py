"""A small HTTP/1.1 load generator for the benchmarks: keep-alive connections, prebuilt requests.

Why not aiohttp's client: it costs the client about as much CPU per request as
the server under test spends, and on a 2-core machine the two fight for the
same cores, so the numbers measure the client. Here each request is written
from a prebuilt byte string and its answer is parsed just far enough to find
the status and the end of the body (about 0.1 ms of client CPU per request).

Two modes, as wrk and wrk2 have:
- ``closed``: N connections, each sends its next request when the answer comes
  (the most the server does at that concurrency);
- ``paced``: requests start on a fixed schedule whatever the answers take,
  and each latency counts from the request's *scheduled* start, so a stalled
  server cannot hide its stall by slowing the client down (no coordinated
  omission).
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field


def post(host: str, port: int, path: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", f"Content-Length: {len(body)}"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


@dataclass
class Result:
    wall_seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    codes: dict[int, int] = field(default_factory=dict)

    def add(self, status: int, latency: float) -> None:
        self.latencies.append(latency)
        self.codes[status] = self.codes.get(status, 0) + 1


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.answer: asyncio.Future[int] | None = None
        self._buf = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def send(self, request: bytes) -> asyncio.Future[int]:
        assert self.transport is not None
        self.answer = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        return self.answer

    def data_received(self, data: bytes) -> None:
        self._buf += data
        end = self._buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self._buf[:end].split(b"\r\n")
        length = 0
        for line in head[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if len(self._buf) < end + 4 + length:
            return
        self._buf = self._buf[end + 4 + length :]
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(int(head[0].split()[1]))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_exception(ConnectionError(f"connection lost: {exc}"))


async def _connect(host: str, port: int) -> _Connection:
    _, conn = await asyncio.get_running_loop().create_connection(_Connection, host, port)
    return conn


async def closed(host: str, port: int, requests: list[bytes], connections: int) -> Result:
    """Each of ``connections`` sends its next request as soon as its answer arrives."""
    res = Result()
    it = iter(requests)
    conns = [await _connect(host, port) for _ in range(connections)]

    async def run(conn: _Connection) -> None:
        for req in it:
            t = time.perf_counter()
            status = await conn.send(req)
            res.add(status, time.perf_counter() - t)

    t0 = time.perf_counter()
    await asyncio.gather(*(run(c) for c in conns))
    res.wall_seconds = time.perf_counter() - t0
    for c in conns:
        assert c.transport is not None
        c.transport.close()
    return res


async def paced(host: str, port: int, requests: list[bytes], rate: float) -> Result:
    """Start request i at ``i / rate`` seconds, on an idle connection (a new one if none is)."""
    res = Result()
    idle: list[_Connection] = []
    every: list[_Connection] = []

    async def one(req: bytes, scheduled: float) -> None:
        if idle:
            conn = idle.pop()
        else:
            conn = await _connect(host, port)
            every.append(conn)
        status = await conn.send(req)
        res.add(status, time.perf_counter() - scheduled)
        idle.append(conn)

    tasks = []
    t0 = time.perf_counter()
    for i, req in enumerate(requests):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(req, scheduled)))
    await asyncio.gather(*tasks)
    res.wall_seconds = time.perf_counter() - t0
    for c in every:
        assert c.transport is not None
        c.transport.close()
    return res


def spawn(argv: list[str], ready: Callable[[], object], what: str) -> subprocess.Popen[bytes]:
    """Start a server process and wait (up to 30 s) until ``ready()`` stops raising OSError."""
    proc = subprocess.Popen(argv)
    for _ in range(600):
        try:
            ready()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{what} did not start")
