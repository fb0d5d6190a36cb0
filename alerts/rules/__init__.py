"""Alerting and recording rules generated from the stack, each with its promtool fixtures.

Every alert is built as a ``Case``: the rule(s) that share one alert name, plus
two sets of input series for ``promtool test rules`` (one where the alert must
fire, with the exact labels and annotations expected, and one where it must
stay quiet). ``alerts.unittests`` turns the cases into promtool test files, so
no alert can be added without both tests.

Timings come from the stack, so the demo's compressed clock
(``stack.with_timing``) yields rules that act in seconds:

* ``fast_window`` = 4 x scrape interval: the rate window of fast alerts. A rate
  needs two samples; four tolerate one missed scrape and still smooth over a
  single slow request. 15 s scrapes give ``1m`` (Prometheus' usual minimum),
  the demo's 1 s scrapes give ``4s``.
* ``sustain`` = 20 x scrape interval: how long a condition must hold before a
  health alert fires (5 min in production).
* ``stale_after`` = 10 x scrape interval: the GPU exporter's last collection is
  older than ten scrapes.

SLO alerts use the Google SRE workbook's multi-window multi-burn-rate pairs,
which are properties of the 30-day error budget and do not scale with the clock.

The package is split by concern, one module per rule family (``slo``, ``models``,
``gpu``, ``scheduler``), each a ``generate(builder)`` function registered in
``registry``; ``case`` holds the values they produce and ``common`` what they
share. This module is the public face: import from ``alerts.rules``.
"""

from __future__ import annotations

from alerts.rules.case import Builder, Case, Expected, Recording, eval_seconds, render
from alerts.rules.common import (
    CRITICAL,
    DASHBOARD_UIDS,
    INFO,
    PLATFORM_TEAM,
    WARNING,
    fast_window,
    is_top_priority,
    p0_models,
    quantile_name,
    stale_seconds,
    sustain_seconds,
    team_of,
)
from alerts.rules.registry import FAMILIES, FILES, TRITON_FILE, Family, build, rule_files
from alerts.rules.slo import latency_alert_name, p99_expr

__all__ = [
    "CRITICAL",
    "DASHBOARD_UIDS",
    "FAMILIES",
    "FILES",
    "INFO",
    "PLATFORM_TEAM",
    "TRITON_FILE",
    "WARNING",
    "Builder",
    "Case",
    "Expected",
    "Family",
    "Recording",
    "build",
    "eval_seconds",
    "fast_window",
    "is_top_priority",
    "latency_alert_name",
    "p0_models",
    "p99_expr",
    "quantile_name",
    "render",
    "rule_files",
    "stale_seconds",
    "sustain_seconds",
    "team_of",
]
