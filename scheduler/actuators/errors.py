"""What an actuator raises when it cannot be set up, in the scheduler's one exception tree.

``ActuatorConfigError``: an actuator that cannot be built from what it was
given (no Kubernetes credentials, an unreadable kubeconfig). The user's to fix:
``novabrain scheduler`` prints it as one line and exits 2.
"""

from __future__ import annotations

from scheduler.core.errors import SchedulerError


class ActuatorConfigError(SchedulerError):
    """The actuator cannot be built from this configuration; the message says why."""
