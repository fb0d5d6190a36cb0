"""``alertmanager.yml`` generated from the stack, valid for Alertmanager 0.25.

Routing, top to bottom:

1. ``severity="info"`` goes to a receiver with no integrations: recorded, never sent.
2. Alerts with an ``action`` label on a pool of the top priority class go to the
   scheduler's webhook (bearer token read from ``credentials_file``: 0.25 has no
   ``url_file``, and no per-webhook ``timeout``) and ``continue`` to on-call.
3. One route per on-call receiver, matching the teams it covers, with children
   muted during the stack's maintenance windows (``alerts.maintenance``).
4. Everything else (the platform's own alerts) reaches every on-call receiver.

Receivers (email, WeCom, webhook, PagerDuty) come from the stack's on-call
teams (``alerts.receivers``) and render the generated templates in
``templates/`` (``alerts.templates``) in each team's language.

Grouping by alert, pool and model keeps one notification per breach, so the
scheduler sees each P0 breach as soon as ``group_wait`` has passed and a
changed group again after ``group_interval`` (both from the stack: seconds in
the demo, a closed loop that reacts within a minute in production).
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any

from alerts.maintenance import mute_routes, time_intervals
from alerts.promql import dur
from alerts.receivers import ReadSecret, everyone, receiver
from alerts.rules import CRITICAL, INFO, PLATFORM_TEAM, WARNING, is_top_priority
from deploy.stack import ACTIONS, MATCHER, Stack

SCHEDULER_RECEIVER = "novabrain-scheduler"
NULL_RECEIVER = "null"
DEFAULT_RECEIVER = "oncall-default"
GROUP_BY = ("alertname", "pool", "model")
# Where alertmanager.yml finds the notification templates, relative to itself.
TEMPLATES_DIR = "templates"


def _webhook(url: str, **extra: Any) -> dict[str, Any]:
    return {"url": url, "send_resolved": True, **extra}


_RE2_META = re.compile(r"([\\.+*?()|\[\]{}^$])")


def _regex(values: list[str] | tuple[str, ...]) -> str:
    """An alternation of literal values, escaping only what RE2 treats as special."""
    return "|".join(_RE2_META.sub(r"\\\1", v) for v in values)


def action_pools(stack: Stack) -> list[str]:
    """Pools whose action alerts the scheduler acts on (the top priority class)."""
    return [p.name for p in stack.pools if is_top_priority(stack, p)]


def alertmanager_config(stack: Stack, *, read_secret: ReadSecret | None = None) -> dict[str, Any]:
    """The ``alertmanager.yml`` document. With ``read_secret`` (deploy time) secrets that
    Alertmanager 0.25 cannot read from a file are read with it; without (the committed
    file) they are left as a marker (``alerts.receivers``)."""
    a = stack.alerting
    timing = {
        "group_wait": dur(a.group_wait_seconds),
        "group_interval": dur(a.group_interval_seconds),
        "repeat_interval": dur(a.repeat_interval_seconds),
    }
    receivers: list[dict[str, Any]] = [
        {"name": NULL_RECEIVER},
        {
            "name": SCHEDULER_RECEIVER,
            "webhook_configs": [
                _webhook(
                    a.scheduler_webhook_url,
                    # Every alert of a group in one call: the scheduler decides on the whole breach.
                    max_alerts=0,
                    http_config={
                        "authorization": {
                            "type": "Bearer",
                            "credentials_file": a.webhook_credentials_file,
                        }
                    },
                )
            ],
        },
    ]
    # Never muted, never silenced by `novabrain silence`: the scheduler acts on these.
    routes: list[dict[str, Any]] = [
        {"receiver": NULL_RECEIVER, "matchers": [f'severity="{INFO}"']},
        {
            "receiver": SCHEDULER_RECEIVER,
            "matchers": scheduler_matchers(stack),
            "continue": True,
        },
    ]
    muted = mute_routes(stack)

    def oncall_route(name: str, matchers: list[str]) -> dict[str, Any]:
        route: dict[str, Any] = {"receiver": name}
        if matchers:
            route["matchers"] = matchers
        if muted:
            route["routes"] = copy.deepcopy(muted)  # no YAML anchors in the generated file
        return route

    for r in a.oncall:
        receivers.append(receiver(r, read_secret))
        if r.teams:
            routes.append(oncall_route(r.name, [f'team=~"{_regex(r.teams)}"']))
    # Unowned alerts (team "platform", or a team no receiver lists) page everyone.
    receivers.append(everyone(DEFAULT_RECEIVER, stack, read_secret))
    if muted:
        # The root route cannot be muted: a catch-all child carries the maintenance tree.
        routes.append(oncall_route(DEFAULT_RECEIVER, []))
    doc: dict[str, Any] = {
        "route": {
            "receiver": DEFAULT_RECEIVER,
            "group_by": list(GROUP_BY),
            **timing,
            "routes": routes,
        },
        "inhibit_rules": [
            # A critical alert silences the warning about the same model ...
            {
                "source_matchers": [f'severity="{CRITICAL}"', 'model=~".+"'],
                "target_matchers": [f'severity="{WARNING}"', 'model=~".+"'],
                "equal": ["model"],
            },
            # ... and about the same GPU. The non-empty matchers matter: labels
            # missing on both sides count as equal.
            {
                "source_matchers": [f'severity="{CRITICAL}"', 'uuid=~".+"'],
                "target_matchers": [f'severity="{WARNING}"', 'uuid=~".+"'],
                "equal": ["uuid"],
            },
        ],
        "receivers": receivers,
        "templates": [f"{TEMPLATES_DIR}/*.tmpl"],
    }
    intervals = time_intervals(stack)
    if intervals:
        doc["time_intervals"] = intervals
    return doc


def scheduler_matchers(stack: Stack) -> list[str]:
    """The scheduler route's matchers: an action label on a pool of the top priority class."""
    return [f'action=~"{_regex(ACTIONS)}"', f'pool=~"{_regex(action_pools(stack))}"']


