"""The Alertmanager routes as an ``AlertmanagerConfig`` (monitoring.coreos.com/v1alpha1).

Converted from the very document ``alerts.alertmanager.alertmanager_config``
gives ``alertmanager.yml`` (which ``amtool`` tests), so the two cannot drift:
matchers become the CRD's objects, snake_case keys camelCase. Two things
change for the cluster, and only these:

* the scheduler's webhook is its in-cluster Service, and its bearer credential
  comes from the Secret ``novabrain-alertmanager-token`` next to this object
  (the operator copies it to where Alertmanager reads it) instead of a file;
* the top route matches only the alerts our PrometheusRules define, so the
  catch-all on-call receiver never takes the cluster's other alerts.

The operator, by default, also adds a ``namespace`` matcher to every
AlertmanagerConfig; our alerts are aggregated across namespaces and carry none,
so the Alertmanager resource must set ``alertmanagerConfigMatcherStrategy:
{type: None}`` (README, "Deploy to Kubernetes"). A receiver or field with no
mapping here is an error, never silently dropped.
"""

from __future__ import annotations

import re
from typing import Any

from alerts.alertmanager import SCHEDULER_RECEIVER, alertmanager_config
from deploy.manifests.errors import ManifestError
from deploy.manifests.monitoring import rule_groups
from deploy.manifests.objects import meta, obj
from deploy.manifests.scheduler import WEBHOOK_SECRET, WEBHOOK_SECRET_KEY, webhook_url
from deploy.stack import Stack

NAME = "novabrain"
_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"(.*)"\s*$')
_ROUTE_KEYS = {
    "receiver": "receiver",
    "group_by": "groupBy",
    "group_wait": "groupWait",
    "group_interval": "groupInterval",
    "repeat_interval": "repeatInterval",
    "continue": "continue",
}
_WEBHOOK_KEYS = {"url": "url", "send_resolved": "sendResolved", "max_alerts": "maxAlerts"}


def _unquote(raw: str) -> str:
    """Alertmanager's matcher unescaping: \\" and \\\\ and \\n; any other escape stays literal."""
    out, i = [], 0
    while i < len(raw):
        c = raw[i]
        if c == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(nxt, "\\" + nxt))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def matcher(text: str) -> dict[str, str]:
    """``team=~"risk"`` -> ``{name: team, matchType: "=~", value: risk}``."""
    m = _MATCHER.match(text)
    if m is None:
        raise ManifestError(f"cannot convert the Alertmanager matcher {text!r}")
    return {"name": m[1], "matchType": m[2], "value": _unquote(m[3])}


def _route(route: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in route.items():
        if key in _ROUTE_KEYS:
            out[_ROUTE_KEYS[key]] = value
        elif key == "matchers":
            out["matchers"] = [matcher(m) for m in value]
        elif key == "routes":
            out["routes"] = [_route(r) for r in value]
        else:
            raise ManifestError(f"route field {key!r} has no AlertmanagerConfig mapping")
    return out


def _webhook(stack: Stack, receiver: str, config: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in _WEBHOOK_KEYS:
            out[_WEBHOOK_KEYS[key]] = value
        elif key == "http_config" and set(value) == {"authorization"}:
            auth = value["authorization"]
            if auth.get("credentials_file") != stack.alerting.webhook_credentials_file:
                raise ManifestError(f"receiver {receiver}: unknown credentials in {auth!r}")
            out["httpConfig"] = {
                "authorization": {
                    "type": auth.get("type", "Bearer"),
                    "credentials": {"name": WEBHOOK_SECRET, "key": WEBHOOK_SECRET_KEY},
                }
            }
        else:
            raise ManifestError(
                f"receiver {receiver}: webhook field {key!r} has no AlertmanagerConfig mapping"
            )
    if receiver == SCHEDULER_RECEIVER:
        out["url"] = webhook_url(stack)
    return out


def _receiver(stack: Stack, receiver: dict[str, Any]) -> dict[str, Any]:
    name = receiver["name"]
    out: dict[str, Any] = {"name": name}
    for key, value in receiver.items():
        if key == "name":
            continue
        if key != "webhook_configs":
            raise ManifestError(f"receiver {name}: {key} has no AlertmanagerConfig mapping yet")
        out["webhookConfigs"] = [_webhook(stack, name, c) for c in value]
    return out


def _inhibit(rule: dict[str, Any]) -> dict[str, Any]:
    known = {"source_matchers", "target_matchers", "equal"}
    if set(rule) - known:
        raise ManifestError(f"inhibit rule fields {sorted(set(rule) - known)} have no mapping")
    return {
        "sourceMatch": [matcher(m) for m in rule["source_matchers"]],
        "targetMatch": [matcher(m) for m in rule["target_matchers"]],
        "equal": list(rule.get("equal", [])),
    }


def alert_names(stack: Stack) -> list[str]:
    """Every alert the PrometheusRules define, sorted."""
    return sorted(
        {
            r["alert"]
            for groups in rule_groups(stack).values()
            for g in groups
            for r in g["rules"]
            if "alert" in r
        }
    )


def alertmanager_config_object(stack: Stack) -> dict[str, Any]:
    native = alertmanager_config(stack)
    extra = set(native) - {"route", "receivers", "inhibit_rules"}
    if extra:
        raise ManifestError(f"alertmanager.yml sections {sorted(extra)} have no mapping yet")
    route = _route(native["route"])
    ours = {"name": "alertname", "matchType": "=~", "value": "|".join(alert_names(stack))}
    route = {
        "receiver": route.pop("receiver"),
        "matchers": [ours, *route.pop("matchers", [])],
        **route,
    }
    return obj(
        "monitoring.coreos.com/v1alpha1",
        "AlertmanagerConfig",
        meta(stack, NAME, "alerting", extra_labels=dict(stack.kubernetes.monitoring.labels)),
        spec={
            "route": route,
            "receivers": [_receiver(stack, r) for r in native["receivers"]],
            "inhibitRules": [_inhibit(r) for r in native.get("inhibit_rules", [])],
        },
    )
