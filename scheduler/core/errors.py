"""The scheduler's one exception tree.

``SchedulerError`` is the base. The HTTP layer maps ``UnknownPool``/``UnknownJob``
to 404, ``InvalidRequest`` to 400/422 and ``Conflict`` to 409; ``StoreUnavailable``
means the decision could not be made durable and maps to 503 so that
Alertmanager retries the notification; ``ActuatorError`` means the decision is
recorded but could not be carried out (it is retried after a restart).

Owns: nothing. May call: nothing in the core.
"""

from __future__ import annotations


class SchedulerError(Exception):
    """Base of every error the scheduler raises on purpose."""


class UnknownPool(SchedulerError):
    """The named pool is not in the stack."""


class UnknownJob(SchedulerError):
    """No job has that id."""


class InvalidRequest(SchedulerError):
    """A request that can never succeed as written (bad field, impossible size)."""


class Conflict(SchedulerError):
    """A request that clashes with the current state (duplicate job id, job already finished)."""


class StoreUnavailable(SchedulerError):
    """The SQLite store could not persist a decision; nothing was actuated."""


class ActuatorError(SchedulerError):
    """An actuator could not apply a recorded decision."""
