"""The project's one metrics renderer, used by every exporter (GPU, model, scheduler).

* ``family``: ``FamilySpec`` (a family's fixed parts; its series with their label
  values escaped once, when the series is created) and the ``Family`` /
  ``HistogramFamily`` a collection builds from it;
* ``snapshot``: ``Snapshot``, the immutable families of one moment, rendered at
  most once per format and encoding (the classic text format and OpenMetrics,
  plain or gzip);
* ``negotiation`` and ``http``: the format and encoding a scraper asks for, and
  the aiohttp ``/metrics`` answer.
"""

from exporters.exposition.errors import ExpositionError
from exporters.exposition.family import (
    Family,
    FamilySpec,
    Format,
    HistogramFamily,
    HistogramSeries,
    RenderedFamily,
    Series,
)
from exporters.exposition.histogram import Buckets, cumulative
from exporters.exposition.http import SnapshotSource, metrics_handler, metrics_response
from exporters.exposition.negotiation import CONTENT_TYPES, choose_format, gzip_accepted
from exporters.exposition.snapshot import Snapshot, render

__all__ = [
    "CONTENT_TYPES",
    "Buckets",
    "ExpositionError",
    "Family",
    "FamilySpec",
    "Format",
    "HistogramFamily",
    "HistogramSeries",
    "RenderedFamily",
    "Series",
    "Snapshot",
    "SnapshotSource",
    "choose_format",
    "cumulative",
    "gzip_accepted",
    "metrics_handler",
    "metrics_response",
    "render",
]
