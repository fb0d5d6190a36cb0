"""Operator actions done outside the scheduler, reported for its audit log.

``novabrain silence add|expire`` changes Alertmanager, not the scheduler; with a
token it reports each call here first (``requested``) and its outcome after
(``ok``), and does nothing it could not report (``alerts.silence``). The
operations are a closed list, each with the exact shape of its ``params``;
everything is bounded, and anything else is a 400. Who reported it and from
where come from the request (the token's user, the peer address), never from
the body, which has no field for them.

The limits are the client's too: ``novabrain silence`` refuses what the
scheduler would (exit 2) before it calls anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

AUDIT_RECORDS_PATH = "/api/v1/audit/records"
# A call is reported when it is about to be made, and again once it was.
RESULTS = ("requested", "ok")
REASON = "reported by the caller"

MAX_MATCHERS = 32
MAX_MATCHER = 1024
MAX_AUTHOR = 128
MAX_COMMENT = 1024
# Alertmanager's silence ids are UUIDs; an add is reported before it has one.
SILENCE_ID = r"[0-9a-fA-F-]{8,64}"

_DATE_TIME = {"type": "string", "format": "date-time", "maxLength": 40}
_AUTHOR = {"type": "string", "minLength": 1, "maxLength": MAX_AUTHOR}
_RESULT = {"type": "string", "enum": list(RESULTS)}
# Alertmanager's matcher syntax as the client writes it: label, operator, quoted value.
_MATCHER = {
    "type": "string",
    "minLength": 4,
    "maxLength": MAX_MATCHER,
    "pattern": r'^[A-Za-z_][A-Za-z0-9_]*(=|!=|=~|!~)"[\s\S]*"$',
}


def _report(operation: str, obj: str, params: Mapping[str, Any]) -> dict[str, Any]:
    required = list(params)
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["operation", "object", "result", "params"],
        "properties": {
            "operation": {"type": "string", "enum": [operation]},
            "object": {"type": "string", "pattern": obj},
            "result": _RESULT,
            "params": {
                "type": "object",
                "additionalProperties": False,
                "required": required,
                "properties": dict(params),
            },
        },
    }


OPERATIONS: dict[str, dict[str, Any]] = {
    "silence.add": _report(
        "silence.add",
        f"^({SILENCE_ID})?$",
        {
            "matchers": {
                "type": "array",
                "minItems": 1,
                "maxItems": MAX_MATCHERS,
                "items": _MATCHER,
            },
            "startsAt": _DATE_TIME,
            "endsAt": _DATE_TIME,
            "author": _AUTHOR,
            "comment": {"type": "string", "minLength": 1, "maxLength": MAX_COMMENT},
        },
    ),
    "silence.expire": _report("silence.expire", f"^{SILENCE_ID}$", {"author": _AUTHOR}),
}
REPORT = {
    "description": "An operator action done outside the scheduler, one of a closed list",
    "anyOf": list(OPERATIONS.values()),
}


def audit_object(body: Mapping[str, Any]) -> str:
    """What the record is on: ``silence/<id>``, or ``silence`` before Alertmanager named it."""
    kind = str(body["operation"]).partition(".")[0]
    return f"{kind}/{body['object']}" if body["object"] else kind
