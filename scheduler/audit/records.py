"""Audit records: what a caller records, what is stored, and the hash that chains them.

Every record carries ``prev_hash`` (the hash of the record before it) and
``hash`` = SHA-256 over its own content, its sequence number and ``prev_hash``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from operator import attrgetter
from typing import Any

from scheduler.audit.errors import AuditQueryError

GENESIS = "0" * 64

FIELDS = (
    "seq",
    "ts",
    "time",
    "user",
    "source_ip",
    "object",
    "operation",
    "params",
    "result",
    "reason",
    "correlation_id",
    "prev_hash",
    "hash",
)


@dataclass(frozen=True)
class AuditEntry:
    """What a caller records; the log adds time, sequence number and hashes."""

    user: str
    source_ip: str
    object: str
    operation: str
    result: str
    reason: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    correlation_id: str = ""


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    ts: float
    user: str
    source_ip: str
    object: str
    operation: str
    params: str  # canonical JSON, exactly as hashed
    result: str
    reason: str
    correlation_id: str
    prev_hash: str
    hash: str

    def row(self) -> tuple[Any, ...]:
        """The record as stored: one value per column, in column order."""
        return ROW(self)

    def expected_hash(self) -> str:
        """The hash this record must carry: every other field, chained to ``prev_hash``."""
        return record_hash(*self.row()[:-1])

    def as_dict(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "ts": self.ts,
            "time": iso_time(self.ts),
            "user": self.user,
            "source_ip": self.source_ip,
            "object": self.object,
            "operation": self.operation,
            "params": json.loads(self.params),
            "result": self.result,
            "reason": self.reason,
            "correlation_id": self.correlation_id,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        }


# The table's columns are AuditRecord's fields, in order: one definition for
# the hash input, the stored row and both statements. (The names are our own
# field names, never input, so building the SQL from them is safe.)


# The table's columns are AuditRecord's fields, in order: one definition for
# the hash input, the stored row and both statements. (The names are our own
# field names, never input, so building the SQL from them is safe.)
COLUMNS = tuple(f.name for f in fields(AuditRecord))
ROW = attrgetter(*COLUMNS)


def canonical_params(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, separators=(",", ":"), default=str)


def record_hash(
    seq: int,
    ts: float,
    user: str,
    source_ip: str,
    obj: str,
    operation: str,
    params: str,
    result: str,
    reason: str,
    correlation_id: str,
    prev_hash: str,
) -> str:
    # Each field length-prefixed: boundaries stay unambiguous ("ab","c" != "a","bc")
    # whatever the fields contain, and it is several times cheaper than a JSON encoding.
    parts = (str(seq), repr(ts), user, source_ip, obj, operation, params, result, reason,
             correlation_id)  # fmt: skip
    body = "".join(f"{len(p)}:{p}" for p in parts)
    return hashlib.sha256(f"{prev_hash}:{body}".encode()).hexdigest()


def iso_time(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def parse_time(value: str | float | None) -> float | None:
    """Unix seconds from a number, a numeric string or an ISO 8601 time (naive means UTC)."""
    if value is None or isinstance(value, float | int):
        return None if value is None else float(value)
    text = value.strip()
    try:
        return float(text)
    except ValueError:
        pass
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise AuditQueryError(f"not a time: {value!r} (ISO 8601 or unix seconds)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def row_of(r: tuple[Any, ...]) -> AuditRecord:
    return AuditRecord(*r)
