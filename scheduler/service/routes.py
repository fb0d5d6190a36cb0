"""The one table of endpoints: path, method, permission, parameters and body schema.

The router, the RBAC middleware, the audit middleware and the OpenAPI document
are all built from ``ROUTES``; an endpoint cannot exist without declaring who
may call it, and the spec cannot drift from what is served. Request bodies and
query parameters are validated against the same JSON Schemas the spec
publishes (``scheduler.service.validation``: the subset of JSON Schema the table uses).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deploy.stack import POLICY_BOUNDS
from exporters.exposition import CONTENT_TYPES
from scheduler.service.auth import Permission
from scheduler.service.payload import MAX_ALERTS, MAX_STRING
from scheduler.service.reports import AUDIT_RECORDS_PATH, REPORT

API = "/api/v1"
ALERTS_PATH = f"{API}/alerts"
OPENAPI_PATH = f"{API}/openapi.json"

_ID = {"type": "string", "minLength": 1, "maxLength": 128, "pattern": r"^[A-Za-z0-9._:-]+$"}
_POOL = {"type": "string", "minLength": 1, "maxLength": 63, "pattern": r"^[a-z0-9-]+$"}
_TIME = {
    "description": "An RFC 3339 date-time, or unix seconds",
    "anyOf": [
        {"type": "string", "format": "date-time", "maxLength": 40},
        {"type": "string", "pattern": r"^[0-9]{1,12}(\.[0-9]{1,6})?$"},
    ],
}
_OBJECT = {"type": "object"}
# A place in the audit chain, SEQ:HASH: a published head, or where a purge left the chain.
_CHAIN_POINT = {"type": "string", "pattern": r"^[0-9]{1,18}:[0-9a-f]{64}$"}
_LIST = {"type": "array", "items": {"type": "object"}}
# What /metrics answers, by the scraper's Accept header (exporters.exposition.negotiation):
# the media types, without their version and charset parameters.
METRICS_TYPES = tuple(t.split(";")[0] for t in CONTENT_TYPES.values())

JOB_REQUEST = {
    "type": "object",
    "additionalProperties": False,
    "required": ["id", "pool", "gpus"],
    "properties": {
        "id": _ID,
        "pool": _POOL,
        "gpus": {"type": "integer", "minimum": 1, "maximum": 4096},
        "kind": {"type": "string", "enum": ["inference", "training", "batch"]},
        "preemptible": {"type": "boolean"},
        "checkpointable": {"type": "boolean"},
        "grace_seconds": {"type": "number", "minimum": 0, "maximum": 86400},
        "duration_seconds": {"type": "number", "minimum": 0, "maximum": 31536000},
    },
}
CHECKPOINT = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"at": {"type": "number", "minimum": 0, "maximum": 1e11}},
}
REBALANCE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["gpus"],
    "properties": {"gpus": {"type": "integer", "minimum": 1, "maximum": 4096}},
}
SCALE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["delta_nodes"],
    "properties": {
        "delta_nodes": {
            "description": "Nodes to add (positive) or remove (negative); never 0",
            "anyOf": [
                {"type": "integer", "minimum": 1, "maximum": 1000},
                {"type": "integer", "minimum": -1000, "maximum": -1},
            ],
        }
    },
}
# The bounds are the stack file's (deploy.stack.POLICY_BOUNDS): a value the API
# takes, the stack takes too, and the other way round.
POLICY_PATCH = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "properties": {
        **{
            k: {
                "type": "integer" if b.integer else "number",
                "minimum": b.min,
                "maximum": b.max,
            }
            for k, b in POLICY_BOUNDS.items()
            if k != "scale_up_wait_seconds"  # set in the stack only
        },
        "dry_run": {"type": "boolean"},
    },
}
_TEXT = {"type": "string", "maxLength": MAX_STRING}
_STRMAP = {"type": "object", "additionalProperties": _TEXT}
_DATE_TIME = {"type": "string", "format": "date-time", "maxLength": 40}
_AM_ALERT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["status", "labels", "startsAt", "fingerprint"],
    "properties": {
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "labels": _STRMAP,
        "annotations": _STRMAP,
        "startsAt": _DATE_TIME,
        "endsAt": _DATE_TIME,
        "generatorURL": _TEXT,
        "fingerprint": {"type": "string", "pattern": "^[0-9a-f]{1,64}$"},
    },
}
# For the spec: the webhook body is checked by scheduler.service.payload, to the same
# rules (a test holds the two together).
ALERTMANAGER_V4 = {
    "type": "object",
    "additionalProperties": False,
    "required": ["version", "groupKey", "status", "receiver", "alerts"],
    "properties": {
        "version": {"type": "string", "enum": ["4"]},
        "groupKey": _TEXT,
        "truncatedAlerts": {"type": "integer", "minimum": 0},
        "status": {"type": "string", "enum": ["firing", "resolved"]},
        "receiver": _TEXT,
        "groupLabels": _STRMAP,
        "commonLabels": _STRMAP,
        "commonAnnotations": _STRMAP,
        "externalURL": _TEXT,
        "alerts": {"type": "array", "minItems": 1, "maxItems": MAX_ALERTS, "items": _AM_ALERT},
    },
}


@dataclass(frozen=True)
class Param:
    name: str
    where: str  # "path" or "query"
    schema: Mapping[str, Any]
    required: bool = False


@dataclass(frozen=True)
class Route:
    name: str  # the operationId, the audit operation and the metrics route label
    method: str
    path: str
    permission: Permission | None  # None: public (health, metrics, the spec)
    summary: str
    params: tuple[Param, ...] = ()
    body: Mapping[str, Any] | None = None
    response: Mapping[str, Any] = field(default_factory=lambda: _OBJECT)
    response_types: tuple[str, ...] = ("application/json",)
    status: int = 200  # of a success
    audited: bool = True  # health, metrics and the spec carry no data worth a record

    @property
    def mutating(self) -> bool:
        return self.method != "GET"


_JOB_ID = Param("job_id", "path", _ID, True)
_POOL_P = Param("pool", "path", _POOL, True)
_AUDIT_FILTERS = (
    Param("since", "query", _TIME),
    Param("until", "query", _TIME),
    Param("user", "query", {"type": "string", "maxLength": 128}),
    Param("operation", "query", {"type": "string", "maxLength": 128}),
)

ROUTES: tuple[Route, ...] = (
    Route("healthz", "GET", "/healthz", None, "Liveness and queue depth", audited=False),
    Route(
        "metrics",
        "GET",
        "/metrics",
        None,
        "Prometheus metrics: the classic text format, or OpenMetrics when Accept asks for it",
        response={"type": "string"},
        response_types=METRICS_TYPES,
        audited=False,
    ),
    Route("openapi", "GET", OPENAPI_PATH, None, "This OpenAPI document", audited=False),
    Route(
        "alerts.receive",
        "POST",
        ALERTS_PATH,
        Permission.ALERTS_WRITE,
        "Alertmanager webhook (v4): persisted, deduplicated, acted on asynchronously",
        body=ALERTMANAGER_V4,
    ),
    Route("pools.list", "GET", f"{API}/pools", Permission.READ, "Pools", response=_LIST),
    Route(
        "pools.rebalance",
        "POST",
        f"{API}/pools/{{pool}}/rebalance",
        Permission.POOLS_OPERATE,
        "Move GPUs to this pool by hand (preempting lower-priority work)",
        params=(_POOL_P,),
        body=REBALANCE,
    ),
    Route(
        "pools.scale",
        "POST",
        f"{API}/pools/{{pool}}/scale",
        Permission.POOLS_OPERATE,
        "Add (positive) or remove (negative) nodes by hand",
        params=(_POOL_P,),
        body=SCALE,
    ),
    Route(
        "jobs.list",
        "GET",
        f"{API}/jobs",
        Permission.READ,
        "Jobs, optionally by pool and state",
        params=(
            Param("pool", "query", _POOL),
            Param(
                "state",
                "query",
                {
                    "type": "string",
                    "enum": [
                        "queued",
                        "running",
                        "preempting",
                        "requeued",
                        "completed",
                        "cancelled",
                    ],
                },
            ),
        ),
        response=_LIST,
    ),
    Route(
        "jobs.submit",
        "POST",
        f"{API}/jobs",
        Permission.JOBS_WRITE,
        "Submit a job",
        body=JOB_REQUEST,
    ),
    Route(
        "jobs.cancel",
        "DELETE",
        f"{API}/jobs/{{job_id}}",
        Permission.JOBS_WRITE,
        "Cancel a job",
        params=(_JOB_ID,),
    ),
    Route(
        "jobs.checkpoint",
        "POST",
        f"{API}/jobs/{{job_id}}/checkpoint",
        Permission.JOBS_REPORT,
        "A job (or its sidecar) saved a checkpoint: less work is lost if it is preempted",
        params=(_JOB_ID,),
        body=CHECKPOINT,
    ),
    Route(
        "jobs.preemption_ack",
        "POST",
        f"{API}/jobs/{{job_id}}/preemption-ack",
        Permission.JOBS_REPORT,
        "A preempted job saved its checkpoint: its GPUs go back before the grace period ends",
        params=(_JOB_ID,),
    ),
    Route("queues.list", "GET", f"{API}/queues", Permission.READ, "Queues", response=_LIST),
    Route(
        "decisions.list",
        "GET",
        f"{API}/decisions",
        Permission.READ,
        "Recent decisions, newest last",
        params=(Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 10000}),),
        response=_LIST,
    ),
    Route(
        "reservations.list",
        "GET",
        f"{API}/reservations",
        Permission.READ,
        "Reservations",
        response=_LIST,
    ),
    Route("policy.get", "GET", f"{API}/policy", Permission.READ, "The scheduling policy"),
    Route(
        "policy.update",
        "PATCH",
        f"{API}/policy",
        Permission.POLICY_WRITE,
        "Change policy fields",
        body=POLICY_PATCH,
    ),
    Route(
        "audit.query",
        "GET",
        f"{API}/audit",
        Permission.AUDIT_READ,
        "Audit records (since inclusive, until exclusive), oldest first",
        params=(
            *_AUDIT_FILTERS,
            Param("correlation_id", "query", {"type": "string", "maxLength": 128}),
            Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 10000}),
        ),
        response=_LIST,
    ),
    Route(
        "audit.export",
        "GET",
        f"{API}/audit/export",
        Permission.AUDIT_READ,
        "Audit records as CSV or JSON Lines",
        params=(
            *_AUDIT_FILTERS,
            Param("format", "query", {"type": "string", "enum": ["csv", "jsonl"]}),
        ),
        response={"type": "string"},
        response_types=("text/csv", "application/x-ndjson"),
    ),
    Route(
        "audit.record",
        "POST",
        AUDIT_RECORDS_PATH,
        Permission.AUDIT_RECORD,
        "Record an operator action done outside the scheduler (a silence in Alertmanager), "
        "as the caller; written to the audit log before the answer",
        body=REPORT,
        status=201,
    ),
    Route(
        "audit.verify",
        "GET",
        f"{API}/audit/verify",
        Permission.AUDIT_READ,
        "Verify the audit hash chain (with its archive) and say which record was tampered with",
        params=(
            Param("head", "query", _CHAIN_POINT),
            Param("first", "query", _CHAIN_POINT),
        ),
    ),
)


# ---------------------------------------------------------------------- OpenAPI


def _responses(r: Route) -> dict[str, Any]:
    ok = {
        "description": "OK",
        "content": {t: {"schema": dict(r.response)} for t in r.response_types},
    }
    err = {
        "description": "Error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }
    out: dict[str, Any] = {str(r.status): ok}
    if r.body is not None or r.params:
        out["400"] = err
    if r.body is not None:
        out["413"] = err
    if r.permission is not None:
        out["401"] = err
        out["403"] = err
        out["404"] = err
        out["409"] = err
        out["503"] = err
    if r.permission is not None:
        # Over a caller's rate limit (Retry-After). Alertmanager itself gets a 503 instead:
        # it never retries a 4xx.
        out["429"] = err
    if r.name == "healthz":
        out["503"] = err  # the intent worker is not running: restart the process
    return out


def openapi() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for r in ROUTES:
        op: dict[str, Any] = {
            "operationId": r.name,
            "summary": r.summary,
            "x-permission": r.permission.value if r.permission else "public",
            "responses": _responses(r),
        }
        op["security"] = [{"bearer": []}, {"basic": []}] if r.permission else []
        if r.params:
            op["parameters"] = [
                {"name": p.name, "in": p.where, "required": p.required, "schema": dict(p.schema)}
                for p in r.params
            ]
        if r.body is not None:
            op["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": dict(r.body)}},
            }
        paths.setdefault(r.path, {})[r.method.lower()] = op
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "NovaBrain scheduler",
            "version": "1",
            "description": "Alertmanager webhook and scheduler API. Every operation names the "
            "permission it needs in x-permission; roles: viewer, operator, admin, alertmanager.",
        },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "basic": {"type": "http", "scheme": "basic"},
            },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}, "reason": {"type": "string"}},
                }
            },
        },
    }
