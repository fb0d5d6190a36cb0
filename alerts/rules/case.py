"""The unit every rule family produces: a ``Case`` (the rules of one alert name and the
promtool fixtures that pin them down) or a ``Recording``; and the ``Builder`` that
collects them while the families run.

Owns the collected cases and recordings of one build; calls only ``common``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from alerts.promql import dur
from alerts.rules.common import SUSTAIN_SCRAPES, runbook_url
from deploy.stack import Stack


@dataclass(frozen=True)
class Expected:
    """One alert promtool must see firing: its full label set and rendered annotations."""

    labels: Mapping[str, str]
    annotations: Mapping[str, str]


@dataclass(frozen=True)
class Case:
    """The rules of one alert name and the promtool fixtures that pin them down.

    Input series values use promtool's expanding notation, one sample per scrape
    interval; ``{n}`` stands for the number of samples the test needs and
    ``{late}`` for the sample two scrapes before ``eval_time``.
    """

    file: str
    group: str
    alertname: str
    rules: tuple[dict[str, Any], ...]
    firing: tuple[tuple[str, str], ...]
    quiet: tuple[tuple[str, str], ...]
    expected: tuple[Expected, ...]
    eval_seconds: float
    signal: str  # the alert's quantity without its threshold (the live check queries it)
    title: str = ""  # distinguishes cases of the same alert name (a pool, a model)


@dataclass(frozen=True)
class Recording:
    file: str
    group: str
    record: str
    expr: str
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_rule(self) -> dict[str, Any]:
        rule: dict[str, Any] = {"record": self.record, "expr": self.expr}
        if self.labels:
            rule["labels"] = dict(self.labels)
        return rule


_LABEL_REF = re.compile(r"\{\{ \$labels\.(\w+) \}\}")


def render(template: str, labels: Mapping[str, str]) -> str:
    """What Prometheus renders for our annotation templates (they only use ``$labels``)."""
    return _LABEL_REF.sub(lambda m: labels.get(m.group(1), "<no value>"), template)


EVAL_SCRAPES = 40


def eval_seconds(stack: Stack, for_seconds: float) -> float:
    """When promtool checks a case: the pending period plus twenty scrapes of data, and at
    least forty scrapes (10 min in production) so every rate window has samples."""
    step = stack.prometheus.scrape_interval_seconds
    return step * max(EVAL_SCRAPES, -(-for_seconds // step) + SUSTAIN_SCRAPES)


class Builder:
    """Collects cases and recording rules while the generators run."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.cases: list[Case] = []
        self.recordings: list[Recording] = []

    def alert(
        self,
        *,
        file: str,
        group: str,
        name: str,
        expr: str,
        signal: str,
        for_seconds: float,
        severity: str,
        labels: Mapping[str, str],
        summary: str,
        description: str,
        dashboard: str,
        firing: tuple[tuple[str, str], ...],
        quiet: tuple[tuple[str, str], ...],
        out: tuple[Mapping[str, str], ...],
        title: str = "",
    ) -> None:
        """One alerting rule, its fixtures, and the labels the expression yields in ``firing``."""
        static = {"severity": severity, **labels}
        annotations = {
            "summary": summary,
            "description": description,
            "runbook_url": runbook_url(self.stack, name),
            "dashboard_url": dashboard,
        }
        rule: dict[str, Any] = {"alert": name, "expr": expr}
        if for_seconds > 0:
            rule["for"] = dur(for_seconds)
        rule["labels"] = static
        rule["annotations"] = annotations
        expected = tuple(self._expected(name, o, static, annotations) for o in out)
        at = eval_seconds(self.stack, for_seconds)
        self.cases.append(
            Case(file, group, name, (rule,), firing, quiet, expected, at, signal, title)
        )

    @staticmethod
    def _expected(
        name: str, out: Mapping[str, str], static: Mapping[str, str], ann: Mapping[str, str]
    ) -> Expected:
        labels = {**out, **static, "alertname": name}
        return Expected(labels, {k: render(v, labels) for k, v in ann.items()})

    def record(self, file: str, group: str, record: str, expr: str, **labels: str) -> None:
        self.recordings.append(Recording(file, group, record, expr, labels))