@dataclass(frozen=True)
class RouteCase:
    """An alert's labels and the receivers Alertmanager must pick for it (``amtool config routes test``)."""

    labels: dict[str, str]
    receivers: tuple[str, ...]


def route_cases(stack: Stack) -> list[RouteCase]:
    """Every team and severity, with and without an action label, the platform's own alerts,
    and GPU alerts on nodes under maintenance (muting keeps the receiver)."""
    team_receiver = {t: r.name for r in reversed(stack.alerting.oncall) for t in r.teams}
    cases: list[RouteCase] = []
    teams = [(p.team, p) for p in stack.pools] + [(PLATFORM_TEAM, None)]
    for team, pool in teams:
        oncall = team_receiver.get(team, DEFAULT_RECEIVER)
        where = {"team": team} if pool is None else {"team": team, "pool": pool.name}
        for severity in (CRITICAL, WARNING, INFO):
            page = (NULL_RECEIVER,) if severity == INFO else (oncall,)
            base = {**where, "severity": severity}
            cases.append(RouteCase({**base, "alertname": "TeamAlert"}, page))
            for action in ACTIONS:
                acts = pool is not None and is_top_priority(stack, pool) and severity != INFO
                want = (SCHEDULER_RECEIVER, *page) if acts else page
                cases.append(
                    RouteCase({**base, "alertname": "ActionAlert", "action": action}, want)
                )
        for node in sorted({n for m in stack.alerting.maintenance for n in _nodes(m.matchers)}):
            labels = {**where, "severity": CRITICAL, "alertname": "NovabrainGpuDown", "node": node}
            cases.append(RouteCase(labels, (oncall,)))
    return cases


def _nodes(matchers: tuple[str, ...]) -> list[str]:
    """Node names a maintenance window's node matcher lists (``node="a"`` or ``node=~"a|b"``)."""
    for m in matchers:
        found = MATCHER.match(m)
        if found and found[1] == "node" and found[2] in ("=", "=~"):
            return [n for n in found[3].split("|") if re.fullmatch(r"[\w.-]+", n)]
    return []
