"""The tamper-evident audit log (see ``scheduler.audit.log`` for the chain and its guarantees).

Errors: ``AuditError`` is the base; ``AuditUnavailable`` means "not written now,
retry" (the webhook answers 503), ``AuditQueryError`` a bad query argument.
"""

from scheduler.audit.log import (
    EXPORT_FORMATS,
    AuditEntry,
    AuditError,
    AuditLog,
    AuditQueryError,
    AuditRecord,
    AuditUnavailable,
    VerifyResult,
    export,
    iter_export,
    parse_time,
    verify,
)

__all__ = [
    "EXPORT_FORMATS",
    "AuditEntry",
    "AuditError",
    "AuditLog",
    "AuditQueryError",
    "AuditRecord",
    "AuditUnavailable",
    "VerifyResult",
    "export",
    "iter_export",
    "parse_time",
    "verify",
]
