"""Values the policy core works with: specs in, decisions and views out.

Everything here is a small frozen dataclass or an enum; the core's mutable
state lives in the records of ``scheduler.core.cluster`` and never leaves the core.

Owns: nothing (values only).
May call: nothing in the core.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum
from typing import ClassVar


class JobKind(StrEnum):
    INFERENCE = "inference"  # a stateless model-server replica: loses no work when stopped
    TRAINING = "training"
    BATCH = "batch"
    RESERVATION = "reservation"  # the capacity a reservation window holds for its pool


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PREEMPTING = "preempting"  # signalled, inside its grace period, still holds its GPUs
    REQUEUED = "requeued"  # preempted and waiting to resume from its last checkpoint
    COMPLETED = "completed"
    CANCELLED = "cancelled"


WAITING_STATES = frozenset({JobState.QUEUED, JobState.REQUEUED})
FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.CANCELLED})


# Decisions name what happened with these three enums. They are StrEnums so that a
# decision serialises, is stored and is audited exactly as the plain strings did, and
# code outside the core that still compares with literals keeps working.
class Action(StrEnum):
    """What a decision does."""

    PLACE = "place"  # a job starts (or resumes) on GPUs
    PREEMPT = "preempt"  # a victim is told to checkpoint and stop within its grace period
    RELEASE = "release"  # a preempted victim's GPUs are freed; it is requeued (or stopped)
    COMPLETE = "complete"  # a job ran its duration
    CANCEL = "cancel"
    REBALANCE = "rebalance"  # a pool grows by an elastic grant (alert or operator)
    RETURN = "return"  # an elastic grant goes back
    SCALE_UP = "scale_up"
    SCALE_DOWN = "scale_down"
    RESERVE = "reserve"  # a reservation window starts draining, or ends
    SET_POLICY = "set_policy"


class Result(StrEnum):
    """How it went."""

    OK = "ok"
    PENDING = "pending"  # decided, completes later (victims' grace, a stabilisation timer)
    NOOP = "noop"  # nothing to do
    REFUSED = "refused"  # a limit said no
    DRY_RUN = "dry_run"  # what would have happened; nothing changed


class Cause(StrEnum):
    """Why, for machines (``Decision.reason`` says it for people)."""

    NONE = ""  # a decision not made by the core (tests, other producers)
    REQUEST = "request"  # an API call: cancel, set_policy
    ALERT = "alert"
    MANUAL = "manual"  # an operator's rebalance or scale
    QUEUE = "queue"  # placed from the queue on idle GPUs; scale-up for a waiting queue
    PREEMPTION = "preemption"  # placed on GPUs freed for it by preemption
    SEED = "seed"  # a job already running when the core started
    PRIORITY = "priority"  # preempted for a higher-priority job
    RECLAIM = "reclaim"  # preempted: its borrowed GPUs go back to their owner
    LOAN_END = "loan_end"  # preempted: the lending window it borrowed under is closing
    REBALANCE = "rebalance"  # preempted for an elastic grant
    RESERVATION = "reservation"  # preempted for a reservation window
    GRACE = "grace"  # released: the grace period ran out
    ACK = "ack"  # released: the victim acknowledged
    DONE = "done"  # completed its duration
    RESOLVED = "resolved"  # the alert resolved
    STABILIZED = "stabilized"  # resolved (or the load low) long enough: the grant goes back
    HANDOVER = "handover"  # a reservation window ends: what the load needs passes to a grant
    WINDOW_END = "window_end"
    DRAIN = "drain"  # a reservation window's drain lead began
    UNNEEDED = "unneeded"  # an autoscaled node idle long enough


@dataclass(frozen=True)
class LendingWindowSpec:
    """A recurring, timezone-aware window in which a pool lends up to ``gpus`` of its GPUs.

    Inside the window the pool's lending limit is ``max(lending_limit, gpus)``, even
    past its guaranteed floor (P0's GPUs work for training while the market is
    closed). A window whose end is not after its start ends on the next day.
    Borrowers are drained from ``drain_lead_seconds`` before the window ends.
    """

    gpus: int
    timezone: str
    days: tuple[int, ...]  # 0 = Monday, as datetime.weekday(): the day each window starts
    windows: tuple[tuple[int, int], ...]  # (start, end) in minutes after local midnight
    drain_lead_seconds: float


@dataclass(frozen=True)
class PoolSpec:
    name: str
    priority_class: str  # e.g. "P0"
    priority: int  # the class's number: higher wins
    nominal_gpus: int
    guaranteed_gpus: int  # never lent, but inside a lending window
    lending_limit: int  # at most this many of the pool's own GPUs are claimed by others
    borrowing_limit: int  # at most this many foreign GPUs are claimed by the pool
    preemptible: bool  # default for the pool's jobs
    min_nodes: int
    max_nodes: int
    lending_windows: tuple[LendingWindowSpec, ...] = ()


@dataclass(frozen=True)
class ModelSpec:
    """A model a pool serves, as the stack's ``models[]`` says: what its load needs in GPUs.

    One replica spans ``gpus_per_replica`` GPUs and serves ``replica_concurrency``
    requests at a time, each holding it ``service_time_seconds`` on average; the
    SLO is the ``quantile`` of latency under ``threshold_seconds``.
    """

    name: str
    pool: str
    service_time_seconds: float
    gpus_per_replica: int
    replica_concurrency: int
    threshold_seconds: float
    quantile: float


@dataclass(frozen=True)
class GpuSpec:
    uuid: str
    node: str
    pool: str  # home pool: whose nominal quota this GPU is part of


@dataclass(frozen=True)
class ReservationSpec:
    """A recurring window, in a timezone, during which ``gpus`` extra GPUs are held for ``pool``."""

    name: str
    pool: str
    gpus: int
    timezone: str
    days: tuple[int, ...]  # 0 = Monday, as datetime.weekday()
    windows: tuple[tuple[int, int], ...]  # (start, end) in minutes after local midnight
    drain_lead_seconds: float


@dataclass(frozen=True)
class PolicySpec:
    fairness_factor_per_hour: float = 100.0
    fairness_cap: float = 400.0
    min_runtime_seconds: float = 300.0
    preemption_budget: int = 3
    preemption_budget_window_seconds: float = 3600.0
    cycle_window_seconds: float = 900.0
    default_grace_seconds: float = 30.0
    rebalance_step_gpus: int = 8
    return_stabilization_seconds: float = 300.0
    scale_up_stabilization_seconds: float = 0.0
    scale_down_stabilization_seconds: float = 300.0
    scale_down_unneeded_seconds: float = 600.0
    dry_run: bool = False
    # Not in the stack file yet: a pool whose oldest waiting job has waited this
    # long asks for a node (the Cluster Autoscaler's "pending pod" signal).
    scale_up_wait_seconds: float = 60.0
    # Not in the stack file: the simulator's "naive" policy (a plain priority
    # scheduler) runs through this same core with these changed.
    # (``cost_before_class`` below applies to "least_work_lost".)
    victim_order: str = "least_work_lost"  # or "newest_first" (ordering.VICTIM_ORDERS)
    cycle_guard: bool = True  # False: no NoReversal guard
    # True: a job is preempted only for a job of a higher class, and every class preempts
    # lower classes' owners (no reclaim by a lower class; a plain priority scheduler).
    strict_priority: bool = False
    # Lost work bounded for a job's whole life (0 turns each rule off):
    # victims losing the least work go first whatever their class (false: lower
    # classes first, then least work lost);
    cost_before_class: bool = True
    # every preemption a job suffered raises its effective priority by this much
    # (as a victim and as a waiting job), as Kueue's KEP-7990 priority boost;
    preemption_priority_boost: float = 100.0
    # a job preempted this many times in its life is no longer a victim, except to
    # reclaim a pool's guaranteed floor (jobs that lose nothing, inference
    # replicas, are never capped).
    max_preemptions_checkpointing: int = 5
    max_preemptions_non_checkpointing: int = 1
    # No starvation behind smaller jobs: once the head of a pool's queue waited
    # this long, the pool's GPUs that free up are held for it until it fits.
    drain_after_seconds: float = 3600.0
    # P0 borrows what its SLO needs: a grant is sized by the queueing model
    # (``capacity``) so that the predicted latency quantile stays this share under
    # the threshold, and borrowed GPUs go back once the load would be served with
    # this margin without them (rebalance.py).
    grant_slo_margin: float = 0.2
    # Not in the stack file: the simulator's baselines size grants by
    # ``rebalance_step_gpus`` and return them on the alert's resolution.
    load_aware_grants: bool = True
    # Not in the stack file: False places as if a pool's GPUs were one bag, blind to
    # nodes (a pod may span nodes): the simulator's baseline for node-aware placement.
    node_aware: bool = True

    # Integer fields for which 0 means "off" rather than a bad value.
    OFF_AT_ZERO: ClassVar[frozenset[str]] = frozenset(
        {"max_preemptions_checkpointing", "max_preemptions_non_checkpointing"}
    )

    def preemption_cap(self, *, checkpointable: bool) -> int:
        """The lifetime preemption cap of a job that can (or cannot) checkpoint; 0: none."""
        if checkpointable:
            return self.max_preemptions_checkpointing
        return self.max_preemptions_non_checkpointing


@dataclass(frozen=True)
class ClusterSpec:
    pools: tuple[PoolSpec, ...]
    gpus: tuple[GpuSpec, ...]
    reservations: tuple[ReservationSpec, ...] = ()
    gpus_per_new_node: int = 8  # GPUs a node added by scale-up brings
    models: tuple[ModelSpec, ...] = ()  # with serving specs: grants sized from their load


@dataclass(frozen=True)
class JobRequest:
    """A job as submitted (or seeded). Times are seconds since the epoch on the injected clock."""

    id: str
    pool: str
    gpus: int
    kind: JobKind = JobKind.BATCH
    preemptible: bool | None = None  # None: the pool's default
    checkpointable: bool = False
    grace_seconds: float | None = None  # None: the policy's default
    duration_seconds: float | None = None  # work to do; None: runs until cancelled
    # Seeding only: a job already running since ``started_at`` (in the past),
    # with its last checkpoint and the work it had done at that checkpoint.
    started_at: float | None = None
    last_checkpoint: float | None = None
    submitted_at: float | None = None
    # Its pods' size (``gpus`` must be a multiple); None: a P0 replica's size for
    # inference, else one pod up to the largest node, node-sized pods above it.
    gpus_per_pod: int | None = None


@dataclass(frozen=True)
class Decision:
    """One thing the scheduler decided, as recorded (before it is actuated) and reported."""

    id: str
    at: float
    action: Action
    pool: str
    result: Result
    reason: str  # for people
    gpus: int = 0  # GPUs moved by this decision
    gpu_ids: tuple[str, ...] = ()
    victims: tuple[str, ...] = ()
    correlation_id: str = ""
    dry_run: bool = False
    job: str | None = None
    cause: Cause = Cause.NONE  # for machines
    priority: str = ""  # priority class of ``pool``
    waited_seconds: float = 0.0  # place: how long the job waited
    gpu_seconds_lost: float = 0.0  # release: work since the last checkpoint, times GPUs
    nodes: tuple[str, ...] = ()  # scale decisions: nodes added or removed
    grace_seconds: float = 0.0  # preempt: the victim's grace period
    # rebalance sized from the load: its inputs and prediction (capacity.Sizing.inputs)
    sizing: tuple[tuple[str, float], ...] = ()

    def to_dict(self) -> dict[str, object]:
        out: dict[str, object] = {
            "id": self.id,
            "at": self.at,
            "action": str(self.action),
            "pool": self.pool,
            "result": str(self.result),
            "reason": self.reason,
            "gpus": self.gpus,
            "gpu_ids": list(self.gpu_ids),
            "victims": list(self.victims),
            "correlation_id": self.correlation_id,
            "dry_run": self.dry_run,
            "job": self.job,
            "cause": str(self.cause),
            "priority": self.priority,
            "waited_seconds": self.waited_seconds,
            "gpu_seconds_lost": self.gpu_seconds_lost,
            "nodes": list(self.nodes),
            "grace_seconds": self.grace_seconds,
        }
        if self.sizing:  # only where a grant was sized: every other record stays as it was
            out["sizing"] = {k: _json_number(v) for k, v in self.sizing}
        return out

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Decision:
        def s(k: str) -> str:
            return str(d.get(k, ""))

        def f(k: str) -> float:
            v = d.get(k, 0.0)
            return float(v) if isinstance(v, int | float) else 0.0

        def t(k: str) -> tuple[str, ...]:
            v = d.get(k, ())
            return tuple(str(x) for x in v) if isinstance(v, list | tuple) else ()

        gpus = d.get("gpus", 0)
        job = d.get("job")
        return cls(
            id=s("id"),
            at=f("at"),
            action=Action(s("action")),
            pool=s("pool"),
            result=Result(s("result")),
            reason=s("reason"),
            gpus=int(gpus) if isinstance(gpus, int) else 0,
            gpu_ids=t("gpu_ids"),
            victims=t("victims"),
            correlation_id=s("correlation_id"),
            dry_run=bool(d.get("dry_run", False)),
            job=None if job is None else str(job),
            cause=Cause(s("cause")),
            priority=s("priority"),
            waited_seconds=f("waited_seconds"),
            gpu_seconds_lost=f("gpu_seconds_lost"),
            nodes=t("nodes"),
            grace_seconds=f("grace_seconds"),
            sizing=_sizing_from(d.get("sizing")),
        )


def _json_number(v: float) -> float | None:
    """JSON has no infinity: an unstable queue's predicted latency is recorded as null."""
    return None if v != v or v in (float("inf"), float("-inf")) else v


