"""On-call receivers in Alertmanager 0.25's terms: one integration per channel of the stack.

Every notification is rendered by the generated templates (``alerts.templates``)
in the receiver's language. Secrets are read by Alertmanager from files where
0.25 can: SMTP ``auth_password_file``, PagerDuty ``routing_key_file`` and a
webhook's bearer ``credentials_file``. WeCom is the exception: 0.25's
``wechat_configs`` has ``api_secret`` and no file variant (it came in a later
release), so the committed ``alertmanager.yml`` carries ``WECHAT_SECRET_MARKER``
where the secret goes, and ``deployable`` writes the secret, read from the
stack's ``api_secret_file``, into the copy that is deployed (``novabrain
alertmanager config --out``), never into a committed file.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from alerts.errors import AlertsError
from deploy.stack import (
    Channel,
    EmailChannel,
    PagerDutyChannel,
    Receiver,
    Stack,
    WebhookChannel,
    WechatChannel,
)

WECHAT_SECRET_MARKER = "<secret from {file}: written at deploy time>"  # noqa: S105 (a marker)
ReadSecret = Callable[[str], str]


def template_name(kind: str, language: str) -> str:
    """``novabrain.<kind>.<language>``, e.g. ``novabrain.email.subject.zh``."""
    return f"novabrain.{kind}.{language}"


def use(kind: str, language: str) -> str:
    return '{{ template "' + template_name(kind, language) + '" . }}'


def read_secret_file(path: str) -> str:
    """The secret in ``path``, without the trailing newline editors add."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise AlertsError(f"cannot read secret file {path}: {e.strerror}") from None


def _email(c: EmailChannel, language: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "send_resolved": True,
        "to": ", ".join(c.to),
        "from": c.sender,
        "smarthost": c.smarthost,
        "require_tls": c.require_tls,
    }
    if c.auth_username is not None:
        cfg["auth_username"] = c.auth_username
        cfg["auth_password_file"] = c.auth_password_file
    if c.ca_file is not None:
        cfg["tls_config"] = {"ca_file": c.ca_file}
    cfg["headers"] = {"Subject": use("email.subject", language)}
    cfg["html"] = use("email.html", language)
    return cfg


def _wechat(c: WechatChannel, language: str, read_secret: ReadSecret | None) -> dict[str, Any]:
    secret = (
        WECHAT_SECRET_MARKER.format(file=c.api_secret_file)
        if read_secret is None
        else read_secret(c.api_secret_file)
    )
    cfg: dict[str, Any] = {"send_resolved": True, "api_secret": secret, "corp_id": c.corp_id}
    if c.api_url is not None:
        # Alertmanager appends "gettoken" and "message/send" to it.
        cfg["api_url"] = c.api_url.rstrip("/") + "/"
    cfg["agent_id"] = c.agent_id
    for key in ("to_user", "to_party", "to_tag"):
        if getattr(c, key) is not None:
            cfg[key] = getattr(c, key)
    cfg["message_type"] = "markdown"
    cfg["message"] = use("wechat", language)
    return cfg


def _webhook(c: WebhookChannel) -> dict[str, Any]:
    cfg: dict[str, Any] = {"url": c.url, "send_resolved": True}
    if c.credentials_file is not None:
        cfg["http_config"] = {
            "authorization": {"type": "Bearer", "credentials_file": c.credentials_file}
        }
    return cfg


def _pagerduty(c: PagerDutyChannel, language: str) -> dict[str, Any]:
    cfg: dict[str, Any] = {"send_resolved": True, "routing_key_file": c.routing_key_file}
    if c.url is not None:
        cfg["url"] = c.url
    cfg["description"] = use("email.subject", language)
    cfg["severity"] = (
        '{{ if eq .CommonLabels.severity "critical" }}critical{{ else }}warning{{ end }}'
    )
    return cfg


def integrations(
    channels: tuple[Channel, ...], language: str, read_secret: ReadSecret | None
) -> dict[str, list[dict[str, Any]]]:
    """Alertmanager's ``*_configs`` lists for ``channels``, in a fixed key order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for c in channels:
        if isinstance(c, EmailChannel):
            key, cfg = "email_configs", _email(c, language)
        elif isinstance(c, WechatChannel):
            key, cfg = "wechat_configs", _wechat(c, language, read_secret)
        elif isinstance(c, WebhookChannel):
            key, cfg = "webhook_configs", _webhook(c)
        else:
            key, cfg = "pagerduty_configs", _pagerduty(c, language)
        if cfg not in out.setdefault(key, []):
            out[key].append(cfg)
    order = ("email_configs", "wechat_configs", "pagerduty_configs", "webhook_configs")
    return {k: out[k] for k in order if k in out}


def receiver(r: Receiver, read_secret: ReadSecret | None) -> dict[str, Any]:
    return {"name": r.name, **integrations(r.channels, r.language, read_secret)}


def everyone(name: str, stack: Stack, read_secret: ReadSecret | None) -> dict[str, Any]:
    """A receiver with every team's channels, each in its team's language: for alerts no
    team owns (the platform's own) or whose team no receiver lists."""
    merged: dict[str, list[dict[str, Any]]] = {}
    for r in stack.alerting.oncall:
        for key, cfgs in integrations(r.channels, r.language, read_secret).items():
            known = merged.setdefault(key, [])
            known.extend(c for c in cfgs if c not in known)
    return {"name": name, **merged}
