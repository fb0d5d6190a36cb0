"""The alerts package's one exception tree.

``AlertsError`` is the base; callers that generate artefacts catch it to report
a stack that cannot be turned into rules or routing.
"""

from __future__ import annotations


class AlertsError(ValueError):
    """The stack cannot be turned into valid rules or Alertmanager/Prometheus config."""


class DurationError(AlertsError):
    """A duration cannot be written as a Prometheus duration (negative or below 1 ms)."""