def _sizing_from(v: object) -> tuple[tuple[str, float], ...]:
    if not isinstance(v, dict):
        return ()
    return tuple(
        (str(k), float(x) if isinstance(x, int | float) else float("inf")) for k, x in v.items()
    )


@dataclass(frozen=True)
class JobView:
    """A job as the API and the store see it."""

    id: str
    pool: str
    gpus: int
    kind: JobKind
    state: JobState
    preemptible: bool
    checkpointable: bool
    grace_seconds: float
    duration_seconds: float | None
    submitted_at: float
    queued_at: float
    started_at: float | None
    last_checkpoint: float | None
    progress_seconds: float  # work done as of the current run's start (resumed from a checkpoint)
    checkpoint_progress_seconds: float  # work done as of the last checkpoint
    resume_count: int
    preemptions: tuple[float, ...]  # when it was preempted (inside the budget window)
    gpu_seconds_lost: float  # over its whole life
    gpu_ids: tuple[str, ...]
    held_gpu_ids: tuple[str, ...]  # GPUs freed by preemption and held for this job
    pending_victims: tuple[str, ...]
    preempted_for: str | None
    deadline: float | None  # preempting: when the grace period ends
    elastic: bool  # a rebalance burst: returned once the pool is stable again
    reservation: str | None
    correlation_id: str = ""
    # How often it was preempted in its whole life (``preemptions`` keeps only the budget
    # window): what the lifetime cap and the priority boost count. Persisted with the job
    # (as the budget window's times are), so a restart forgets neither.
    preemptions_total: int = 0
    # Its pods' sizes, largest first; ``gpu_ids`` (and ``held_gpu_ids``) list the GPUs
    # pod by pod in this order, each pod's on one node. Empty: one pod of ``gpus``.
    pods: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, object]:
        return {
            "id": self.id,
            "pool": self.pool,
            "gpus": self.gpus,
            "kind": self.kind.value,
            "state": self.state.value,
            "preemptible": self.preemptible,
            "checkpointable": self.checkpointable,
            "grace_seconds": self.grace_seconds,
            "duration_seconds": self.duration_seconds,
            "submitted_at": self.submitted_at,
            "queued_at": self.queued_at,
            "started_at": self.started_at,
            "last_checkpoint": self.last_checkpoint,
            "progress_seconds": self.progress_seconds,
            "checkpoint_progress_seconds": self.checkpoint_progress_seconds,
            "resume_count": self.resume_count,
            "preemptions": list(self.preemptions),
            "gpu_seconds_lost": self.gpu_seconds_lost,
            "gpu_ids": list(self.gpu_ids),
            "held_gpu_ids": list(self.held_gpu_ids),
            "pending_victims": list(self.pending_victims),
            "preempted_for": self.preempted_for,
            "deadline": self.deadline,
            "elastic": self.elastic,
            "reservation": self.reservation,
            "correlation_id": self.correlation_id,
            "preemptions_total": self.preemptions_total,
            "pods": list(self.pods),
        }


