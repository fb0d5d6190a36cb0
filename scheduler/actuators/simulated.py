"""The embedded default actuator: a simulated cluster that does what it is told.

A preempted job saves a checkpoint (if it can) ``checkpoint_seconds`` after it
is signalled, then lets go of its GPUs, well inside its grace period; so in the
demo GPUs move within seconds of a P0 alert. Scale-up adds nodes at once, named
after the decision that asked for them (``<pool>-<decision id>-<n>``, GPU uuids
derived from the name): deterministic, and unique across restarts, since
decision ids are; a node the scheduler already knows would be refused. Everything
applied is kept in ``log`` so that tests can see what was actuated, and in which order.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from scheduler.actuators.base import Actuator, Feedback, FeedbackKind
from scheduler.core.model import Action, Decision, JobView

# The decisions the simulated cluster carries out; the others change nothing outside the core.
_ACTED_ON = frozenset({Action.PREEMPT, Action.SCALE_UP, Action.SCALE_DOWN})

DEFAULT_CHECKPOINT_SECONDS = 1.0


class SimulatedActuator(Actuator):
    def __init__(
        self,
        clock: Callable[[], float],
        *,
        checkpoint_seconds: float = DEFAULT_CHECKPOINT_SECONDS,
        gpus_per_node: int = 8,
        cluster_name: str = "novabrain",
    ) -> None:
        self._clock = clock
        self.checkpoint_seconds = checkpoint_seconds
        self._gpus_per_node = gpus_per_node
        self._cluster = cluster_name
        self._acks: dict[str, tuple[float, bool]] = {}  # job -> (due, checkpointable)
        self._pending: list[Feedback] = []
        self._nodes_added = 0
        self.applied: set[str] = set()
        self.log: list[Decision] = []

    def acts_on(self, decision: Decision) -> bool:
        return not decision.dry_run and decision.action in _ACTED_ON

    def apply(self, decision: Decision, job: JobView | None) -> None:
        if decision.id in self.applied:
            return  # idempotent: a replay after a restart changes nothing
        self.applied.add(decision.id)
        self.log.append(decision)
        if decision.action == Action.PREEMPT and not decision.dry_run and job is not None:
            due = self._clock() + self.checkpoint_seconds
            self._acks[job.id] = (due, job.checkpointable)
        elif decision.action == Action.SCALE_UP and not decision.dry_run:
            self._add_nodes(
                decision.pool, max(1, decision.gpus // self._gpus_per_node), decision.id
            )
        elif decision.action == Action.SCALE_DOWN and not decision.dry_run:
            for node in decision.nodes:
                self.scale_down(decision.pool, node, decision.correlation_id)

    def scale_up(self, pool: str, nodes: int, correlation_id: str) -> None:
        # Asked directly, not by a decision: a name no other process start can repeat.
        self._add_nodes(pool, nodes, f"scaled-{uuid.uuid4().hex[:12]}")

    def _add_nodes(self, pool: str, nodes: int, name: str) -> None:
        for i in range(nodes):
            self._nodes_added += 1
            node = f"{pool}-{name}-{i}"
            gpus = tuple(
                "GPU-"
                + str(uuid.uuid5(uuid.NAMESPACE_URL, f"novabrain://{self._cluster}/{node}/{i}"))
                for i in range(self._gpus_per_node)
            )
            self._pending.append(Feedback(FeedbackKind.NODE_ADDED, pool=pool, node=node, gpus=gpus))

    def scale_down(self, pool: str, node: str, correlation_id: str) -> None:
        # The simulated node simply disappears; the core has already dropped it.
        return None

    def poll(self, now: float) -> list[Feedback]:
        out, self._pending = self._pending, []
        for job_id, (due, checkpointable) in sorted(self._acks.items()):
            if due <= now:
                if checkpointable:
                    out.append(Feedback(FeedbackKind.CHECKPOINT, job=job_id, at=due))
                out.append(Feedback(FeedbackKind.ACK, job=job_id))
                del self._acks[job_id]
        return out
