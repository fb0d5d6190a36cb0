"""POST /api/v1/audit/records: operator actions done elsewhere (silences), recorded as the
caller, from a closed list, bounded, and written to the chain before the answer."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from service_testkit import USERS, Env, auth

from scheduler.audit import AuditUnavailable, verify
from scheduler.service.reports import (
    AUDIT_RECORDS_PATH,
    MAX_AUTHOR,
    MAX_COMMENT,
    MAX_MATCHER,
    MAX_MATCHERS,
    REASON,
)

SID = "5c7a0e1f-2b3d-4c5e-8f90-a1b2c3d4e5f6"
ADD: dict[str, Any] = {
    "operation": "silence.add",
    "object": "",
    "result": "requested",
    "params": {
        "matchers": ['node="gpu-node-3"', 'alertname=~"NovabrainGpu.*"'],
        "startsAt": "2026-11-28T09:15:00.123456+00:00",
        "endsAt": "2026-11-28T12:15:00.123456+00:00",
        "author": "li.wei",
        "comment": "CHG-1234 power upgrade",
    },
}
EXPIRE: dict[str, Any] = {
    "operation": "silence.expire",
    "object": SID,
    "result": "ok",
    "params": {"author": "li.wei"},
}


def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """``body`` with the field at ``path`` (dotted) set to ``value`` (deleted if ``...``)."""
    out = copy.deepcopy(body)
    *parents, last = path.split(".")
    node = out
    for p in parents:
        node = node[p]
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return out


async def _post(env: Env, body: Any, role: str = "operator") -> tuple[int, Any]:
    r = await env.client.post(AUDIT_RECORDS_PATH, json=body, headers=auth(role))
    return r.status, await r.json()


async def test_a_reported_silence_is_recorded_as_the_caller_before_the_answer(env: Env) -> None:
    status, reply = await _post(env, ADD)
    assert status == 201, reply
    # Written before the answer: on disk now, not after a flush.
    (rec,) = env.service.audit.query(operation="silence.add")
    assert (rec.user, rec.source_ip) == (USERS["operator"], "127.0.0.1")
    assert (rec.object, rec.result, rec.reason) == ("silence", "requested", REASON)
    assert rec.correlation_id == reply["correlation_id"]
    assert rec.params == (
        '{"author":"li.wei","comment":"CHG-1234 power upgrade","endsAt":'
        '"2026-11-28T12:15:00.123456+00:00","matchers":["node=\\"gpu-node-3\\"",'
        '"alertname=~\\"NovabrainGpu.*\\""],"startsAt":"2026-11-28T09:15:00.123456+00:00"}'
    )
    done = _with(_with(ADD, "object", SID), "result", "ok")
    assert (await _post(env, done, "admin"))[0] == 201
    assert (await _post(env, EXPIRE))[0] == 201
    recs = env.service.audit.query(operation="silence.add") + env.service.audit.query(
        operation="silence.expire"
    )
    assert [(r.operation, r.object, r.result, r.user) for r in recs] == [
        ("silence.add", "silence", "requested", USERS["operator"]),
        ("silence.add", f"silence/{SID}", "ok", USERS["admin"]),
        ("silence.expire", f"silence/{SID}", "ok", USERS["operator"]),
    ]
    # No second record of the request itself: the report is the record.
    assert env.service.audit.query(operation="audit.record") == []
    assert verify(env.service.audit.path).ok


BAD: dict[str, dict[str, Any]] = {
    "who, named in the body": _with(ADD, "user", "ops-alice"),
    "where from, named in the body": _with(ADD, "source_ip", "10.0.0.1"),
    "who, named in params": _with(ADD, "params.user", "ops-alice"),
    "an operation off the list": _with(ADD, "operation", "silence.delete"),
    "a scheduler operation": _with(ADD, "operation", "pools.rebalance"),
    "the log's own operation": _with(ADD, "operation", "audit.purge"),
    "a decision": _with(ADD, "operation", "decision.preempt"),
    "a result off the list": _with(ADD, "result", "denied"),
    "an object that is not a silence id": _with(ADD, "object", "../../pools/p0-risk"),
    "an expire without its silence": _with(EXPIRE, "object", ""),
    "an expire with an add's params": _with(EXPIRE, "params", ADD["params"]),
    "an add with an expire's params": _with(ADD, "params", EXPIRE["params"]),
    "no comment": _with(ADD, "params.comment", ...),
    "an empty comment": _with(ADD, "params.comment", ""),
    "a comment too long": _with(ADD, "params.comment", "x" * (MAX_COMMENT + 1)),
    "an author too long": _with(EXPIRE, "params.author", "x" * (MAX_AUTHOR + 1)),
    "no matchers": _with(ADD, "params.matchers", []),
    "too many matchers": _with(ADD, "params.matchers", ['a="b"'] * (MAX_MATCHERS + 1)),
    "a matcher too long": _with(ADD, "params.matchers", ['a="' + "b" * MAX_MATCHER + '"']),
    "a matcher that is not one": _with(ADD, "params.matchers", ["node=gpu-node-3"]),
    "a matcher that is not a string": _with(ADD, "params.matchers", [{"name": "node"}]),
    "a start that is not a time": _with(ADD, "params.startsAt", "tomorrow"),
    "no result": _with(ADD, "result", ...),
    "a list": [ADD],
    "a string": "silence.add",
}


@pytest.mark.parametrize("what", list(BAD))
async def test_anything_else_is_a_400_and_records_nothing_it_says(env: Env, what: str) -> None:
    status, reply = await _post(env, BAD[what])
    assert status == 400, (what, reply)
    assert reply["error"] == "invalid request"
    (rec,) = env.service.audit.query()
    # The refused request is audited as itself, without the body it could not validate.
    assert (rec.operation, rec.result, rec.params) == ("audit.record", "error", "{}")
    assert rec.user == USERS["operator"] and rec.reason.startswith("400")


async def test_denied_callers_are_audited_and_record_nothing(env: Env) -> None:
    for role, code in (("viewer", 403), ("alertmanager", 403)):
        assert (await _post(env, ADD, role))[0] == code
    r = await env.client.post(AUDIT_RECORDS_PATH, json=ADD)
    assert r.status == 401
    recs = env.service.audit.query()
    assert {(r.operation, r.result, r.user) for r in recs} == {
        ("audit.record", "denied", USERS["viewer"]),
        ("audit.record", "denied", USERS["alertmanager"]),
        ("audit.record", "denied", "anonymous"),
    }


async def test_no_record_no_2xx(env: Env) -> None:
    """The audit log cannot be written: 503, so the client does not act; the record kept
    for the retry says what the caller was answered."""
    append = env.service.audit.append_many

    def down(entries):  # type: ignore[no-untyped-def]
        raise AuditUnavailable("disk full")

    env.service.audit.append_many = down  # type: ignore[method-assign]
    r = await env.client.post(AUDIT_RECORDS_PATH, json=ADD, headers=auth("operator"))
    assert r.status == 503 and r.headers["Retry-After"] == "1"
    assert env.service.audit.query(operation="silence.add") == []
    env.service.audit.append_many = append  # type: ignore[method-assign]
    assert (await _post(env, EXPIRE))[0] == 201  # the next write takes the held record first
    held, expired = env.service.audit.query()
    assert (held.operation, held.result) == ("silence.add", "error")
    assert held.reason == "503 storage unavailable: audit log"
    assert (expired.operation, expired.result) == ("silence.expire", "ok")