@dataclass(frozen=True)
class PoolView:
    """A pool's accounting as the API and the metrics see it (``own + lent + idle == nominal``)."""

    name: str
    priority_class: str
    priority: int
    nominal_gpus: int  # grows and shrinks with autoscaled nodes
    guaranteed_gpus: int
    lending_limit: int  # in force now: raised inside a lending window
    borrowing_limit: int
    min_nodes: int
    max_nodes: int
    nodes: int
    owned: int  # home GPUs it claims
    borrowed: int  # other pools' GPUs it claims
    lent: int  # home GPUs others claim
    idle: int  # home GPUs nobody claims
    serving_gpus: int  # GPUs of its running jobs
    waiting: int  # jobs in its queue
    waiting_gpus: int
    gpu_seconds_lost: float  # to preemption, since the start
    firing: bool  # a rebalance alert is firing for it
    return_at: float | None  # when its elastic grants go back, once the alert resolved
    loans_until: float | None = None  # a lending window's loans are drained from then
    draining_for: str | None = None  # the queue head its freed GPUs are held for
    held_for_head: int = 0  # GPUs held for that head
    largest_waiting_pod: int = 0  # GPUs of the largest pod in its queue (0: none waits)
    # Fragmentation: of its idle GPUs, the share that pod can use, whole pods per node
    free_usable_ratio: float = 1.0
    no_hole_preemptions: int = 0  # preemptions that freed no hole its preemptor fits (0)
    repacks_declined: int = 0  # waits with enough idle GPUs, on too many nodes
    pods_spanning_nodes: int = 0  # pods placed across nodes (0 unless blind to nodes)

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class ReservationView:
    """A reservation window as the API and the metrics see it."""

    name: str
    pool: str
    gpus: int
    timezone: str
    active: bool  # draining or open now
    open: bool
    satisfied: bool  # its GPUs are held now
    next_start: float | None  # the current occurrence, else the next one
    next_end: float | None
    drain_from: float | None

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
