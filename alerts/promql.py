"""Small pure helpers to write PromQL and Prometheus durations from catalog constants.

Nothing here knows a metric name: callers pass ``Metric`` sample names
(``M.series``, ``M.bucket``, ...) from ``exporters.catalog``.
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client.utils import floatToGoString

from alerts.errors import DurationError

_UNITS = (("d", 86400_000), ("h", 3600_000), ("m", 60_000), ("s", 1000), ("ms", 1))


def dur(seconds: float) -> str:
    """A Prometheus duration for ``seconds``, in the largest unit that is exact (``90`` -> ``90s``).

    Mixed units (``1m30s``) are valid PromQL, but one unit keeps the generated
    files readable and stable.
    """
    ms = round(seconds * 1000)
    if ms <= 0:
        raise DurationError(f"duration must be at least 1 ms, got {seconds!r} s")
    for unit, size in _UNITS:
        if ms % size == 0:
            return f"{ms // size}{unit}"
    raise AssertionError("unreachable: 1 ms divides every whole number of ms")


def le(bound: float) -> str:
    """The ``le`` label value prometheus_client writes for a bucket bound (``0.05``, ``1.0``, ``+Inf``).

    The label is matched as a string, so it must be spelt exactly as the client spells it.
    """
    return str(floatToGoString(bound))


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sel(sample: str, matchers: Mapping[str, str] | None = None, /, **eq: str) -> str:
    """A vector selector. ``eq`` are equality matchers; ``matchers`` maps a label to
    an operator-prefixed value for the other operators, e.g. ``{"reason": "!~a|b"}``."""
    parts = [f"{k}={_quote(v)}" for k, v in eq.items()]
    for k, v in (matchers or {}).items():
        for op in ("!~", "=~", "!="):
            if v.startswith(op):
                parts.append(f"{k}{op}{_quote(v[len(op) :])}")
                break
        else:
            parts.append(f"{k}={_quote(v)}")
    return f"{sample}{{{','.join(parts)}}}" if parts else sample


def rate(selector: str, window: str) -> str:
    return f"rate({selector}[{window}])"


def by(labels: tuple[str, ...] | list[str]) -> str:
    return f"by ({', '.join(labels)})"


def num(value: float) -> str:
    """A float literal, rounded to 12 significant digits so that products like
    ``14.4 * (1 - 0.999)`` print as ``0.0144`` and not ``0.014400000000000012``."""
    return f"{value:.12g}"
