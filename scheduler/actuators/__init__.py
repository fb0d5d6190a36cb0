"""Actuators: one interface (``base.Actuator``), a simulated and a Kubernetes implementation."""

from scheduler.actuators.base import Actuator, Autoscaler, Feedback, FeedbackKind
from scheduler.actuators.simulated import SimulatedActuator

__all__ = ["Actuator", "Autoscaler", "Feedback", "FeedbackKind", "SimulatedActuator"]
