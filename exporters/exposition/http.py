"""``GET /metrics`` for aiohttp: the negotiated format and encoding of a snapshot.

Every exporter of the project serves its metrics through ``metrics_response``
(or ``metrics_handler``): the GPU exporter, the model server and the scheduler.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, runtime_checkable

from aiohttp import web
from prometheus_client.registry import Collector

from exporters.exposition.negotiation import CONTENT_TYPES, choose_format, gzip_accepted
from exporters.exposition.snapshot import Snapshot


@runtime_checkable
class SnapshotSource(Protocol):
    """Something that keeps its metrics as a snapshot (the GPU exporter, the model instruments)."""

    def snapshot(self) -> Snapshot: ...


def metrics_response(request: web.BaseRequest, source: SnapshotSource | Collector) -> web.Response:
    """The answer to a scrape of ``source``: a snapshot source's current snapshot, or a
    snapshot of what a collector (a whole registry, say) yields now."""
    fmt = choose_format(request.headers.get("Accept"))
    compressed = gzip_accepted(request.headers.get("Accept-Encoding"))
    snap = source.snapshot() if isinstance(source, SnapshotSource) else Snapshot.of(source)
    headers = {"Content-Type": CONTENT_TYPES[fmt], "Vary": "Accept, Accept-Encoding"}
    if compressed:
        headers["Content-Encoding"] = "gzip"
    return web.Response(body=snap.body(fmt, compressed), headers=headers)


def metrics_handler(
    source: SnapshotSource | Collector,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A ``GET /metrics`` handler for ``app.router.add_get("/metrics", ...)``."""

    async def metrics(request: web.Request) -> web.Response:
        return metrics_response(request, source)

    return metrics
