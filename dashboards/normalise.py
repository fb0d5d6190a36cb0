"""Turn grafanalib 0.7's output into the dashboard model today's Grafana schema accepts.

grafanalib still writes fields of the pre-7 dashboard model: ``rows``,
``hideControls``, ``sharedCrosshair``, ``style``, per-panel ``span``/``height``/
``editable``/``error``, threshold steps with ``op``/``yaxis``/``line``, targets
with ``step``/``target``/``metric``, bar gauges' ``fieldOptions``, gauges'
``calcs`` inside ``fieldConfig.defaults``, heatmaps' ``cards``/``xAxis``/
``yBucketBound``..., template variables with ``useTags``, and ``null`` for
anything unset. The official JSON schema (additionalProperties false
everywhere) rejects all of these, and Grafana migrates them on load, so what
is stored differs from what we wrote.

Normalising is explicit: each legacy key is named below and either mapped to
its current home or dropped. Nothing is pruned by looking at the schema, so the
schema validation in the tests stays a real check.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from grafanalib._gen import DashboardEncoder

# Grafana 11's dashboard schema version; Grafana migrates older versions on load.
SCHEMA_VERSION = 39

_DASHBOARD_LEGACY = ("__inputs", "hideControls", "rows", "sharedCrosshair", "style", "gnetId")
_PANEL_LEGACY = (
    "editable",
    "error",
    "height",
    "minSpan",
    "span",
    "cacheTimeout",
    "hideTimeOverride",
    # table (old model)
    "columns",
    "fontSize",
    "mappings",
    "color",
    # heatmap (old model)
    "cards",
    "dataFormat",
    "heatmap",
    "hideZeroBuckets",
    "highlightCards",
    "legend",
    "reverseYBuckets",
    "tooltip",
    "xAxis",
    "xBucketNumber",
    "xBucketSize",
    "yAxis",
    "yBucketBound",
    "yBucketNumber",
    "yBucketSize",
)
_TARGET_LEGACY = ("query", "target", "metric", "step", "intervalFactor")
_VARIABLE_LEGACY = ("useTags", "tagsQuery", "tagValuesQuery")
_DEFAULTS_LEGACY = ("calcs", "title", "limit", "override", "values")

# Current defaults for the options each panel schema requires and grafanalib does not write.
_REDUCE = {"calcs": ["lastNotNull"], "fields": "", "values": False}
_LEGEND = {"displayMode": "list", "placement": "bottom", "showLegend": True, "calcs": []}
_TOOLTIP = {"mode": "multi", "sort": "desc"}
OPTION_DEFAULTS: dict[str, dict[str, Any]] = {
    "timeseries": {"legend": _LEGEND, "tooltip": _TOOLTIP},
    "stat": {
        "graphMode": "area",
        "colorMode": "value",
        "justifyMode": "auto",
        "textMode": "auto",
        "wideLayout": True,
        "showPercentChange": False,
        "reduceOptions": _REDUCE,
        "percentChangeColorMode": "standard",
        "orientation": "auto",
    },
    "gauge": {
        "showThresholdLabels": False,
        "showThresholdMarkers": True,
        "sizing": "auto",
        "minVizWidth": 75,
        "minVizHeight": 75,
        "reduceOptions": _REDUCE,
        "orientation": "auto",
    },
    "bargauge": {
        "displayMode": "gradient",
        "valueMode": "color",
        "namePlacement": "auto",
        "showUnfilled": True,
        "sizing": "auto",
        "minVizWidth": 8,
        "minVizHeight": 16,
        "maxVizHeight": 300,
        "legend": {**_LEGEND, "showLegend": False},
        "reduceOptions": _REDUCE,
        "orientation": "horizontal",
    },
    "table": {"frameIndex": 0, "showHeader": True},
    "heatmap": {
        "calculate": False,
        "color": {
            "mode": "scheme",
            "scheme": "Oranges",
            "fill": "dark-orange",
            "scale": "exponential",
            "exponent": 0.5,
            "steps": 64,
            "reverse": False,
        },
        "showValue": "never",
        "yAxis": {"axisPlacement": "left", "reverse": False},
        "legend": {"show": True},
        "tooltip": {"mode": "single", "yHistogram": False, "showColorScale": False},
        "exemplars": {"color": "rgba(255,0,255,0.7)"},
        "cellGap": 1,
        "rowsFrame": {"layout": "auto"},
    },
}
# Field options each panel schema requires in ``fieldConfig.defaults.custom``.
CUSTOM_DEFAULTS: dict[str, dict[str, Any]] = {
    "table": {"align": "auto", "inspect": False},
}
# Options grafanalib writes that the current panel models do not have.
_OPTIONS_LEGACY = ("fieldOptions", "showThresholdLabels", "showThresholdMarkers")
_OPTIONS_KEEP_FOR = {"gauge": ("showThresholdLabels", "showThresholdMarkers")}


def to_json(obj: Any) -> Any:
    """grafanalib objects -> plain JSON values, through grafanalib's own encoder."""
    return json.loads(json.dumps(obj, cls=DashboardEncoder))


