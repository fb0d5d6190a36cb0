"""Every PromQL expression a dashboard runs, with Grafana's variables substituted.

Used by the checks that run the expressions against a real Prometheus: a
query that does not parse, or names a series nothing exports, must fail a
test rather than show "No data" on a wall screen.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# Grafana's built-in range variables, and "All" for the multi-value variables.
BUILTINS = ("__rate_interval", "__interval", "__range")
_VAR = re.compile(r"\$(\{(\w+)\}|(\w+))")
_LABEL_VALUES = re.compile(r"^label_values\((.+),\s*(\w+)\)$")


@dataclass(frozen=True)
class Query:
    where: str  # "<dashboard uid> / <panel title> / <refId>" or annotation / variable
    expr: str


def substitute(expr: str, values: Mapping[str, str]) -> str:
    """Replace ``$name`` and ``${name}``; unknown variables are left as they are (and fail to parse)."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(2) or m.group(3)
        return values.get(name, m.group(0))

    return _VAR.sub(repl, expr)


def raw_queries(dashboard: dict[str, Any]) -> list[Query]:
    """Panel targets, annotation queries and the series behind ``label_values`` variables."""
    uid = dashboard.get("uid", "?")
    out = []
    for p in dashboard.get("panels", []):
        for t in p.get("targets", []):
            out.append(Query(f"{uid} / {p.get('title')} / {t.get('refId')}", t["expr"]))
    for a in dashboard.get("annotations", {}).get("list", []):
        if a.get("expr"):
            out.append(Query(f"{uid} / annotation {a.get('name')}", a["expr"]))
    for v in dashboard.get("templating", {}).get("list", []):
        m = _LABEL_VALUES.match(v.get("query", "")) if v.get("type") == "query" else None
        if m:
            out.append(Query(f"{uid} / variable {v.get('name')}", m.group(1)))
    return out


def queries(dashboard: dict[str, Any], values: Mapping[str, str]) -> list[Query]:
    """``raw_queries`` with ``values`` substituted (e.g. ``{"pool": ".*", "__rate_interval": "1m"}``)."""
    return [Query(q.where, substitute(q.expr, values)) for q in raw_queries(dashboard)]
