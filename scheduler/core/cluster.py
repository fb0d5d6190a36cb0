"""The cluster's records and their accounting: GPUs, pools, jobs, and which pool claims which GPU.

Accounting. Every GPU has a *home* pool (whose nominal quota it is part of)
and at most one *claimant*: the pool of the job it is held for (a preemptor
waiting for it) or else of the job running on it. Per pool the core keeps
``own`` (home GPUs it claims), ``borrowed`` (foreign GPUs it claims) and
``lent`` (home GPUs others claim); ``own + lent + idle == nominal``. Limits are
checked on claims, so GPUs promised to a preemptor already count: a pool never
claims more than ``borrowing_limit`` foreign GPUs and never has more than
``lending_limit`` of its own claimed by others (the stack validates
``lending_limit <= nominal - guaranteed``, so the floor is never lent), but inside
one of its lending windows, which raise the limit in force (``Pool.lending_limit``)
for the jobs that can be drained before the window ends.

Owns: the GPU, pool and job records and their registries; the claim counters
(``own``, ``borrowed``, ``lent``) and each pool's idle GPUs (``free``); the capacity
epoch (bumped whenever GPUs are freed or limits change, so that a plan that failed
is not retried until something changed); the ticket counter that orders queue
entries and runs; the set of jobs changed since the store last took them; the
policy in force. The records also carry fields that other modules keep; each field
says which module writes it.
May call: ``model``, ``errors`` and ``ordering`` (work lost) only.
"""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Iterator

from scheduler.core.errors import InvalidRequest, UnknownJob, UnknownPool
from scheduler.core.model import (
    ClusterSpec,
    GpuSpec,
    JobKind,
    JobRequest,
    JobState,
    JobView,
    PolicySpec,
    PoolSpec,
)
from scheduler.core.ordering import VictimKey, boosted, work_lost
from scheduler.core.pods import NodeIdle, shape

BucketKey = tuple[bool, bool, int]  # (borrower, stateless, gpus): see victims.py
IndexEntry = tuple[VictimKey, str]  # (ordering.index_key, job id): see victims.py


class Gpu:
    __slots__ = ("claim", "held_for", "holder", "home", "node", "uuid")

    def __init__(self, uuid: str, node: str, home: str) -> None:
        self.uuid = uuid
        self.node = node
        self.home = home
        self.holder: str | None = None  # job running (or preempting) on it
        self.held_for: str | None = None  # waiting job it is promised to
        self.claim: str | None = None  # pool it counts against (held_for's, else holder's)


