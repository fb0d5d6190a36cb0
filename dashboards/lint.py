"""A lint for generated dashboards, enforcing what grafana/dashboard-linter checks.

Rules (named as the linter names them):

* ``template-datasource-rule``: a ``datasource`` variable of type datasource for Prometheus;
* ``panel-datasource-rule`` / ``target-datasource``: every panel and query uses ``${datasource}``;
* ``template-on-datasource``: every query variable runs on ``${datasource}``;
* ``panel-units-rule``: every panel sets a unit;
* ``target-counter-agg-rule``: counters and histogram samples only inside rate/irate/increase;
* ``target-rate-interval-rule``: range vectors of rate/irate/increase use ``$__rate_interval``;
* ``panel-id-unique`` and ``panel-gridpos-overlap``;
* ``panel-type-current``: only timeseries, stat, gauge, bargauge, table and heatmap.

``lint(dashboard)`` returns the problems, each prefixed by the rule's name; empty means clean.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from exporters.catalog import ALL, MetricKind

CURRENT_PANEL_TYPES = frozenset({"timeseries", "stat", "gauge", "bargauge", "table", "heatmap"})
DATASOURCE_UID = "${datasource}"
RATE_FUNCTIONS = ("rate", "irate", "increase")


def _counter_samples() -> list[str]:
    out = []
    for m in ALL:
        if m.kind is MetricKind.COUNTER:
            out.append(m.series)
        elif m.kind is MetricKind.HISTOGRAM:
            out += [m.bucket, m.count, m.sum]
    return sorted(out, key=len, reverse=True)


_COUNTER = re.compile(r"\b(" + "|".join(re.escape(n) for n in _counter_samples()) + r")\b")
_RANGE_FN = re.compile(r"\b(" + "|".join(RATE_FUNCTIONS) + r")\s*\(")


def _enclosing_function(expr: str, pos: int) -> str | None:
    """The name of the innermost function call whose parentheses enclose ``pos``."""
    depth = 0
    for i in range(pos - 1, -1, -1):
        c = expr[i]
        if c == ")":
            depth += 1
        elif c == "(":
            if depth == 0:
                m = re.search(r"([a-zA-Z_]\w*)\s*$", expr[:i])
                return m.group(1) if m else None
            depth -= 1
    return None


def _range_args(expr: str) -> Iterable[tuple[str, str]]:
    """(function, range) for each rate/irate/increase call."""
    for m in _RANGE_FN.finditer(expr):
        depth, start = 0, m.end() - 1
        for i in range(start, len(expr)):
            if expr[i] == "(":
                depth += 1
            elif expr[i] == ")":
                depth -= 1
                if depth == 0:
                    inner = expr[start + 1 : i]
                    rng = re.search(r"\[([^\]]+)\]\s*$", inner)
                    yield m.group(1), rng.group(1) if rng else ""
                    break


def lint_expr(expr: str) -> list[str]:
    problems = []
    for m in _COUNTER.finditer(expr):
        if _enclosing_function(expr, m.start()) not in RATE_FUNCTIONS:
            problems.append(
                f"target-counter-agg-rule: {m.group(1)} outside rate/increase in {expr!r}"
            )
    for fn, rng in _range_args(expr):
        if rng != "$__rate_interval":
            problems.append(f"target-rate-interval-rule: {fn}() over [{rng}] in {expr!r}")
    return problems


def overlaps(a: dict[str, int], b: dict[str, int]) -> bool:
    return (
        a["x"] < b["x"] + b["w"]
        and b["x"] < a["x"] + a["w"]
        and a["y"] < b["y"] + b["h"]
        and b["y"] < a["y"] + a["h"]
    )


def lint(dashboard: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    variables = dashboard.get("templating", {}).get("list", [])
    ds = [v for v in variables if v.get("type") == "datasource"]
    if not (
        len(ds) == 1 and ds[0].get("name") == "datasource" and ds[0].get("query") == "prometheus"
    ):
        problems.append("template-datasource-rule: need one 'datasource' variable over prometheus")
    for v in variables:
        if v.get("type") == "query" and (v.get("datasource") or {}).get("uid") != DATASOURCE_UID:
            problems.append(
                f"template-on-datasource: variable {v.get('name')} not on {DATASOURCE_UID}"
            )
    for a in dashboard.get("annotations", {}).get("list", []):
        if (a.get("datasource") or {}).get("uid") != DATASOURCE_UID:
            problems.append(f"annotation-datasource: {a.get('name')} not on {DATASOURCE_UID}")
        problems += [f"{p} [annotation {a.get('name')}]" for p in lint_expr(a.get("expr", ""))]

    panels = dashboard.get("panels", [])
    ids: dict[int, str] = {}
    for p in panels:
        title = p.get("title", "?")
        if p.get("type") not in CURRENT_PANEL_TYPES:
            problems.append(f"panel-type-current: {title} is a {p.get('type')} panel")
        if p.get("id") in ids:
            problems.append(f"panel-id-unique: {title} and {ids[p['id']]} share id {p['id']}")
        ids[p.get("id", -1)] = title
        if (p.get("datasource") or {}).get("uid") != DATASOURCE_UID:
            problems.append(f"panel-datasource-rule: {title} not on {DATASOURCE_UID}")
        if not p.get("fieldConfig", {}).get("defaults", {}).get("unit"):
            problems.append(f"panel-units-rule: {title} has no unit")
        for t in p.get("targets", []):
            if (t.get("datasource") or {}).get("uid") != DATASOURCE_UID:
                problems.append(
                    f"target-datasource: {title}/{t.get('refId')} not on {DATASOURCE_UID}"
                )
            problems += [f"{x} [panel {title}]" for x in lint_expr(t.get("expr", ""))]
    for i, a in enumerate(panels):
        for b in panels[i + 1 :]:
            if overlaps(a["gridPos"], b["gridPos"]):
                problems.append(f"panel-gridpos-overlap: {a.get('title')} and {b.get('title')}")
    return problems
