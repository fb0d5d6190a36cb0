"""The one Actuator interface: carry out recorded decisions, report what the world did.

The runtime calls ``apply`` for every decision *after* the store has made it
durable, and again after a restart for decisions that were recorded but not
confirmed as actuated, so ``apply`` must be idempotent. What the world does in
return (a victim saved its checkpoint and let go of its GPUs, a node joined a
pool) comes back through ``poll`` as ``Feedback``.

``Autoscaler`` is the part of the interface elastic scaling goes through.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from enum import StrEnum

from scheduler.core.model import Decision, JobView


class FeedbackKind(StrEnum):
    CHECKPOINT = "checkpoint"  # job saved a checkpoint at ``at``
    ACK = "ack"  # preempted job has let go of its GPUs
    NODE_ADDED = "node_added"  # a node (``node``, ``gpus``) joined ``pool``


@dataclass(frozen=True)
class Feedback:
    kind: FeedbackKind
    job: str = ""
    at: float | None = None
    pool: str = ""
    node: str = ""
    gpus: tuple[str, ...] = ()


class Autoscaler(abc.ABC):
    """Where scale decisions go: ask for nodes in a pool, or give an idle one back."""

    @abc.abstractmethod
    def scale_up(self, pool: str, nodes: int, correlation_id: str) -> None: ...

    @abc.abstractmethod
    def scale_down(self, pool: str, node: str, correlation_id: str) -> None: ...


class Actuator(Autoscaler):
    """Carries out decisions. ``job`` is the decision's job as it stands after the decision."""

    @abc.abstractmethod
    def apply(self, decision: Decision, job: JobView | None) -> None: ...

    def acts_on(self, decision: Decision) -> bool:
        """False when ``apply`` changes nothing outside the scheduler for this decision (it
        only records it). The runtime then stores the decision as actuated at once: a
        crash before ``apply`` loses nothing, so there is nothing to confirm or replay."""
        return True

    @abc.abstractmethod
    def poll(self, now: float) -> list[Feedback]: ...

    def close(self) -> None:
        """Release resources (connections); the default holds none."""