class Job:
    """A job's whole state. Fields by the module that writes them (besides its creation here)."""

    __slots__ = (
        "bucket",
        "checkpoint_progress",
        "checkpointable",
        "correlation_id",
        "deadline",
        "duration",
        "elastic",
        "freed_for",
        "gpu_ids",
        "gpus",
        "grace",
        "held",
        "id",
        "index_entry",
        "kind",
        "last_checkpoint",
        "lost",
        "maturing",
        "pending_victims",
        "plan_failed_at",
        "pods",
        "pool",
        "preempted_for",
        "preemptible",
        "preemptions",
        "preemptions_total",
        "previewed",
        "progress",
        "queue_ticket",
        "queued_at",
        "repack_counted",
        "reservation",
        "resume_count",
        "run_ticket",
        "started_at",
        "state",
        "submitted_at",
    )

    def __init__(
        self,
        req: JobRequest,
        *,
        preemptible: bool,
        grace: float,
        now: float,
        pods: tuple[int, ...] = (),
    ) -> None:
        self.id = req.id
        self.pool = req.pool
        self.gpus = req.gpus
        # Its pods' sizes, largest first (pods.shape): each pod's GPUs on one node.
        self.pods: tuple[int, ...] = pods or (req.gpus,)
        self.kind = req.kind
        self.preemptible = preemptible
        self.checkpointable = req.checkpointable and req.kind is not JobKind.INFERENCE
        self.grace = grace
        self.duration = req.duration_seconds
        self.submitted_at = req.submitted_at if req.submitted_at is not None else now
        # jobs: its lifecycle
        self.state = JobState.QUEUED
        self.last_checkpoint: float | None = None
        self.progress = 0.0  # work done when the current run started
        self.checkpoint_progress = 0.0  # work done as of the last checkpoint
        self.correlation_id = ""
        # queues: its place in its pool's queue
        self.queued_at = now
        self.queue_ticket = -1  # ticket of its live queue entry; -1 when not waiting
        # placement: the current run, and the failed-plan memo of the current wait
        self.started_at: float | None = None
        self.gpu_ids: list[str] = []
        self.run_ticket = -1  # ticket of the current run (-1: none): timers of other runs are stale
        self.plan_failed_at: tuple[int, float] | None = None
        self.repack_counted = False  # its wait was counted among the repacks declined
        # preemption: as a victim and as a preemptor
        self.resume_count = 0
        self.preemptions: list[float] = []  # when it was preempted, inside the budget window
        self.preemptions_total = 0  # how often it was preempted in its whole life
        self.lost = 0.0
        self.held: list[str] = []  # GPUs freed by preemption (or drained) and held for it
        self.freed_for = False  # a preemption plan was committed for its current wait
        self.pending_victims: set[str] = set()
        self.preempted_for: str | None = None
        self.deadline: float | None = None
        self.previewed = False  # dry run: what it would preempt is recorded once per wait
        # victims: its place in the victim index
        self.bucket: BucketKey | None = None
        self.index_entry: IndexEntry | None = None
        self.maturing = False  # running, but not yet a candidate (cooldown or budget)
        # rebalance and reservations: what it stands for
        self.elastic = False  # a rebalance burst: returned once the pool is stable again
        self.reservation: str | None = None

    @property
    def stateless(self) -> bool:
        return self.kind in (JobKind.INFERENCE, JobKind.RESERVATION)

    def work_lost(self, now: float) -> float:
        """GPU-seconds this running job would lose if it stopped at ``now``."""
        assert self.started_at is not None
        return work_lost(
            gpus=self.gpus,
            stateless=self.stateless,
            started_at=self.started_at,
            last_checkpoint=self.last_checkpoint,
            now=now,
        )

    def checkpoint_ref(self) -> float:
        assert self.started_at is not None
        if self.last_checkpoint is None:
            return self.started_at
        return max(self.started_at, self.last_checkpoint)

    def view(self) -> JobView:
        return JobView(
            id=self.id,
            pool=self.pool,
            gpus=self.gpus,
            kind=self.kind,
            state=self.state,
            preemptible=self.preemptible,
            checkpointable=self.checkpointable,
            grace_seconds=self.grace,
            duration_seconds=self.duration,
            submitted_at=self.submitted_at,
            queued_at=self.queued_at,
            started_at=self.started_at,
            last_checkpoint=self.last_checkpoint,
            progress_seconds=self.progress,
            checkpoint_progress_seconds=self.checkpoint_progress,
            resume_count=self.resume_count,
            preemptions=tuple(self.preemptions),
            gpu_seconds_lost=self.lost,
            gpu_ids=tuple(self.gpu_ids),
            held_gpu_ids=tuple(self.held),
            pending_victims=tuple(sorted(self.pending_victims)),
            preempted_for=self.preempted_for,
            deadline=self.deadline,
            elastic=self.elastic,
            reservation=self.reservation,
            correlation_id=self.correlation_id,
            preemptions_total=self.preemptions_total,
            pods=self.pods,
        )


