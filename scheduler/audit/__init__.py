"""The tamper-evident audit log (see ``scheduler.audit.log`` for the chain and its guarantees).

Errors: ``AuditError`` is the base; ``AuditUnavailable`` means "not written now,
retry" (the webhook answers 503), ``AuditQueryError`` a bad query argument,
``AuditUnreadable`` a file that is missing, corrupt or not an audit log.
Modules: ``records`` (what a record is, its hash), ``schema`` (the database and
its triggers), ``log`` (writing, retention), ``verify``, ``export``.
"""

from scheduler.audit.errors import AuditError, AuditQueryError, AuditUnavailable, AuditUnreadable
from scheduler.audit.export import EXPORT_FORMATS, export, iter_export
from scheduler.audit.log import AuditLog
from scheduler.audit.records import AuditEntry, AuditRecord, parse_time
from scheduler.audit.verify import ChainPoint, VerifyResult, verify

__all__ = [
    "EXPORT_FORMATS",
    "AuditEntry",
    "AuditError",
    "AuditLog",
    "AuditQueryError",
    "AuditRecord",
    "AuditUnavailable",
    "AuditUnreadable",
    "ChainPoint",
    "VerifyResult",
    "export",
    "iter_export",
    "parse_time",
    "verify",
]
