"""A whole exposition as of one moment, rendered at most once per format and encoding.

A collector publishes a ``Snapshot`` (an immutable tuple of families) when a
collection cycle ends; a scrape asks it for ``body(format, gzip)``. The first
scrape of a snapshot renders (and compresses) it, under the snapshot's own
lock, and keeps the bytes; any scrape of the same snapshot, concurrent or
later, gets those bytes. So concurrent scrapes never multiply the work, a
scrape never waits for a collection (the collector only swaps in a new
snapshot) and a collection never waits for a scrape (it does not take this lock).

Families from this package (``exporters.exposition.family``) are rendered
directly; any other prometheus_client family in the tuple (a registry can mix
them) is written by prometheus_client, one family at a time.
"""

from __future__ import annotations

import gzip
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import cast

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.registry import Collector

from exporters.exposition.family import Format, RenderedFamily

# prometheus_client types its classic writer but not its OpenMetrics one.
_generate_openmetrics = cast(Callable[[Collector], bytes], openmetrics.generate_latest)

# Level 1 of the same deflate: at 256 GPUs (1 MB of text) it writes 6.9% of the
# plain bytes in about 1.6 ms; level 9 (prometheus_client's default) writes 5.1%
# in about 25 ms. The scrape pays for the compression, so the fast level wins.
GZIP_LEVEL = 1
_EOF = "# EOF\n"


class _One(Collector):
    """One foreign family, as prometheus_client's writers want it (something with ``collect``)."""

    def __init__(self, family: Metric) -> None:
        self._family = family

    def collect(self) -> Iterator[Metric]:
        yield self._family


def _foreign(family: Metric, fmt: Format) -> str:
    if fmt is Format.TEXT:
        return generate_latest(_One(family)).decode()
    text = _generate_openmetrics(_One(family)).decode()
    return text.removesuffix(_EOF)


def render(families: Iterable[Metric], fmt: Format) -> str:
    """The families in ``fmt``: what prometheus_client's writer would write for them."""
    out = [f.text(fmt) if isinstance(f, RenderedFamily) else _foreign(f, fmt) for f in families]
    if fmt is Format.OPENMETRICS:
        out.append(_EOF)
    return "".join(out)


class Snapshot:
    """Families as of one moment (immutable) and the bodies rendered from them (kept)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = tuple(families)
        self._lock = threading.Lock()
        self._bodies: dict[tuple[Format, bool], bytes] = {}
        # How many times each body was built: 1 at most, whatever the scrapes (tests read it).
        self.renders: Counter[tuple[Format, bool]] = Counter()

    @classmethod
    def of(cls, collector: Collector) -> Snapshot:
        """A snapshot of whatever ``collector`` (a registry, say) yields now."""
        return cls(collector.collect())

    def body(self, fmt: Format = Format.TEXT, compressed: bool = False) -> bytes:
        """The exposition in ``fmt``, gzip-compressed if ``compressed``; built once, then kept."""
        key = (fmt, compressed)
        body = self._bodies.get(key)
        if body is not None:
            return body
        with self._lock:
            return self._build(fmt, compressed)

    def _build(self, fmt: Format, compressed: bool) -> bytes:
        key = (fmt, compressed)
        body = self._bodies.get(key)
        if body is None:
            if compressed:
                body = gzip.compress(self._build(fmt, False), GZIP_LEVEL, mtime=0)
            else:
                body = render(self.families, fmt).encode()
            self._bodies[key] = body
            self.renders[key] += 1
        return body
