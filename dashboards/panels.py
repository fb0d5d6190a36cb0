"""Panel and variable constructors over grafanalib, and the grid layout.

Every panel gets a unit and its queries run on the ``$datasource`` variable;
``Layout`` places panels left to right in rows of 24 columns so ids and
positions are deterministic and never overlap.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grafanalib.core as G

DATASOURCE_VAR = "datasource"
DATASOURCE = {"type": "prometheus", "uid": "${" + DATASOURCE_VAR + "}"}
GRID_WIDTH = 24

Query = tuple[str, str]  # (PromQL, legend format)


@dataclass(frozen=True)
class Spec:
    """One panel before layout: its grafanalib object and size."""

    panel: Any
    w: int
    h: int


def _targets(
    queries: Sequence[Query], *, instant: bool = False, fmt: str = "time_series"
) -> list[G.Target]:
    return [
        G.Target(
            expr=expr,
            legendFormat=legend,
            refId=chr(ord("A") + i),
            instant=instant,
            format=fmt,
            datasource=DATASOURCE,
        )
        for i, (expr, legend) in enumerate(queries)
    ]


def timeseries(
    title: str,
    queries: Sequence[Query],
    unit: str,
    *,
    w: int = 12,
    h: int = 8,
    description: str = "",
    stack: bool = False,
) -> Spec:
    panel = G.TimeSeries(
        title=title,
        description=description or None,
        targets=_targets(queries),
        unit=unit,
        dataSource=DATASOURCE,
        stacking={"mode": "normal", "group": "A"} if stack else {},
        fillOpacity=20 if stack else 0,
    )
    return Spec(panel, w, h)


def stat(
    title: str,
    queries: Sequence[Query],
    unit: str,
    *,
    w: int = 6,
    h: int = 4,
    description: str = "",
    colors: Sequence[tuple[str, float]] = (),
) -> Spec:
    """``colors``: (color, from value) steps, lowest first; the first covers everything below."""
    panel = G.Stat(
        title=title,
        description=description or None,
        targets=_targets(queries, instant=True),
        format=unit,
        dataSource=DATASOURCE,
        reduceCalc="lastNotNull",
        **(
            {"thresholds": [G.Threshold(c, i, v) for i, (c, v) in enumerate(colors)]}
            if colors
            else {}
        ),
    )
    return Spec(panel, w, h)


def gauge(
    title: str,
    queries: Sequence[Query],
    unit: str,
    *,
    lo: float,
    hi: float,
    w: int = 6,
    h: int = 6,
    description: str = "",
) -> Spec:
    panel = G.GaugePanel(
        title=title,
        description=description or None,
        targets=_targets(queries, instant=True),
        format=unit,
        min=lo,
        max=hi,
        calc="lastNotNull",
        dataSource=DATASOURCE,
        thresholds=[
            G.Threshold("red", 0, 0.0),
            G.Threshold("orange", 1, 0.25),
            G.Threshold("green", 2, 0.5),
        ],
    )
    return Spec(panel, w, h)


def bargauge(
    title: str,
    queries: Sequence[Query],
    unit: str,
    *,
    w: int = 12,
    h: int = 8,
    description: str = "",
) -> Spec:
    panel = G.BarGauge(
        title=title,
        description=description or None,
        targets=_targets(queries, instant=True),
        format=unit,
        calc="lastNotNull",
        dataSource=DATASOURCE,
        min=0,
        max=None,
        thresholds=[G.Threshold("green", 0, 0.0)],
    )
    return Spec(panel, w, h)


def table(
    title: str,
    queries: Sequence[Query],
    unit: str,
    *,
    w: int = 12,
    h: int = 8,
    description: str = "",
) -> Spec:
    panel = G.Table(
        title=title,
        description=description or None,
        targets=_targets(queries, instant=True, fmt="table"),
        unit=unit,
        dataSource=DATASOURCE,
        transformations=[{"id": "organize", "options": {"excludeByName": {"Time": True}}}],
    )
    return Spec(panel, w, h)


def heatmap(
    title: str,
    queries: Sequence[Query],
    unit: str,
    *,
    w: int = 12,
    h: int = 8,
    description: str = "",
) -> Spec:
    panel = G.Heatmap(
        title=title,
        description=description or None,
        targets=_targets(queries, fmt="heatmap"),
        dataSource=DATASOURCE,
    )
    # grafanalib has no unit on heatmaps: set it where Grafana reads it.
    return Spec(_WithUnit(panel, unit), w, h)


class _WithUnit:
    """A grafanalib panel whose JSON gets ``fieldConfig.defaults.unit`` added."""

    def __init__(self, panel: Any, unit: str) -> None:
        self.panel = panel
        self.unit = unit

    def to_json_data(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.panel.to_json_data())
        fc = dict(data.get("fieldConfig") or {})
        fc["defaults"] = {**(fc.get("defaults") or {}), "unit": self.unit}
        data["fieldConfig"] = fc
        return data


def layout(specs: Sequence[Spec]) -> list[Any]:
    """Ids 1..n and positions left to right, wrapping at 24 columns (rows as tall as their tallest)."""
    out = []
    x = y = row_h = 0
    for i, spec in enumerate(specs, 1):
        if x + spec.w > GRID_WIDTH:
            x, y, row_h = 0, y + row_h, 0
        panel = spec.panel.panel if isinstance(spec.panel, _WithUnit) else spec.panel
        panel.id = i
        panel.gridPos = G.GridPos(h=spec.h, w=spec.w, x=x, y=y)
        out.append(spec.panel)
        x += spec.w
        row_h = max(row_h, spec.h)
    return out


def datasource_variable() -> G.Template:
    return G.Template(
        name=DATASOURCE_VAR,
        label="Data source",
        query="prometheus",
        type="datasource",
        default=None,
    )


def query_variable(name: str, label: str, query: str) -> G.Template:
    """A multi-value variable over ``label_values``; "All" selects every value by regex."""
    return G.Template(
        name=name,
        label=label,
        query=query,
        dataSource="${" + DATASOURCE_VAR + "}",
        multi=True,
        includeAll=True,
        allValue=".*",
        refresh=2,  # on time range change: pools and models come and go
        sort=1,
    )


def annotation(name: str, expr: str, title: str, color: str) -> dict[str, Any]:
    """A Prometheus annotation query (current model: datasource ref, expr, titleFormat)."""
    return {
        "name": name,
        "datasource": dict(DATASOURCE),
        "enable": True,
        "iconColor": color,
        "expr": expr,
        "titleFormat": title,
    }
