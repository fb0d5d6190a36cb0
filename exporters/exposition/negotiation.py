"""Which format and encoding a scraper asked for, from its ``Accept`` and ``Accept-Encoding``.

Prometheus 2 asks ``application/openmetrics-text;version=1.0.0,
application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,
*/*;q=0.1`` and ``gzip``; Prometheus 3 adds ``escaping=`` parameters and lets the
scrape config reorder the list. The highest ``q`` among the formats offered
wins (the first listed on a tie); anything else, or no header, gets the classic
text format, as prometheus_client's own server does. Every metric and label
name of this project is a legacy name, so the escaping schemes all write the
same text and need no branch here.
"""

from __future__ import annotations

from exporters.exposition.family import Format

CONTENT_TYPES = {
    Format.TEXT: "text/plain; version=0.0.4; charset=utf-8",
    Format.OPENMETRICS: "application/openmetrics-text; version=1.0.0; charset=utf-8",
}
# OpenMetrics 0.0.1 is the name Prometheus gives the draft of 1.0.0; it parses both alike.
_OPENMETRICS_VERSIONS = (None, "1.0.0", "0.0.1")


def _ranges(header: str | None) -> list[tuple[str, dict[str, str], float]]:
    """``(token, parameters, q)`` of each comma-separated element, lower-cased, q=0 ones dropped."""
    out = []
    for element in (header or "").split(","):
        token, *params = (p.strip() for p in element.split(";"))
        args = {}
        for p in params:
            k, _, v = p.partition("=")
            args[k.strip().lower()] = v.strip().strip('"')
        try:
            q = float(args.get("q", "1"))
        except ValueError:
            q = 0.0
        if token and q > 0:
            out.append((token.lower(), args, q))
    return out


def choose_format(accept: str | None) -> Format:
    best, best_q = Format.TEXT, 0.0
    for media, args, q in _ranges(accept):
        if media == "application/openmetrics-text":
            if args.get("version") not in _OPENMETRICS_VERSIONS:
                continue
            fmt = Format.OPENMETRICS
        elif media in ("text/plain", "text/*", "*/*"):
            fmt = Format.TEXT
        else:
            continue
        if q > best_q:
            best, best_q = fmt, q
    return best


def gzip_accepted(accept_encoding: str | None) -> bool:
    return any(coding in ("gzip", "*") for coding, _, _ in _ranges(accept_encoding))
