"""Alertmanager webhook payloads (version 4), validated strictly, and what they ask for.

Pure: bytes in, frozen values or a ``PayloadError`` naming the offending field out.
Unknown fields are refused too: the shape is pinned by ``version: "4"``, and a
sender that drifts from it is told so (400) instead of being half-understood.
Label names are not checked: only ``action``, ``pool`` and ``alertname`` are
read, and Alertmanager 0.27 accepts any UTF-8 name; refusing one would drop an
alert. What is accepted is what the OpenAPI document says
(``routes.ALERTMANAGER_V4``).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from deploy.stack import Stack
from scheduler.core.alerts import REQUEST_RATE_ANNOTATION
from scheduler.service.errors import PayloadError

MAX_ALERTS = 1000
MAX_STRING = 8192
ACTION_LABEL = "action"
POOL_LABEL = "pool"
MODEL_LABEL = "model"
# The highest request rate taken from an annotation: a bigger number is a broken
# template, not a load (the grant then falls back to the fixed step).
MAX_RATE_RPS = 1e9

_TOP = {
    "version": str,
    "groupKey": str,
    "truncatedAlerts": int,
    "status": str,
    "receiver": str,
    "groupLabels": dict,
    "commonLabels": dict,
    "commonAnnotations": dict,
    "externalURL": str,
    "alerts": list,
}
_REQUIRED_TOP = ("version", "groupKey", "status", "receiver", "alerts")
_ALERT = {
    "status": str,
    "labels": dict,
    "annotations": dict,
    "startsAt": str,
    "endsAt": str,
    "generatorURL": str,
    "fingerprint": str,
}
_REQUIRED_ALERT = ("status", "labels", "startsAt", "fingerprint")
_STATUSES = ("firing", "resolved")
_FINGERPRINT = re.compile(r"^[0-9a-f]{1,64}$")
# RFC 3339 as Go's time.Time marshals it: up to nanoseconds, Z or an offset.
_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|[+-]\d{2}:\d{2})$"
)


@dataclass(frozen=True)
class Alert:
    status: str
    labels: Mapping[str, str]
    fingerprint: str
    starts_at_ns: int  # normalised: the same instant however the sender formatted it
    annotations: Mapping[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """The idempotency key: one alert state, whichever replay, resend or HA peer sent it."""
        return hashlib.sha256(
            f"{self.fingerprint}|{self.starts_at_ns}|{self.status}".encode()
        ).hexdigest()

    @property
    def correlation_id(self) -> str:
        return "am-" + self.key[:24]

    @property
    def pair(self) -> str:
        """The alert whatever its state (fingerprint, startsAt): its firing and its resolved
        share it, so that a firing delivered after the resolved can be told late."""
        return hashlib.sha256(f"{self.fingerprint}|{self.starts_at_ns}".encode()).hexdigest()


@dataclass(frozen=True)
class Notification:
    group_key: str
    status: str
    receiver: str
    alerts: tuple[Alert, ...]


def _check_type(value: Any, typ: type, path: str) -> None:
    # bool is an int in Python but not in JSON.
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise PayloadError(f"{path}: must be {_TYPE_NAMES[typ]}, got {_json_type(value)}")


_TYPE_NAMES = {str: "a string", int: "an integer", dict: "an object", list: "an array"}


def _json_type(v: Any) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    return _TYPE_NAMES.get(type(v), type(v).__name__)


def _check_keys(obj: dict[str, Any], allowed: Mapping[str, type], required: tuple[str, ...],
                path: str) -> None:  # fmt: skip
    for k in obj:
        if k not in allowed:
            raise PayloadError(f"{path}{k}: unknown field")
    for k in required:
        if k not in obj:
            raise PayloadError(f"{path}{k}: is required")
    for k, typ in allowed.items():
        if k in obj:
            _check_type(obj[k], typ, f"{path}{k}")
            if typ is str and len(obj[k]) > MAX_STRING:
                raise PayloadError(f"{path}{k}: longer than {MAX_STRING} characters")


def _string_map(obj: dict[str, Any], path: str) -> dict[str, str]:
    for k, v in obj.items():
        if not isinstance(v, str):
            raise PayloadError(f"{path}.{k}: must be a string, got {_json_type(v)}")
        if len(v) > MAX_STRING:
            raise PayloadError(f"{path}.{k}: longer than {MAX_STRING} characters")
    return dict(obj)


def parse_time_ns(text: str, path: str) -> int:
    m = _RFC3339.match(text)
    if not m:
        raise PayloadError(f"{path}: not an RFC 3339 time: {text[:40]!r}")
    frac = (m[7] or "").ljust(9, "0")
    try:
        dt = datetime.fromisoformat(f"{m[1]}-{m[2]}-{m[3]}T{m[4]}:{m[5]}:{m[6]}{m[8]}")
    except ValueError:
        raise PayloadError(f"{path}: not a valid time: {text[:40]!r}") from None
    if dt.tzinfo is None:  # pragma: no cover - the pattern always carries a zone
        dt = dt.replace(tzinfo=UTC)
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + int(frac)


def load_json(body: bytes) -> Any:
    """A request body as JSON; ``PayloadError`` for anything that does not parse.

    Nesting deeper than the interpreter's recursion limit (``[[[...]]]``, a few
    hundred kB) is refused too: it is a body the sender must fix (400), not a
    server failure that Alertmanager would retry.
    """
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise PayloadError(f"body is not JSON: {e}") from None
    except RecursionError:
        raise PayloadError("body is not JSON we accept: nested too deeply") from None


def parse_notification(body: bytes) -> Notification:
    """Validate a webhook body; raise ``PayloadError`` with the reason."""
    doc = load_json(body)
    if not isinstance(doc, dict):
        raise PayloadError(f"body must be a JSON object, got {_json_type(doc)}")
    _check_keys(doc, _TOP, _REQUIRED_TOP, "")
    if doc["version"] != "4":
        raise PayloadError(f"version: only Alertmanager webhook version 4 is accepted, got {doc['version'][:20]!r}")  # fmt: skip
    if doc["status"] not in _STATUSES:
        raise PayloadError(f"status: must be firing or resolved, got {doc['status'][:20]!r}")
    if doc.get("truncatedAlerts", 0) < 0:
        raise PayloadError("truncatedAlerts: must be >= 0")
    for k in ("groupLabels", "commonLabels"):
        _string_map(doc.get(k, {}), k)
    _string_map(doc.get("commonAnnotations", {}), "commonAnnotations")
    alerts = doc["alerts"]
    if not alerts:
        raise PayloadError("alerts: must not be empty")
    if len(alerts) > MAX_ALERTS:
        raise PayloadError(f"alerts: more than {MAX_ALERTS} alerts")
    out = []
    for i, a in enumerate(alerts):
        p = f"alerts[{i}]"
        if not isinstance(a, dict):
            raise PayloadError(f"{p}: must be an object, got {_json_type(a)}")
        _check_keys(a, _ALERT, _REQUIRED_ALERT, p + ".")
        if a["status"] not in _STATUSES:
            raise PayloadError(f"{p}.status: must be firing or resolved, got {a['status'][:20]!r}")
        if not _FINGERPRINT.match(a["fingerprint"]):
            raise PayloadError(f"{p}.fingerprint: must be lowercase hex")
        labels = _string_map(a["labels"], f"{p}.labels")
        notes = _string_map(a.get("annotations", {}), f"{p}.annotations")
        starts = parse_time_ns(a["startsAt"], f"{p}.startsAt")
        if "endsAt" in a:
            parse_time_ns(a["endsAt"], f"{p}.endsAt")
        out.append(Alert(a["status"], labels, a["fingerprint"], starts, notes))
    return Notification(doc["groupKey"], doc["status"], doc["receiver"], tuple(out))


@dataclass(frozen=True)
class Intent:
    """What one alert asks the scheduler to do; ``action`` empty when it asks for nothing."""

    key: str
    correlation_id: str
    alert: str  # alertname, for the audit trail
    pool: str
    action: str
    firing: bool
    reason: str  # why it is ignored, when it is
    pair: str = ""  # the alert across its states (``Alert.pair``)
    model: str = ""  # the ``model`` label: whose request rate ``rate_rps`` is
    rate_rps: float | None = None  # the rate the alert carried; None: none usable


def rate_of(alert: Alert) -> float | None:
    """The request rate the alert's annotation carries; None when missing or unusable.

    Never an error: an alert without a usable rate (an older rule, a query that found
    nothing, a template that broke) is still acted on, by the fixed step.
    """
    text = alert.annotations.get(REQUEST_RATE_ANNOTATION, "").strip()
    try:
        rate = float(text)
    except ValueError:
        return None
    return rate if math.isfinite(rate) and 0.0 <= rate <= MAX_RATE_RPS else None


def actionable_pairs(stack: Stack) -> frozenset[tuple[str, str]]:
    """(pool, action) pairs the stack lets an alert trigger: a model's pool and its action."""
    return frozenset((m.pool, m.action) for m in stack.models if m.action)


def intent_for(alert: Alert, allowed: frozenset[tuple[str, str]]) -> Intent:
    action = alert.labels.get(ACTION_LABEL, "")
    pool = alert.labels.get(POOL_LABEL, "")
    name = alert.labels.get("alertname", "")
    firing = alert.status == "firing"
    if not action or not pool:
        reason = "no action labels"
        return Intent(alert.key, alert.correlation_id, name, pool, "", firing, reason, alert.pair)
    if (pool, action) not in allowed:
        reason = f"the stack maps no {action!r} action to pool {pool!r}"
        return Intent(alert.key, alert.correlation_id, name, pool, "", firing, reason, alert.pair)
    return Intent(
        alert.key,
        alert.correlation_id,
        name,
        pool,
        action,
        firing,
        "",
        alert.pair,
        alert.labels.get(MODEL_LABEL, ""),
        rate_of(alert) if firing else None,
    )