def _merge(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """``given`` over ``defaults``, recursively: grafanalib writes part of a nested option
    (a legend without ``showLegend``) and the current default supplies the rest."""
    out = dict(defaults)
    for k, v in given.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _drop_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value if v is not None]
    return value


def _thresholds(raw: Any) -> dict[str, Any]:
    """Legacy steps (``op``, ``yaxis``, ``line``, ``index``, ``"null"``) -> ``{value, color}``
    with the base step's value ``null`` (-Infinity), as the schema describes it."""
    mode = "absolute"
    steps: list[Any] = []
    if isinstance(raw, dict):
        mode = raw.get("mode") or mode
        steps = raw.get("steps") or []
    elif isinstance(raw, list):
        steps = raw
    out = []
    for i, step in enumerate(steps):
        value = step.get("value")
        out.append(
            {
                "color": step.get("color", "green"),
                "value": None if i == 0 or value in (None, "null") else float(value),
            }
        )
    if not out:
        out = [{"color": "green", "value": None}]
    return {"mode": mode, "steps": out}


def _panel(raw: dict[str, Any], datasource: dict[str, str]) -> dict[str, Any]:
    panel = copy.deepcopy(raw)
    kind = panel["type"]
    legacy_defaults = panel.get("fieldConfig", {}).get("defaults", {})
    options: dict[str, Any] = panel["options"] if isinstance(panel.get("options"), dict) else {}
    # Bar gauges keep their field options under options.fieldOptions; gauges keep
    # reducer settings in fieldConfig.defaults.
    field_options: dict[str, Any] = options.get("fieldOptions") or {}
    reduce_calcs = field_options.get("calcs") or legacy_defaults.get("calcs")
    defaults = {**field_options.get("defaults", {}), **legacy_defaults}
    thresholds = legacy_defaults.get("thresholds") or field_options.get("thresholds")
    for key in (*_PANEL_LEGACY, "fieldConfig", "options"):
        panel.pop(key, None)
    panel = _drop_none(panel)

    for key in _DEFAULTS_LEGACY:
        defaults.pop(key, None)
    defaults = _drop_none(defaults)
    if not defaults.get("color"):
        defaults.pop("color", None)
    defaults["thresholds"] = _thresholds(thresholds)
    if kind in CUSTOM_DEFAULTS:
        custom = {k: v for k, v in defaults.get("custom", {}).items() if k != "displayMode"}
        defaults["custom"] = _merge(CUSTOM_DEFAULTS[kind], custom)
    panel["fieldConfig"] = {"defaults": defaults, "overrides": []}

    kept = {
        k: v
        for k, v in options.items()
        if k not in _OPTIONS_LEGACY or k in _OPTIONS_KEEP_FOR.get(kind, ())
    }
    merged = _merge(OPTION_DEFAULTS.get(kind, {}), _drop_none(kept))
    if reduce_calcs and "reduceOptions" in merged:
        merged["reduceOptions"] = {**merged["reduceOptions"], "calcs": list(reduce_calcs)}
    panel["options"] = merged

    panel["datasource"] = dict(datasource)
    targets = []
    for t in panel.get("targets", []):
        t = {k: v for k, v in t.items() if k not in _TARGET_LEGACY}
        t["datasource"] = dict(datasource)
        targets.append(t)
    panel["targets"] = targets
    if not panel.get("transformations"):
        panel.pop("transformations", None)
    if not panel.get("links"):
        panel.pop("links", None)
    return panel


def _variable(raw: dict[str, Any]) -> dict[str, Any]:
    var = {k: v for k, v in raw.items() if k not in _VARIABLE_LEGACY}
    current = var.get("current")
    if isinstance(current, dict):
        current = {k: v for k, v in current.items() if k != "tags"}
        if current.get("text") is None or current.get("value") is None:
            current = None
    var["current"] = current
    if isinstance(var.get("datasource"), str):
        var["datasource"] = {"type": "prometheus", "uid": var["datasource"]}
    return _drop_none(var)


def normalise(raw: dict[str, Any], datasource: dict[str, str]) -> dict[str, Any]:
    """A grafanalib dashboard (as JSON) in the current schema, every panel on ``datasource``."""
    dash = {k: v for k, v in copy.deepcopy(raw).items() if k not in _DASHBOARD_LEGACY}
    panels = [_panel(p, datasource) for p in dash.pop("panels", [])]
    templating = [_variable(v) for v in dash.pop("templating", {}).get("list", [])]
    annotations = dash.pop("annotations", {}).get("list", [])
    timepicker = {
        k: v
        for k, v in dash.pop("timepicker", {}).items()
        if k != "time_options" and v is not None  # time_options became quick_ranges
    }
    dash = _drop_none(dash)
    dash.update(
        panels=panels,
        templating={"list": templating},
        annotations={"list": annotations},
        timepicker=timepicker,
        schemaVersion=SCHEMA_VERSION,
    )
    if not dash.get("description"):
        dash.pop("description", None)
    return dash
