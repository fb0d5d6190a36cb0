"""The model server's one exception tree."""

from __future__ import annotations


class ModelServerError(Exception):
    """Base of every error the simulator, its server and the load generator raise."""


class UnknownModel(ModelServerError, KeyError):
    """A model the stack does not declare (fault injection or capacity asked for it)."""


class PoolsUnavailable(ModelServerError):
    """The scheduler's pool list could not be read or understood."""
