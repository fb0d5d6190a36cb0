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
from pathlib import PurePosixPath
from typing import Any

from alerts.alertmanager import SCHEDULER_RECEIVER, alertmanager_config
from alerts.errors import AlertsError
from alerts.maintenance import utc_entries
from alerts.templates import template_files
from deploy.manifests.errors import ManifestError
from deploy.manifests.monitoring import rule_groups
from deploy.manifests.objects import meta, obj
from deploy.manifests.scheduler import WEBHOOK_SECRET, WEBHOOK_SECRET_KEY, webhook_url
from deploy.stack import Stack

NAME = "novabrain"
# The on-call channels' secrets: one key per secret file the stack names, by file name.
ONCALL_SECRET = "novabrain-oncall"  # noqa: S105 - a Secret name
TEMPLATES_CONFIGMAP = "novabrain-alertmanager-templates"
_MATCHER = re.compile(r'^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"(.*)"\s*$')
_ROUTE_KEYS = {
    "receiver": "receiver",
    "group_by": "groupBy",
    "group_wait": "groupWait",
    "group_interval": "groupInterval",
    "repeat_interval": "repeatInterval",
    "continue": "continue",
    "mute_time_intervals": "muteTimeIntervals",
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
            if receiver == SCHEDULER_RECEIVER:
                if auth.get("credentials_file") != stack.alerting.webhook_credentials_file:
                    raise ManifestError(f"receiver {receiver}: unknown credentials in {auth!r}")
                ref = {"name": WEBHOOK_SECRET, "key": WEBHOOK_SECRET_KEY}
            else:
                ref = _secret(auth["credentials_file"])
            out["httpConfig"] = {
                "authorization": {"type": auth.get("type", "Bearer"), "credentials": ref}
            }
        else:
            raise ManifestError(
                f"receiver {receiver}: webhook field {key!r} has no AlertmanagerConfig mapping"
            )
    if receiver == SCHEDULER_RECEIVER:
        out["url"] = webhook_url(stack)
    return out


def _secret(path: str) -> dict[str, str]:
    return {"name": ONCALL_SECRET, "key": PurePosixPath(path).name}


# Alertmanager's snake_case -> the CRD's camelCase, per integration; a secret file becomes
# a reference to a key of ONCALL_SECRET. Anything not listed is an error.
_EMAIL = {
    "send_resolved": "sendResolved",
    "to": "to",
    "from": "from",
    "smarthost": "smarthost",
    "require_tls": "requireTLS",
    "auth_username": "authUsername",
    "html": "html",
}
_WECHAT = {
    "send_resolved": "sendResolved",
    "corp_id": "corpID",
    "agent_id": "agentID",
    "to_user": "toUser",
    "to_party": "toParty",
    "to_tag": "toTag",
    "api_url": "apiURL",
    "message_type": "messageType",
    "message": "message",
}
_PAGERDUTY = {
    "send_resolved": "sendResolved",
    "url": "url",
    "description": "description",
    "severity": "severity",
}


def _convert(
    receiver: str, kind: str, config: dict[str, Any], keys: dict[str, str]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in config.items():
        if key in keys:
            out[keys[key]] = value
        elif key == "auth_password_file":
            out["authPassword"] = _secret(value)
        elif key == "routing_key_file":
            out["routingKey"] = _secret(value)
        elif key == "api_secret":  # the file's path: see alertmanager_config_object
            out["apiSecret"] = _secret(value)
        elif key == "headers":
            out["headers"] = [{"key": k, "value": v} for k, v in value.items()]
        elif key == "tls_config" and set(value) == {"ca_file"}:
            out["tlsConfig"] = {"ca": {"secret": _secret(value["ca_file"])}}
        else:
            raise ManifestError(f"receiver {receiver}: {kind} field {key!r} has no mapping")
    return out


def _receiver(stack: Stack, receiver: dict[str, Any]) -> dict[str, Any]:
    name = receiver["name"]
    out: dict[str, Any] = {"name": name}
    for key, value in receiver.items():
        if key == "name":
            continue
        if key == "webhook_configs":
            out["webhookConfigs"] = [_webhook(stack, name, c) for c in value]
        elif key == "email_configs":
            out["emailConfigs"] = [_convert(name, "email", c, _EMAIL) for c in value]
        elif key == "wechat_configs":
            out["wechatConfigs"] = [_convert(name, "wechat", c, _WECHAT) for c in value]
        elif key == "pagerduty_configs":
            out["pagerdutyConfigs"] = [_convert(name, "pagerduty", c, _PAGERDUTY) for c in value]
        else:
            raise ManifestError(f"receiver {name}: {key} has no AlertmanagerConfig mapping yet")
    return out


def _time_interval(entry: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in entry.items():
        if key == "times":
            out["times"] = [{"startTime": t["start_time"], "endTime": t["end_time"]} for t in value]
        elif key == "days_of_month":
            out["daysOfMonth"] = [{"start": int(d), "end": int(d)} for d in value]
        elif key in ("weekdays", "months", "years"):
            out[key] = list(value)
        else:
            raise ManifestError(f"time interval field {key!r} has no mapping")
    return out


def mute_time_intervals(stack: Stack) -> list[dict[str, Any]]:
    """The maintenance windows in UTC: the CRD (operator 0.93) has no ``location``."""
    tz = stack.alerting.timezone
    try:
        return [
            {"name": m.name, "timeIntervals": [_time_interval(e) for e in utc_entries(m, tz)]}
            for m in stack.alerting.maintenance
        ]
    except AlertsError as e:
        raise ManifestError(str(e)) from None


def templates_configmap(stack: Stack) -> dict[str, Any]:
    """The notification templates, beside Alertmanager: its resource lists them under
    ``spec.alertmanagerConfiguration.templates`` (the CRD has no templates of its own)."""
    mon = stack.kubernetes.monitoring
    return obj(
        "v1",
        "ConfigMap",
        meta(stack, TEMPLATES_CONFIGMAP, "alerting", namespace=mon.namespace),
        data=template_files(stack),
    )


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
    # Secrets Alertmanager 0.25 takes only inline (WeCom's) come back as their file's path,
    # which becomes a reference to the Secret holding that file.
    native = alertmanager_config(stack, read_secret=lambda path: path)
    extra = set(native) - {"route", "receivers", "inhibit_rules", "templates", "time_intervals"}
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
            **(
                {"muteTimeIntervals": mute_time_intervals(stack)}
                if "time_intervals" in native
                else {}
            ),
        },
    )
