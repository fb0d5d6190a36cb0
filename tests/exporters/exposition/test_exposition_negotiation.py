"""Which format and encoding a scraper gets, from the headers real scrapers send."""

from __future__ import annotations

import pytest

from exporters.exposition import Format, choose_format, gzip_accepted

PROMETHEUS_2 = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;"
    "q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
# Prometheus 3 with scrape_protocols: [PrometheusText0.0.4, OpenMetricsText1.0.0].
PROMETHEUS_3_TEXT_FIRST = (
    "text/plain;version=0.0.4;q=0.5,"
    "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.4,*/*;q=0.3"
)


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (PROMETHEUS_2, Format.OPENMETRICS),
        (PROMETHEUS_3_TEXT_FIRST, Format.TEXT),
        ("application/openmetrics-text", Format.OPENMETRICS),
        ("application/openmetrics-text; version=0.0.1", Format.OPENMETRICS),
        ("application/openmetrics-text;version=2.0.0", Format.TEXT),  # not offered
        ("application/openmetrics-text;q=0,text/plain", Format.TEXT),
        ("text/plain;version=0.0.4", Format.TEXT),
        ("application/json", Format.TEXT),
        ("", Format.TEXT),
        (None, Format.TEXT),
        ("application/openmetrics-text;q=not-a-number", Format.TEXT),
    ],
)
def test_format(accept: str | None, expected: Format) -> None:
    assert choose_format(accept) is expected


@pytest.mark.parametrize(
    ("accept_encoding", "expected"),
    [
        ("gzip", True),
        ("br, GZIP", True),
        ("gzip;q=0.5, identity", True),
        ("*", True),
        ("gzip;q=0", False),
        ("identity", False),
        ("", False),
        (None, False),
    ],
)
def test_gzip(accept_encoding: str | None, expected: bool) -> None:
    assert gzip_accepted(accept_encoding) is expected
