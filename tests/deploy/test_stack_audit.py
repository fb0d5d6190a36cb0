"""The stack's audit section: retention defaults, the off-box copy, errors naming the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from deploy.stack import DEFAULT_STACK_PATH, AuditForward, StackError, parse_stack


def _with_audit(audit: Any) -> dict[str, Any]:
    doc = copy.deepcopy(yaml.safe_load(DEFAULT_STACK_PATH.read_text()))
    if audit is None:
        doc.pop("audit", None)
    else:
        doc["audit"] = audit
    return doc


def test_defaults_keep_a_year_with_three_months_online() -> None:
    audit = parse_stack(_with_audit(None)).audit
    assert (audit.retention_days, audit.online_days, audit.forward) == (365.0, 90.0, None)


@pytest.mark.parametrize(
    ("forward", "expected"),
    [
        ({"to": "syslog", "address": "logs.bank.internal:6514"},
         AuditForward("syslog", address="logs.bank.internal:6514")),
        ({"to": "syslog", "address": "[::1]:514"}, AuditForward("syslog", address="[::1]:514")),
        ({"to": "file", "path": "/var/log/novabrain/audit.jsonl"},
         AuditForward("file", path="/var/log/novabrain/audit.jsonl")),
    ],
)  # fmt: skip
def test_forwarding_to_syslog_or_a_file(forward: dict[str, str], expected: AuditForward) -> None:
    assert parse_stack(_with_audit({"forward": forward})).audit.forward == expected


@pytest.mark.parametrize(
    ("audit", "field", "words"),
    [
        ({"online_days": 0}, "audit.online_days", ">= 1"),
        ({"retention_days": 30}, "audit.retention_days", "must be >= online_days (90)"),
        ({"forward": {"to": "kafka"}}, "audit.forward.to", "must be one of syslog, file"),
        ({"forward": {"to": "syslog"}}, "audit.forward.address", "is required"),
        ({"forward": {"to": "syslog", "address": "no-port"}}, "audit.forward.address", "must match"),
        ({"forward": {"to": "file"}}, "audit.forward.path", "is required"),
        ({"forward": {"to": "file", "path": "/x", "address": "h:1"}}, "audit.forward.address",
         "unknown field"),
        ({"archive_days": 7}, "audit.archive_days", "unknown field"),
    ],
)  # fmt: skip
def test_errors_name_the_field(audit: dict[str, Any], field: str, words: str) -> None:
    with pytest.raises(StackError) as e:
        parse_stack(_with_audit(audit))
    assert e.value.path == field, str(e.value)
    assert words in str(e.value)
