"""Who is calling, and what each role may do.

Tokens live in the stack only as SHA-256 hashes. A presented token is hashed
and compared with every user's hash with ``hmac.compare_digest`` (no early exit,
so the time taken says nothing about which user or how many bytes matched).
The token itself is never stored, logged or audited; the audit log names the
user the hash belongs to.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from deploy.stack import User


class Permission(StrEnum):
    READ = "read"  # pools, jobs, queues, decisions, reservations, policy
    JOBS_WRITE = "jobs:write"  # submit and cancel jobs
    JOBS_REPORT = "jobs:report"  # checkpoints and preemption acks from jobs or their sidecars
    POOLS_OPERATE = "pools:operate"  # manual rebalance and scale
    POLICY_WRITE = "policy:write"
    AUDIT_READ = "audit:read"
    # Report an operator action done elsewhere (a silence) to the audit log, as oneself
    AUDIT_RECORD = "audit:record"
    ALERTS_WRITE = "alerts:write"  # the Alertmanager webhook


_OPERATOR = frozenset(
    {
        Permission.READ,
        Permission.JOBS_WRITE,
        Permission.JOBS_REPORT,
        Permission.POOLS_OPERATE,
        Permission.AUDIT_RECORD,
    }
)
ROLE_PERMISSIONS: Mapping[str, frozenset[Permission]] = {
    "viewer": frozenset({Permission.READ}),
    "operator": _OPERATOR,
    "admin": _OPERATOR | {Permission.POLICY_WRITE, Permission.AUDIT_READ},
    # Alertmanager may post alerts and nothing else: a leaked webhook credential
    # cannot read the cluster or move GPUs by hand.
    "alertmanager": frozenset({Permission.ALERTS_WRITE}),
}


@dataclass(frozen=True)
class Principal:
    name: str
    role: str

    def may(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS.get(self.role, frozenset())


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class Authenticator:
    """Maps an ``Authorization`` header to a ``Principal`` (or ``None``)."""

    def __init__(self, users: Iterable[User]) -> None:
        self._users = tuple(users)

    def _match(self, token: str) -> User | None:
        digest = hash_token(token).encode()
        found: User | None = None
        for u in self._users:
            # Every hash is compared, whatever matched before.
            if hmac.compare_digest(digest, u.token_sha256.encode()):
                found = u
        return found

    def authenticate(self, header: str | None) -> Principal | None:
        """``Bearer <token>`` or ``Basic base64(user:token)``; ``None`` when absent or wrong."""
        if not header:
            return None
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if not value:
            return None
        scheme = scheme.lower()
        if scheme == "bearer":
            u = self._match(value)
            return Principal(u.name, u.role) if u else None
        if scheme == "basic":
            try:
                decoded = base64.b64decode(value, validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError):
                return None
            name, sep, password = decoded.partition(":")
            if not sep:
                return None
            u = self._match(password)
            # The user name must be the token's owner: basic auth names who is calling.
            if u is None or not hmac.compare_digest(u.name.encode(), name.encode()):
                return None
            return Principal(u.name, u.role)
        return None
