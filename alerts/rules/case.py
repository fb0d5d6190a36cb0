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
_DURATION = "{{ $value | humanizeDuration }}"
_PERCENT = "{{ $value | humanizePercentage }}"
_NUMBER = '{{ printf "%.4g" $value }}'


def humanize_duration(v: float) -> str:
    """Prometheus' ``humanizeDuration`` (template/template.go), for finite values."""
    if v == 0:
        return "0s"
    if abs(v) >= 1:
        sign = "-" if v < 0 else ""
        whole = int(abs(v))
        days, rest = divmod(whole, 86400)
        hours, rest = divmod(rest, 3600)
        minutes, seconds = divmod(rest, 60)
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds}s"
        if minutes:
            return f"{sign}{minutes}m {seconds}s"
        return f"{sign}{abs(v):.4g}s"
    prefix = ""
    for p in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(v) >= 1:
            break
        prefix, v = p, v * 1000
    return f"{v:.4g}{prefix}s"


@dataclass(frozen=True)
class Value:
    """How an alert's current value reads in a notification: the ``value`` annotation's
    Prometheus template, and the same formatting here for the promtool expectations.

    ``kind`` is ``duration`` (seconds, humanized), ``percent`` (a ratio), ``number``
    (4 significant digits) or ``text`` (only ``prefix`` and ``suffix``, which may use
    ``$labels``: for alerts whose value is a condition, not a quantity).
    """

    kind: str
    prefix: str = ""
    suffix: str = ""

    @property
    def template(self) -> str:
        core = {"duration": _DURATION, "percent": _PERCENT, "number": _NUMBER, "text": ""}
        return self.prefix + core[self.kind] + self.suffix

    def format(self, v: float) -> str:
        if self.kind == "duration":
            return humanize_duration(v)
        if self.kind == "percent":
            return f"{v * 100:.4g}%"
        if self.kind == "number":
            return f"{v:.4g}"
        return ""


@dataclass(frozen=True)
class Text:
    """What an alert says, in English and Chinese (``*_zh`` annotations): both may use
    ``{{ $labels.x }}``."""

    summary: str
    summary_zh: str
    description: str
    description_zh: str


def render(template: str, labels: Mapping[str, str], value: str | None = None) -> str:
    """What Prometheus renders for our annotation templates: ``$labels`` references and,
    when ``value`` is given, the one ``$value`` expression a ``Value`` writes."""
    if value is not None:
        for expr in (_DURATION, _PERCENT, _NUMBER):
            template = template.replace(expr, value)
    return _LABEL_REF.sub(lambda m: labels.get(m.group(1), "<no value>"), template)


def annotations(
    stack: Stack, name: str, text: Text, value: Value, dashboard: str
) -> dict[str, str]:
    """Every alert's annotations, in this order (templates and runbooks read them)."""
    return {
        "summary": text.summary,
        "summary_zh": text.summary_zh,
        "description": text.description,
        "description_zh": text.description_zh,
        "value": value.template,
        "runbook_url": runbook_url(stack, name),
        "dashboard_url": dashboard,
    }


def expected(
    name: str,
    out: Mapping[str, str],
    static: Mapping[str, str],
    ann: Mapping[str, str],
    shown: str,
) -> Expected:
    """The alert promtool must see: ``out`` (the expression's labels) with the rule's, and
    the annotations as Prometheus renders them for the value ``shown``."""
    labels = {**out, **static, "alertname": name}
    return Expected(labels, {k: render(v, labels, shown) for k, v in ann.items()})


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
        text: Text,
        value: Value,
        fired: float,
        dashboard: str,
        firing: tuple[tuple[str, str], ...],
        quiet: tuple[tuple[str, str], ...],
        out: tuple[Mapping[str, str], ...],
        title: str = "",
        queried: Mapping[str, tuple[str, str]] | None = None,
    ) -> None:
        """One alerting rule, its fixtures, the labels the expression yields in ``firing``
        and its value there (``fired``). ``queried``: more annotations, each a template
        that queries Prometheus, with what it renders to in ``firing``."""
        static = {"severity": severity, **labels}
        ann = annotations(self.stack, name, text, value, dashboard)
        ann |= {k: template for k, (template, _) in (queried or {}).items()}
        rule: dict[str, Any] = {"alert": name, "expr": expr}
        if for_seconds > 0:
            rule["for"] = dur(for_seconds)
        rule["labels"] = static
        rule["annotations"] = ann
        shown = value.format(fired)
        exp = tuple(expected(name, o, static, ann, shown) for o in out)
        if queried:
            exp = tuple(
                Expected(e.labels, {**e.annotations, **{k: r for k, (_, r) in queried.items()}})
                for e in exp
            )
        at = eval_seconds(self.stack, for_seconds)
        self.cases.append(Case(file, group, name, (rule,), firing, quiet, exp, at, signal, title))

    def record(self, file: str, group: str, record: str, expr: str, **labels: str) -> None:
        self.recordings.append(Recording(file, group, record, expr, labels))
