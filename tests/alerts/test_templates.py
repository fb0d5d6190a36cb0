"""Every notification template, rendered by ``amtool template render`` (Alertmanager 0.25's own
renderer, both text and HTML) for every alert, firing and resolved, compared with the
committed output in ``golden/<alert>.txt``.

The alert data is what Alertmanager hands the templates for the alert promtool sees firing
(``alerts.rules`` cases: full labels, rendered annotations), with fixed times. After a
deliberate change, regenerate the golden files and review the diff:

    NOVABRAIN_UPDATE_GOLDEN=1 .venv/bin/pytest tests/alerts/test_templates.py
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from alerts.generate import templates
from alerts.rules import Case, build
from deploy.stack import LANGUAGES, Stack

pytestmark = pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed")
GOLDEN = Path(__file__).parent / "golden"
UPDATE = bool(os.environ.get("NOVABRAIN_UPDATE_GOLDEN"))
STARTS, ENDS = "2025-07-14T01:31:00Z", "2025-07-14T01:52:30Z"  # 09:31 in Shanghai
GROUP_BY = ("alertname", "pool", "model")
MARK = "\n@@@@\n"


def first_cases(stack: Stack) -> dict[str, Case]:
    out: dict[str, Case] = {}
    for case in build(stack)[0]:
        out.setdefault(case.alertname, case)
    return out


def notification(stack: Stack, case: Case, status: str) -> dict[str, Any]:
    """Alertmanager's template data for one notification of the case's first alert."""
    e = case.expected[0]
    labels = {**e.labels, "stack": stack.name}  # Prometheus adds its external labels
    expr = case.rules[0]["expr"]
    alert = {
        "status": status,
        "labels": labels,
        "annotations": dict(e.annotations),
        "startsAt": STARTS,
        "endsAt": ENDS if status == "resolved" else "0001-01-01T00:00:00Z",
        "generatorURL": f"{stack.alerting.prometheus_url}/graph?g0.expr={quote(expr)}&g0.tab=1",
        "fingerprint": "0123456789abcdef",
    }
    return {
        "receiver": "oncall",
        "status": status,
        "alerts": [alert],
        "groupLabels": {k: labels[k] for k in GROUP_BY if k in labels},
        "commonLabels": labels,
        "commonAnnotations": dict(e.annotations),
        "externalURL": stack.alerting.alertmanager_url,
    }


def render(tmp: Path, data: dict[str, Any], names: list[str], kind: str) -> list[str]:
    path = tmp / "data.json"
    path.write_text(json.dumps(data, ensure_ascii=False))
    text = MARK.join('{{ template "' + n + '" . }}' for n in names)
    res = subprocess.run(
        [
            "amtool",
            "template",
            "render",
            f"--template.glob={tmp / 'templates' / '*.tmpl'}",
            f"--template.text={text}",
            f"--template.data={path}",
            f"--template.type={kind}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    return res.stdout.split(MARK)


def rendered(stack: Stack, case: Case, tmp: Path) -> str:
    """Every template for the case, firing and resolved, as one reviewable text."""
    out = []
    for status in ("firing", "resolved"):
        data = notification(stack, case, status)
        out.append(f"######## {status}: data\n{json.dumps(data, ensure_ascii=False, indent=1)}\n")
        text_names = [
            f"novabrain.{k}.{lang}" for lang in LANGUAGES for k in ("email.subject", "wechat")
        ]
        html_names = [f"novabrain.email.html.{lang}" for lang in LANGUAGES]
        pieces = zip(text_names, render(tmp, data, text_names, "text"), strict=True)
        pieces_html = zip(html_names, render(tmp, data, html_names, "html"), strict=True)
        for name, body in (*pieces, *pieces_html):
            out.append(f"######## {status}: {name}\n{body}\n")
    return "".join(out)


@pytest.fixture(scope="module")
def template_dir(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("templates")
    for rel, text in templates(stack).items():
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
    return tmp


def _alerts(stack_path: Path) -> list[str]:
    from deploy.stack import load_stack

    return sorted(first_cases(load_stack(stack_path)))


ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("alertname", _alerts(ROOT / "deploy/stack.yaml"))
def test_every_template_renders_as_committed(
    alertname: str, stack: Stack, template_dir: Path
) -> None:
    got = rendered(stack, first_cases(stack)[alertname], template_dir)
    golden = GOLDEN / f"{alertname}.txt"
    if UPDATE:
        golden.write_text(got, encoding="utf-8")
    assert golden.exists(), (
        f"no golden file: run with NOVABRAIN_UPDATE_GOLDEN=1 and review {golden}"
    )
    assert got == golden.read_text(encoding="utf-8")


def test_no_golden_file_for_an_alert_that_is_gone(stack: Stack) -> None:
    assert {p.stem for p in GOLDEN.glob("*.txt")} == set(first_cases(stack))
