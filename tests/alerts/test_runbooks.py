"""Runbooks: one per alert, committed and current, and every alert's runbook_url opens one."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from alerts import guides
from alerts.errors import AlertsError
from alerts.rules import build, rule_files
from alerts.runbooks import INDEX, runbooks
from deploy.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = ROOT / "docs/runbooks"
SECTIONS = (
    "## What fired, and what it means for the bank",
    "## How to confirm it",
    "## What the scheduler did by itself, and how to see it",
    "## If that did not help",
    "## Escalation",
    "## Silencing",
)


def _alerts(stack: Stack) -> list[dict[str, object]]:
    return [
        r
        for doc in rule_files(stack).values()
        for g in doc["groups"]
        for r in g["rules"]
        if "alert" in r
    ]


def test_every_runbook_url_opens_a_committed_runbook(stack: Stack) -> None:
    base = stack.alerting.runbook_base_url.rstrip("/")
    for rule in _alerts(stack):
        url = rule["annotations"]["runbook_url"]  # type: ignore[index]
        assert url.startswith(base + "/"), url
        path = RUNBOOKS / url.removeprefix(base + "/")
        assert path.is_file(), f"{rule['alert']}: {url} names no runbook"
        assert path.read_text().splitlines()[1] == f"# {rule['alert']}"


def test_committed_runbooks_are_current(stack: Stack) -> None:
    files = runbooks(stack)
    assert {p.name for p in RUNBOOKS.glob("*.md")} == set(files)
    for name, text in files.items():
        assert (RUNBOOKS / name).read_text(encoding="utf-8") == text, (
            f"docs/runbooks/{name} is stale: run make generate"
        )


def test_every_runbook_has_every_section_and_real_queries(any_stack: Stack) -> None:
    files = runbooks(any_stack)
    cases = build(any_stack)[0]
    exprs = {r["expr"] for c in cases for r in c.rules} | {c.signal for c in cases}
    for case in cases:
        text = files[f"{case.alertname}.md"]
        positions = [text.index(s) for s in SECTIONS]
        assert positions == sorted(positions), case.alertname
        links = re.findall(r"\]\((http[^)]+/graph\?[^)]+)\)", text)
        assert links, case.alertname
        for link in links:
            parts = urlsplit(link)
            assert link.startswith(any_stack.alerting.prometheus_url + "/graph?")
            # Each link opens exactly one of the rules' expressions.
            assert parse_qs(parts.query)["g0.expr"][0] in exprs
    assert all(f"[{c.alertname}]({c.alertname}.md)" in files[INDEX] for c in cases)


def test_the_p0_runbook_says_the_scheduler_is_acting_and_not_to_silence(stack: Stack) -> None:
    text = runbooks(stack)["NovabrainModelLatencyHigh.md"]
    assert "risk scoring is slow" in text.lower()
    assert "The scheduler is already acting" in text
    assert "/api/v1/decisions" in text and "novabrain audit export" in text
    assert "Do not silence it" in text
    assert "Do not silence it" not in runbooks(stack)["NovabrainGpuTemperatureHigh.md"]


def test_an_alert_without_a_guide_has_no_runbook(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(guides.GUIDES, "NovabrainGpuDown")
    with pytest.raises(AlertsError, match="NovabrainGpuDown has no guide"):
        runbooks(stack)