class Pool:
    """A pool's whole state. Fields by the module that writes them (besides the claims here)."""

    def __init__(self, spec: PoolSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.priority = spec.priority
        self.nominal = spec.nominal_gpus  # scaling: grows and shrinks with autoscaled nodes
        self.own = 0
        self.borrowed = 0
        self.lent = 0
        self.free: dict[str, None] = {}  # idle home GPUs, in a deterministic order
        self.idle = NodeIdle()  # the same GPUs by node (kept with ``free``: Cluster.put_idle)
        self.nodes: dict[str, list[str]] = {}  # node -> home GPU uuids
        # lending: the limit in force (raised inside a lending window), and while it
        # is raised, when the window's loans start to be drained and when it ends
        self.lending_limit = spec.lending_limit
        self.loans_until: float | None = None
        self.loans_end: float | None = None
        self.lending_next = -float("inf")  # when the windows are next looked at
        # The most it ever lends: what jobs of other pools may ever borrow of it.
        self.most_lent = max([spec.lending_limit, *(w.gpus for w in spec.lending_windows)])
        # queues
        self.queue: OrderedDict[str, int] = OrderedDict()  # waiting job id -> its queue ticket
        self.waiting = 0
        self.waiting_gpus = 0
        # placement (and preemption and jobs, as runs stop)
        self.running_gpus = 0
        # A plan for pods ``plan_failed_pods`` failed at ``plan_failed_at``: pods covering them would too.
        self.plan_failed_at: tuple[int, float] | None = None
        self.plan_failed_pods: tuple[int, ...] = ()
        # victims: the running preemptible jobs in buckets in victim order; and the
        # other pools' jobs on this pool's GPUs (added by placement, dropped as they stop)
        self.victims: dict[BucketKey, list[IndexEntry]] = {}
        self.borrowers_on: dict[str, None] = {}
        # preemption
        self.lost = 0.0  # GPU-seconds lost to preemption
        self.no_hole_preemptions = 0  # committed plans whose GPUs hold no pod of the preemptor
        # placement: waits in which the job's GPUs were idle but on too many nodes; pods
        # placed across nodes (only placement blind to nodes does: the baseline)
        self.repacks_declined = 0
        self.pods_spanning_nodes = 0
        # rebalance
        self.elastic: dict[str, None] = {}  # its bursts, returned together
        self.firing = False
        self.resolved_at: float | None = None
        # scaling
        self.autoscaled: dict[str, float | None] = {}  # node -> idle since
        self.last_scale_event = -float("inf")
        self.scale_pending_until = -float("inf")


class RunTimers:
    """Timers set for a job's current run (grace ends, work done, guards let go), soonest first.

    A timer names the run it was set for by its ticket; one whose run is over (the
    job was preempted, requeued, restored) is stale and skipped when it comes due.
    """

    __slots__ = ("_heap", "_jobs")

    def __init__(self, jobs: dict[str, Job]) -> None:
        self._jobs = jobs
        self._heap: list[tuple[float, int, str]] = []  # (when, run ticket, job id)

    def set(self, job: Job, at: float) -> None:
        heapq.heappush(self._heap, (at, job.run_ticket, job.id))

    def next_at(self) -> float:
        """When the soonest timer of a current run is due (``inf``: none); drops stale ones on the way."""
        heap = self._heap
        jobs = self._jobs
        while heap:
            at, run_ticket, job_id = heap[0]
            job = jobs.get(job_id)
            if job is not None and job.run_ticket == run_ticket:
                return at
            heapq.heappop(heap)
        return math.inf

    def due(self, now: float) -> Iterator[Job]:
        """The jobs whose timer for their current run is due by ``now``, soonest first."""
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, run_ticket, job_id = heapq.heappop(heap)
            job = self._jobs.get(job_id)
            if job is not None and job.run_ticket == run_ticket:
                yield job


class Cluster:
    """The records, the claims on GPUs and the policy: what every other module works on."""

    def __init__(self, spec: ClusterSpec, policy: PolicySpec) -> None:
        self.spec = spec
        self.policy = policy
        self.pools: dict[str, Pool] = {p.name: Pool(p) for p in spec.pools}
        # Lenders are tried lowest priority first: borrowing from batch before training.
        self.by_priority = sorted(self.pools.values(), key=lambda p: (p.priority, p.name))
        # Only the top class borrows by preempting owners (Kueue's borrowWithinCohort
        # with a priority threshold); everyone else borrows idle GPUs and reclaims
        # its own. Otherwise P1 borrowing by preemption and P2 reclaiming ping-pong.
        self.top_priority = max((p.priority for p in self.pools.values()), default=0)
        self.gpus: dict[str, Gpu] = {}
        self.node_gpus: dict[str, int] = {}  # node -> its GPUs (of any pool)
        self.topology = 0  # bumped as GPUs come and go (what may ever fit changes)
        # The GPUs of the largest node: no pod is larger; a job without a pod size is
        # one pod up to it (pods.shape).
        self.largest_node = 0
        # A replica's GPUs per pool serving a model (the stack's gpus_per_replica; the
        # first model of a pool that says): its replicas' pod size.
        self.replica_gpus: dict[str, int] = {}
        for m in spec.models:
            self.replica_gpus.setdefault(m.pool, m.gpus_per_replica)
        for g in spec.gpus:
            self.add_gpu(g)
        self.jobs: dict[str, Job] = {}
        self.capacity_epoch = 0
        self.tickets = 0  # the last ticket given out (persisted as "job_seq")
        self.dirty: set[str] = set()  # ids of jobs changed since the store took them

    def next_ticket(self) -> int:
        self.tickets += 1
        return self.tickets

    def pool(self, name: str) -> Pool:
        try:
            return self.pools[name]
        except KeyError:
            raise UnknownPool(name) from None

    def job(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise UnknownJob(job_id) from None

    def add_gpu(self, g: GpuSpec) -> None:
        if g.pool not in self.pools:
            raise UnknownPool(g.pool)
        if g.uuid in self.gpus:
            raise InvalidRequest(f"GPU {g.uuid} listed twice")
        gpu = self.gpus[g.uuid] = Gpu(g.uuid, g.node, g.pool)
        pool = self.pools[g.pool]
        self.put_idle(gpu)
        pool.nodes.setdefault(g.node, []).append(g.uuid)
        n = self.node_gpus[g.node] = self.node_gpus.get(g.node, 0) + 1
        self.topology += 1
        self.largest_node = max(self.largest_node, n)

    def remove_gpu(self, uuid: str) -> None:
        """An idle GPU leaves with its node (scale-down)."""
        g = self.gpus.pop(uuid)
        self.take_idle(g)
        self.topology += 1
        self.node_gpus[g.node] -= 1
        if not self.node_gpus[g.node]:
            del self.node_gpus[g.node]

    def put_idle(self, g: Gpu) -> None:
        pool = self.pools[g.home]
        pool.free[g.uuid] = None
        pool.idle.add(g.node, g.uuid)

    def take_idle(self, g: Gpu) -> None:
        pool = self.pools[g.home]
        if pool.free.pop(g.uuid, 0) is None:
            pool.idle.remove(g.node, g.uuid)

    def job_pods(
        self, pool: str, gpus: int, gpus_per_pod: int | None, *, replica: bool
    ) -> tuple[int, ...]:
        """A request's pod sizes: P0 replicas (``replica``) are the stack's replica size."""
        per = gpus_per_pod
        if per is None and replica:
            per = self.replica_gpus.get(pool, 1)
            if gpus % per:
                per = 1  # a grant that is not whole replicas: single-GPU pods
        return shape(gpus, per, self.largest_node or self.spec.gpus_per_new_node)

    def preempts_owners(self, pool: Pool) -> bool:
        """Whether ``pool`` takes lower classes' own GPUs by preemption (else it only reclaims)."""
        return pool.priority >= self.top_priority or self.policy.strict_priority

    def priority_of(self, job: Job) -> float:
        """``job``'s class priority boosted by the preemptions it suffered in its life."""
        return boosted(
            self.pools[job.pool].priority,
            job.preemptions_total,
            self.policy.preemption_priority_boost,
        )

    def borrows(self, job: Job) -> bool:
        """Whether the job runs on another pool's GPUs."""
        gpus = self.gpus
        return any(gpus[u].home != job.pool for u in job.gpu_ids)

    # ------------------------------------------------------------------ claims

    def set_claim(self, g: Gpu, new: str | None) -> None:
        old = g.claim
        if old == new:
            return
        home = self.pools[g.home]
        if old is not None:
            if old == g.home:
                home.own -= 1
            else:
                self.pools[old].borrowed -= 1
                home.lent -= 1
        if new is not None:
            if new == g.home:
                home.own += 1
            else:
                self.pools[new].borrowed += 1
                home.lent += 1
        g.claim = new

    def make_free(self, g: Gpu) -> None:
        g.holder = None
        g.held_for = None
        self.set_claim(g, None)
        self.put_idle(g)
        self.capacity_epoch += 1

    def let_go(self, g: Gpu) -> None:
        """The job on ``g`` stopped: the GPU is free, unless a waiting job holds it."""
        g.holder = None
        if g.held_for is None:
            self.make_free(g)
        else:
            self.capacity_epoch += 1

    def hold(self, g: Gpu, job: Job) -> None:
        self.take_idle(g)
        g.held_for = job.id
        self.set_claim(g, job.pool)
        job.held.append(g.uuid)

    def unhold(self, g: Gpu) -> None:
        """A hold that is no longer needed: the GPU goes back to its holder, or is freed."""
        if g.holder is None:
            self.make_free(g)
        else:
            g.held_for = None
            self.set_claim(g, self.jobs[g.holder].pool)
