"""The service's exception tree.

``ServiceError`` is the base. ``PayloadError`` is a request the sender must fix
(400, never retried by Alertmanager); ``IntentStoreUnavailable`` is transient
(503, retried).
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base of the scheduler service's errors."""


class PayloadError(ServiceError):
    """A webhook or API body that does not validate; the message names the field."""


class IntentStoreUnavailable(ServiceError):
    """The durable intent queue cannot be written now: the caller should retry."""
