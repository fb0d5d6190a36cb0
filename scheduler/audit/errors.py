"""The audit package's exception tree."""

from __future__ import annotations


class AuditError(Exception):
    """Base of the audit log's errors."""


class AuditUnavailable(AuditError):
    """The audit database cannot be written now (locked, read-only, disk full): retry later."""


class AuditQueryError(AuditError):
    """A query or export argument is invalid (bad time, unknown format)."""


class AuditUnreadable(AuditError):
    """The file is missing, empty, corrupt, or a database that is not an audit log: nothing
    can be said about tampering (``novabrain audit verify`` exits 2, not 1)."""
