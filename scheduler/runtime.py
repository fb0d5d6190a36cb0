"""The scheduler runtime: the policy core wrapped by the store, the actuator and the metrics.

Every call follows the same path, under one lock:

1. the pure core decides (timed, into the decision-duration histogram);
2. the decisions, the jobs they changed and the core's timers are written to
   SQLite in one transaction; if that fails the core is rebuilt from the store
   (memory never runs ahead of what is durable) and ``StoreUnavailable`` is raised;
3. only then are the decisions actuated, and marked actuated; one the actuator
   fails on stays recorded as unactuated and is retried on the next tick.

After a restart (``from_stack`` on an existing database) the core is restored
from the store and decisions that were recorded but never confirmed actuated
are replayed through the idempotent actuator: in-flight preemptions resume
exactly once, with their original grace deadlines.

Domain errors come from one tree, re-exported here: ``SchedulerError`` >
``UnknownPool``, ``UnknownJob``, ``InvalidRequest``, ``Conflict``,
``StoreUnavailable``, ``ActuatorError``.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from deploy.stack import Stack
from scheduler.actuators.base import Actuator, Feedback, FeedbackKind
from scheduler.actuators.simulated import SimulatedActuator
from scheduler.config import cluster_spec, policy_spec
from scheduler.core.engine import Scheduler
from scheduler.core.errors import (
    ActuatorError,
    Conflict,
    InvalidRequest,
    SchedulerError,
    StoreUnavailable,
    UnknownJob,
    UnknownPool,
)
from scheduler.core.model import (
    ClusterSpec,
    Decision,
    JobKind,
    JobRequest,
    JobState,
    PolicySpec,
    PoolView,
    ReservationView,
)
from scheduler.metrics import Accumulator, MetricsSnapshot, SchedulerCollector
from scheduler.store.sqlite import Actor, Store

__all__ = [
    "ActuatorError",
    "Conflict",
    "Decision",
    "InvalidRequest",
    "JobKind",
    "JobRequest",
    "SchedulerError",
    "SchedulerRuntime",
    "StoreUnavailable",
    "UnknownJob",
    "UnknownPool",
]

log = logging.getLogger(__name__)


class SchedulerRuntime:
    def __init__(
        self,
        cluster: ClusterSpec,
        policy: PolicySpec,
        *,
        db_path: str | Path,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
        actuator: Actuator | None = None,
    ) -> None:
        self._cluster = cluster
        self._policy = policy
        self._clock = clock
        self._lock = threading.RLock()
        self._store = Store(db_path)
        self.actuator: Actuator = actuator or SimulatedActuator(
            clock, gpus_per_node=cluster.gpus_per_new_node
        )
        self.accumulator = Accumulator()
        self._retry = False  # some recorded decision still waits for its actuation
        self._actor: Actor | None = None  # who causes the decisions of the call in progress
        self._feedback: list[Feedback] = []  # actuator news a failed tick must apply again
        self._core = self._load()
        registry.register(SchedulerCollector(self))
        self._replay()

    @classmethod
    def from_stack(
        cls,
        stack: Stack,
        *,
        db_path: str | Path,
        registry: CollectorRegistry,
        clock: Callable[[], float] = time.time,
        actuator: Actuator | None = None,
    ) -> SchedulerRuntime:
        cluster = cluster_spec(stack)
        if actuator is None:
            actuator = SimulatedActuator(
                clock, gpus_per_node=cluster.gpus_per_new_node, cluster_name=stack.name
            )
        return cls(
            cluster,
            policy_spec(stack),
            db_path=db_path,
            registry=registry,
            clock=clock,
            actuator=actuator,
        )

    # ------------------------------------------------------------------ plumbing

    def _load(self) -> Scheduler:
        jobs, meta = self._store.load()
        if meta is None:
            return Scheduler(self._cluster, self._policy, clock=self._clock)
        return Scheduler.restore(
            self._cluster, self._policy, clock=self._clock, jobs=jobs, meta=meta
        )

    def _replay(self) -> None:
        """Actuate what was recorded but not confirmed (a crash between commit and actuation)."""
        pending = self._store.unactuated()
        if pending:
            log.info("replaying %d recorded decisions through the actuator", len(pending))
            self._actuate(pending)

    def _run(
        self, action: str, fn: Callable[[], list[Decision]], *, force: bool = False
    ) -> list[Decision]:
        with self._lock:
            t0 = time.perf_counter()
            try:
                decisions = fn()
            finally:
                self.accumulator.time(action, time.perf_counter() - t0)
            self._commit(decisions, force=force)
            self._actuate(decisions)
            return decisions

    def _commit(self, decisions: Sequence[Decision], *, force: bool = False) -> None:
        """Write what the call changed; ``force``: the core's meta changed without any
        decision or job (a node joined), and must be written all the same."""
        jobs = self._core.take_dirty()
        if not decisions and not jobs and not force:
            return
        try:
            self._store.write(
                decisions,
                jobs,
                self._core.export_meta(),
                actuated={d.id for d in decisions if not self.actuator.acts_on(d)},
                actor=self._actor,
            )
        except StoreUnavailable:
            # Memory must not run ahead of the store: forget what was not written.
            self._core = self._load()
            raise
        self.accumulator.observe(decisions, jobs)

    def _actuate(self, decisions: Sequence[Decision]) -> None:
        done = []
        for d in decisions:
            job = None
            if d.job is not None:
                try:
                    job = self._core.job(d.job)
                except UnknownJob:
                    job = None
            try:
                self.actuator.apply(d, job)
            except ActuatorError as e:
                # Recorded, not actuated: retried on the next tick (and after a restart).
                log.warning("actuator failed on %s (%s): %s", d.id, d.action, e)
                self._retry = True
                continue
            if self.actuator.acts_on(d):
                done.append(d.id)
        if done:
            self._store.mark_actuated(done)

    # ------------------------------------------------------------------ contract

    def seed(self, jobs: Sequence[JobRequest]) -> list[Decision]:
        return self._run("seed", lambda: self._core.seed(jobs))

    def on_alert(
        self,
        *,
        pool: str,
        action: str,
        firing: bool,
        correlation_id: str,
        model: str = "",
        rate_rps: float | None = None,
    ) -> list[Decision]:
        """An alert for ``pool``; ``rate_rps``, ``model``'s request rate it carried, sizes
        P0's grant (None: ``rebalance_step_gpus``)."""
        return self._run(
            action,
            lambda: self._core.alert(
                pool=pool,
                action=action,
                firing=firing,
                correlation_id=correlation_id,
                model=model or None,
                rate_rps=rate_rps,
            ),
        )

    def report_load(self, model: str, rate_rps: float | None) -> list[Decision]:
        """``model``'s request rate as the load poller measured it (None: unknown now).

        The rate itself is not persisted (after a restart the next poll reports it again);
        a grant it causes (a firing pool whose load needs more) is, like any decision.
        """
        return self._run("load", lambda: self._core.report_load(model, rate_rps))

    def tick(self) -> list[Decision]:
        if self._retry:
            with self._lock:
                self._retry = False
                self._replay()
        with self._lock:
            feedback, self._feedback = self._feedback + self.actuator.poll(self._clock()), []
            joined = False

            def step() -> list[Decision]:
                nonlocal joined
                out: list[Decision] = []
                for fb in feedback:
                    if fb.kind is FeedbackKind.NODE_ADDED:
                        out += self._join(fb)
                        joined = True
                        continue
                    try:
                        if fb.kind is FeedbackKind.CHECKPOINT:
                            self._core.report_checkpoint(fb.job, fb.at)
                        elif fb.kind is FeedbackKind.ACK:
                            out += self._core.ack_preemption(fb.job)
                    except SchedulerError as e:
                        # Feedback about a job that moved on (cancelled, finished) is stale.
                        log.info("ignoring stale actuator feedback %s: %s", fb, e)
                out += self._core.tick()
                return out

            try:
                # A node's join is written in the same transaction as what it causes,
                # even when it causes no decision: capacity must survive a restart.
                return self._run("tick", step, force=bool(feedback))
            except StoreUnavailable:
                # Memory was rolled back to the store: the world's news is applied again
                # on the next tick, not lost (a joined node would be forgotten).
                self._feedback = feedback
                raise

    def _join(self, fb: Feedback) -> list[Decision]:
        """A node joined a pool; refusing it (a node or GPU known already) loses capacity that
        a scale-up was meant to add: an error, counted as a failed scale-up."""
        try:
            return self._core.add_node(fb.pool, fb.node, fb.gpus)
        except SchedulerError as e:
            log.error(
                "node %s did not join %s; the scale-up added nothing: %s", fb.node, fb.pool, e
            )
            self.accumulator.scale_failed(fb.pool)
            return []

    def serving_gpus(self, pool: str) -> int:
        with self._lock:
            return self._core.serving_gpus(pool)

    def gpu_assignments(self) -> Mapping[str, tuple[str, str]]:
        with self._lock:
            return self._core.gpu_assignments()

    def pools(self) -> list[PoolView]:
        with self._lock:
            return [self._core.pool_view(p) for p in self._core.pool_names()]

    def jobs(self, pool: str | None = None, state: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            if pool is not None:
                self._core.pool_view(pool)  # UnknownPool
            if state is not None and state not in {s.value for s in JobState}:
                raise InvalidRequest(f"unknown state {state!r}")
            return [
                j.to_dict()
                for j in self._core.iter_jobs()
                if (pool is None or j.pool == pool) and (state is None or j.state.value == state)
            ]

    def job(self, job_id: str) -> dict[str, Any]:
        with self._lock:
            return self._core.job(job_id).to_dict()

    def queues(self) -> list[dict[str, Any]]:
        with self._lock:
            now = self._clock()
            out = []
            for p in self._core.pool_names():
                entries = self._core.queue(p)
                out.append(
                    {
                        "pool": p,
                        "priority_class": self._core.priority_class(p),
                        "length": len(entries),
                        "jobs": [
                            {
                                "id": v.id,
                                "gpus": v.gpus,
                                "state": v.state.value,
                                "waited_seconds": now - v.queued_at,
                                "effective_priority": eff,
                                "held_gpus": len(v.held_gpu_ids),
                                "pending_victims": list(v.pending_victims),
                            }
                            for v, eff in entries
                        ],
                    }
                )
            return out

    def decisions(self, limit: int = 100) -> list[dict[str, Any]]:
        if limit < 1:
            raise InvalidRequest("limit must be >= 1")
        with self._lock:
            return [d.to_dict() for d in self._store.decisions(min(limit, 10_000))]

    def reservations(self) -> list[ReservationView]:
        with self._lock:
            return self._core.reservation_views()

    def submit_job(self, req: JobRequest, *, correlation_id: str = "") -> dict[str, Any]:
        return self.submit(req, correlation_id=correlation_id)[0]

    def submit(
        self, req: JobRequest, *, correlation_id: str = ""
    ) -> tuple[dict[str, Any], list[Decision]]:
        """Submit a job: the job as it stands, and the decisions its arrival caused (its
        placement, preemptions to reclaim lent GPUs)."""
        with self._lock:
            ds = self._run("submit", lambda: self._core.submit(req, correlation_id=correlation_id))
            return self._core.job(req.id).to_dict(), ds

    def cancel_job(self, job_id: str, *, correlation_id: str = "") -> list[Decision]:
        return self._run("cancel", lambda: self._core.cancel(job_id, correlation_id=correlation_id))

    def report_checkpoint(self, job_id: str, at: float | None = None) -> None:
        def step() -> list[Decision]:
            self._core.report_checkpoint(job_id, at)
            return []

        self._run("checkpoint", step)

    def ack_preemption(self, job_id: str) -> list[Decision]:
        return self._run("ack", lambda: self._core.ack_preemption(job_id))

    def manual_rebalance(self, pool: str, gpus: int, correlation_id: str) -> list[Decision]:
        return self._run(
            "rebalance", lambda: self._core.manual_rebalance(pool, gpus, correlation_id)
        )

    def manual_scale(self, pool: str, delta_nodes: int, correlation_id: str) -> list[Decision]:
        return self._run(
            "scale", lambda: self._core.manual_scale(pool, delta_nodes, correlation_id)
        )

    def set_policy(self, **fields: Any) -> list[Decision]:
        return self._run("set_policy", lambda: self._core.set_policy(**fields))

    def policy(self) -> dict[str, Any]:
        with self._lock:
            p = self._core.policy
            return {k: getattr(p, k) for k in p.__dataclass_fields__}

    @contextlib.contextmanager
    def acting_as(self, actor: Actor | None) -> Iterator[None]:
        """Calls inside are ``actor``'s doing: their decisions are stored with it (for their
        audit records, should a crash come before those are written). Holds the lock."""
        with self._lock:
            before, self._actor = self._actor, actor
            try:
                yield
            finally:
                self._actor = before

    def unaudited(self) -> list[tuple[Decision, Actor | None]]:
        """Decisions whose audit record is not known written, with who caused them."""
        with self._lock:
            return self._store.unaudited()

    def mark_audited(self, ids: Sequence[str]) -> None:
        """Their audit records are written (raises ``StoreUnavailable``)."""
        if ids:
            with self._lock:
                self._store.mark_audited(ids)

    def decisions_for(self, correlation_ids: Collection[str]) -> dict[str, list[Decision]]:
        with self._lock:
            return self._store.decisions_for(correlation_ids)

    def checkpoint(self) -> None:
        """Move the store's WAL into its database file (from a background thread; no lock:
        a checkpoint runs beside writers). Raises ``StoreUnavailable``."""
        self._store.checkpoint()

    def close(self) -> None:
        with self._lock:
            self.actuator.close()
            self._store.close()

    # ------------------------------------------------------------------ metrics

    def metrics_snapshot(self) -> MetricsSnapshot:
        with self._lock:
            now = self._clock()
            core = self._core
            names = tuple(core.pool_names())
            queues: dict[tuple[str, str], tuple[int, float]] = {}
            jobs: Counter[tuple[str, str]] = Counter()
            for p in names:
                prio = core.priority_class(p)
                length, queued_at = core.queue_stats(p)
                queues[(p, prio)] = (length, 0.0 if queued_at is None else now - queued_at)
                for s in JobState:
                    jobs[(p, s.value)] = 0
            jobs.update(core.job_counts())
            return MetricsSnapshot(
                pool_names=names,
                pools=tuple(core.pool_view(p) for p in names),
                assignments=core.gpu_assignments(),
                queues=queues,
                jobs=dict(jobs),
                reservations=tuple(core.reservation_views()),
                cycles_refused=core.cycles_refused,
            )

    @property
    def core(self) -> Scheduler:
        """The policy core, for tests and the simulator (not for the HTTP layer)."""
        return self._core
