"""Dashboards: valid against Grafana's official schema, lint-clean, and in step with the rules."""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import grafanalib.core as G
import jsonschema
import pytest

from alerts import rules as alert_rules
from dashboards.build import BUILDERS, build_all
from dashboards.lint import lint, lint_expr
from dashboards.normalise import normalise, to_json
from dashboards.panels import DATASOURCE, datasource_variable, layout, timeseries
from dashboards.queries import raw_queries
from deploy.stack import Stack
from exporters.catalog.gpu import GPU_ECC_ERRORS, GPU_UTILIZATION

# Grafana's official schemas, vendored with their licence and source (SOURCE.md there).
SCHEMAS = Path(__file__).resolve().parent / "grafana-schema"
PANEL_TYPES = ("timeseries", "stat", "gauge", "bargauge", "table", "heatmap")


def _schema(name: str, ref: str | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((SCHEMAS / f"{name}.jsonschema.json").read_text())
    return {**doc, "$ref": f"#/definitions/{ref}"} if ref else doc


def _errors(schema: dict[str, Any], instance: Any) -> list[str]:
    v = jsonschema.Draft7Validator(schema)
    return [f"{list(e.absolute_path)}: {e.message[:200]}" for e in v.iter_errors(instance)]


def _panel_errors(panel: dict[str, Any]) -> list[str]:
    kind = panel["type"]
    defs = _schema(kind)["definitions"]
    errs = [f"options {e}" for e in _errors(_schema(kind, "Options"), panel["options"])]
    if "FieldConfig" in defs:
        custom = panel["fieldConfig"]["defaults"].get("custom", {})
        errs += [f"custom {e}" for e in _errors(_schema(kind, "FieldConfig"), custom)]
    for t in panel["targets"]:
        errs += [f"target {e}" for e in _errors(_schema("prometheus"), t)]
    return errs


@pytest.fixture(scope="module")
def dashboards(stack: Stack) -> dict[str, dict[str, Any]]:
    return build_all(stack)


def test_every_dashboard_validates_against_grafanas_schema(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    schema = _schema("dashboard")
    for name, dash in dashboards.items():
        assert _errors(schema, dash) == [], name


def test_every_panel_validates_against_its_panel_schema(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    seen = set()
    for name, dash in dashboards.items():
        for panel in dash["panels"]:
            seen.add(panel["type"])
            assert _panel_errors(panel) == [], f"{name}: {panel['title']}"
    assert seen == set(PANEL_TYPES)  # every current panel type is exercised


def test_the_schema_rejects_grafanalibs_raw_output(stack: Stack) -> None:
    """The check is real: grafanalib's legacy keys fail it, so normalising is what makes it pass."""
    raw = to_json(
        G.Dashboard(
            title="raw",
            panels=layout([timeseries("x", [(GPU_UTILIZATION.series, "")], "percentunit")]),
            templating=G.Templating([datasource_variable()]),
        ).to_json_data()
    )
    errors = _errors(_schema("dashboard"), raw)
    assert any("rows" in e or "hideControls" in e or "style" in e for e in errors), errors
    assert _errors(_schema("dashboard"), normalise(raw, DATASOURCE)) == []


def test_dashboards_are_lint_clean(dashboards: dict[str, dict[str, Any]]) -> None:
    for name, dash in dashboards.items():
        assert lint(dash) == [], name


@pytest.mark.parametrize(
    ("mutate", "rule"),
    [
        (lambda d: d["panels"][1].update(id=d["panels"][0]["id"]), "panel-id-unique"),
        (
            lambda d: d["panels"][1].update(gridPos=dict(d["panels"][0]["gridPos"])),
            "panel-gridpos-overlap",
        ),
        (lambda d: d["panels"][0]["fieldConfig"]["defaults"].pop("unit"), "panel-units-rule"),
        (
            lambda d: d["panels"][0].update(datasource={"type": "prometheus", "uid": "prom"}),
            "panel-datasource-rule",
        ),
        (lambda d: d["panels"][0].update(type="graph"), "panel-type-current"),
        (lambda d: d["templating"]["list"].pop(0), "template-datasource-rule"),
        (
            lambda d: d["panels"][0]["targets"][0].update(expr=GPU_ECC_ERRORS.series),
            "target-counter-agg-rule",
        ),
        (
            lambda d: d["panels"][0]["targets"][0].update(
                expr=f"rate({GPU_ECC_ERRORS.series}[5m])"
            ),
            "target-rate-interval-rule",
        ),
    ],
)
def test_lint_catches(dashboards: dict[str, dict[str, Any]], mutate: Any, rule: str) -> None:
    dash = copy.deepcopy(dashboards["gpu-fleet.json"])
    mutate(dash)
    assert any(p.startswith(rule) for p in lint(dash)), lint(dash)


def test_counter_inside_rate_is_fine_even_when_nested() -> None:
    expr = f'sum by (pool) (rate({GPU_ECC_ERRORS.series}{{node=~"$node"}}[$__rate_interval]) * 1)'
    assert lint_expr(expr) == []
    assert lint_expr(f"sum({GPU_ECC_ERRORS.series})")


def _recorded_names_read(expr: str) -> set[str]:
    """Series names in ``expr`` that follow the ``level:metric:operations`` convention of
    recording rules (string literals and range selectors, where colons also occur, removed)."""
    bare = re.sub(r""""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`""", '""', expr)
    bare = re.sub(r"\[[^\]]*\]", "", bare)
    return {n for n in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", bare) if ":" in n}


def test_recorded_names_match_the_rules(stack: Stack) -> None:
    # Every recorded series a dashboard reads is recorded by some rule.
    records = {
        r["record"]
        for doc in alert_rules.rule_files(stack).values()
        for g in doc["groups"]
        for r in g["rules"]
        if "record" in r
    }
    used = {
        (q.where, name)
        for dash in build_all(stack).values()
        for q in raw_queries(dash)
        for name in _recorded_names_read(q.expr)
    }
    assert used  # the dashboards do read recorded series
    assert [u for u in sorted(used) if u[1] not in records] == []


def test_recorded_names_are_found_in_every_form_a_query_takes() -> None:
    expr = (
        "max_over_time(model:a_b:ratio_rate1h{model=~'$model',x=\"a:b\",y=`c:d`}[$__rate_interval:1m])"
        " / on(model) group_left model:c:budget"
    )
    assert _recorded_names_read(expr) == {"model:a_b:ratio_rate1h", "model:c:budget"}


def test_alert_dashboard_links_point_at_generated_dashboards(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    uids = {d["uid"] for d in dashboards.values()}
    assert set(alert_rules.DASHBOARD_UIDS.values()) == uids
    assert len(uids) == len(BUILDERS)


def test_variables_datasource_and_annotations(
    stack: Stack, dashboards: dict[str, dict[str, Any]]
) -> None:
    names = {n: {v["name"] for v in d["templating"]["list"]} for n, d in dashboards.items()}
    assert {"datasource", "pool", "node"} <= names["gpu-fleet.json"]
    assert {"datasource", "pool", "model"} <= names["model-slo.json"]
    assert {"datasource", "pool"} <= names["scheduler.json"]
    for d in dashboards.values():
        assert d["templating"]["list"][0]["current"]["value"] == stack.grafana.datasource_uid
        assert {a["name"] for a in d["annotations"]["list"]} == {"Preemptions", "Scale events"}


def test_build_is_deterministic(stack: Stack) -> None:
    assert json.dumps(build_all(stack), sort_keys=True) == json.dumps(
        build_all(stack), sort_keys=True
    )


def test_llm_panels_only_where_a_model_has_them(stack: Stack) -> None:
    def titles(s: Stack) -> set[str]:
        return {p["title"] for p in build_all(s)["model-slo.json"]["panels"]}

    llm = dataclasses.replace(stack, models=(dataclasses.replace(stack.models[0], llm=True),))
    extra = titles(llm) - titles(stack)
    assert any("first token" in t for t in extra) and any("Tokens" in t for t in extra)
    assert not any("token" in t.lower() for t in titles(stack))
    dash = build_all(llm)["model-slo.json"]
    assert _errors(_schema("dashboard"), dash) == []
    assert all(_panel_errors(p) == [] for p in dash["panels"])
    assert lint(dash) == []
