"""Throttling is not failing: promtool at the boundaries of the two webhook alerts.

Over its rate limit Alertmanager is answered 503 + Retry-After (``throttled``) and retries,
so ``NovabrainWebhookFailing`` (the page: the automation is off) never counts it, while
``NovabrainWebhookThrottled`` (a warning: remediation comes late) fires once Alertmanager
has been throttled in every fast window for the sustain period, and not for a burst or for
throttling that pauses longer than a window.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from alerts.generate import write_all
from alerts.promql import dur, sel
from alerts.rules import fast_window, sustain_seconds
from deploy.stack import Stack
from exporters.catalog.service import WEBHOOK_NOTIFICATIONS

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")

THROTTLED = sel(WEBHOOK_NOTIFICATIONS.series, result="throttled")
ACCEPTED = sel(WEBHOOK_NOTIFICATIONS.series, result="accepted")
SAMPLES = 60  # 15 minutes at the stack's 15 s scrape interval


def _counter(throttling: list[bool]) -> str:
    """A throttled counter: +2 at each scrape marked True, flat at each False."""
    values, v = [0], 0
    for on in throttling:
        v += 2 if on else 0
        values.append(v)
    return " ".join(map(str, values))


def _firing(alert: str, at: float, firing: bool) -> dict[str, object]:
    return {
        "expr": f'count(ALERTS{{alertname="{alert}",alertstate="firing"}})',
        "eval_time": dur(at),
        "exp_samples": [{"labels": "{}", "value": 1}] if firing else [],
    }


def _scenario(name: str, throttling: list[bool], checks: list[dict[str, object]]) -> dict[str, object]:  # fmt: skip
    return {
        "name": name,
        "interval": "15s",
        "input_series": [
            {"series": THROTTLED, "values": _counter(throttling)},
            {"series": ACCEPTED, "values": f"0+5x{len(throttling)}"},
        ],
        # Throttled notifications never page as failing, whatever else happens.
        "promql_expr_test": [
            *checks,
            *(_firing("NovabrainWebhookFailing", t, False) for t in (300, 600, 899)),
        ],
    }


def test_throttling_warns_only_when_it_does_not_stop(stack: Stack, tmp_path: Path) -> None:
    step = stack.prometheus.scrape_interval_seconds
    assert step == 15 and fast_window(stack) == "1m" and sustain_seconds(stack) == 300
    alert = "NovabrainWebhookThrottled"
    # Throttling seen from the first window (t = 15 s) on: pending until 5m15s, then firing.
    steady = [True] * SAMPLES
    # Market open: every group at once, retried through within a minute.
    burst = [False] * 8 + [True] * 3 + [False] * (SAMPLES - 11)
    # Four minutes throttled, two minutes through (longer than the window), four minutes more.
    paused = [True] * 16 + [False] * 8 + [True] * 16 + [False] * (SAMPLES - 40)
    # Throttled, with a 30 s gap every two minutes: within a window, so it does not reset.
    gaps = [i % 8 not in (6, 7) for i in range(SAMPLES)]
    doc = {
        "rule_files": ["../rules/scheduler.rules.yml"],
        "evaluation_interval": "15s",
        "tests": [
            _scenario(
                "steady throttling fires after the sustain period",
                steady,
                [_firing(alert, 300, False), _firing(alert, 315, True), _firing(alert, 600, True)],
            ),
            _scenario(
                "a burst stays quiet",
                burst,
                [_firing(alert, t, False) for t in (150, 300, 600)],
            ),
            _scenario(
                "a pause longer than the window starts the period again",
                paused,
                [_firing(alert, t, False) for t in (240, 480, 600, 899)],
            ),
            _scenario(
                "gaps shorter than the window do not",
                gaps,
                [_firing(alert, 300, False), _firing(alert, 315, True), _firing(alert, 899, True)],
            ),
        ],
    }
    write_all(stack, tmp_path)
    (tmp_path / "tests/webhook.test.yml").write_text(yaml.safe_dump(doc, sort_keys=False))
    res = subprocess.run(
        ["promtool", "test", "rules", "tests/webhook.test.yml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stdout + res.stderr
