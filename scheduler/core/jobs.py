"""Job lifecycle: a job is admitted (validated), runs to its duration or is cancelled, and is forgotten.

Finishing is the one way out: a completed or cancelled job leaves its queue or
the victim index, lets go of the GPUs it ran on and of those held for it, stops
waiting on its victims (or being waited on as one), and is remembered among the
last ``FINISHED_KEPT`` finished jobs (the store keeps them all), so that memory
stays bounded on a long-running service.

Owns: the completion timers (run ends, by run ticket), the bounded list of finished
jobs; ``Job.state`` on the way out, ``Job.last_checkpoint`` and
``Job.checkpoint_progress`` (checkpoints reported while it runs). Finishing also
drops the job from its pool's bursts (``Pool.elastic``) and from its preemptor's
pending victims.
May call: ``queues``, ``victims``, ``cluster``, ``decisions``.
"""

from __future__ import annotations

from collections import deque

from scheduler.core.cluster import Cluster, Job, Pool, RunTimers
from scheduler.core.decisions import Cycle
from scheduler.core.errors import Conflict, InvalidRequest
from scheduler.core.fit import ever_fits
from scheduler.core.model import (
    FINISHED_STATES,
    WAITING_STATES,
    Action,
    Cause,
    JobKind,
    JobRequest,
    JobState,
    Result,
)
from scheduler.core.queues import Queues
from scheduler.core.victims import VictimIndex

# Jobs finished longer ago than this many finished jobs are forgotten by the
# core (the store keeps them): memory stays bounded on a long-running service.
FINISHED_KEPT = 10_000
# Kubernetes names are at most this long, and job ids become names.
MAX_ID_LENGTH = 253


class Jobs:
    def __init__(self, cluster: Cluster, queues: Queues, victims: VictimIndex) -> None:
        self._cluster = cluster
        self._queues = queues
        self._victims = victims
        self._ends = RunTimers(cluster.jobs)  # when each running job's work is done
        self._finished: deque[str] = deque()
        self._fits: dict[tuple[str, tuple[int, ...], bool], bool] = {}
        self._fits_topology = -1

    def check(self, req: JobRequest) -> None:
        """Raise if ``req`` can never run here; changes nothing."""
        cluster = self._cluster
        pool = cluster.pool(req.pool)
        if not req.id or len(req.id) > MAX_ID_LENGTH:
            raise InvalidRequest(f"job id must be 1-{MAX_ID_LENGTH} characters")
        if req.id in cluster.jobs:
            raise Conflict(f"job {req.id} exists")
        if req.gpus < 1:
            raise InvalidRequest("a job needs at least one GPU")
        lendable = sum(p.most_lent for p in cluster.by_priority if p is not pool)
        most = pool.nominal + min(pool.spec.borrowing_limit, lendable)
        if req.gpus > most:
            raise InvalidRequest(
                f"{req.gpus} GPUs exceed what {pool.name} may ever hold: {pool.nominal} nominal "
                f"+ {min(pool.spec.borrowing_limit, lendable)} borrowable within the limits"
            )
        per = req.gpus_per_pod
        if per is not None:
            if per < 1 or req.gpus % per:
                raise InvalidRequest(
                    f"gpus_per_pod must be a whole divisor of gpus ({req.gpus}), got {per}"
                )
            largest = cluster.largest_node or cluster.spec.gpus_per_new_node
            if per > largest:
                raise InvalidRequest(
                    f"a pod of {per} GPUs fits on no node (the largest has {largest})"
                )
        pods = self.pods_of(req)
        if not self._ever_fits(pool, pods):
            raise InvalidRequest(
                f"{req.gpus} GPUs in pods of {pods[0]} fit on no nodes "
                f"{pool.name} may ever hold within the limits"
            )
        if req.grace_seconds is not None and req.grace_seconds < 0:
            raise InvalidRequest("grace_seconds must be >= 0")
        if req.duration_seconds is not None and req.duration_seconds < 0:
            raise InvalidRequest("duration_seconds must be >= 0")

    def new(self, req: JobRequest, now: float) -> Job:
        """A job admitted into the core (not yet queued); refuses what can never run."""
        self.check(req)
        cluster = self._cluster
        spec = cluster.pools[req.pool].spec
        preemptible = spec.preemptible if req.preemptible is None else req.preemptible
        grace = (
            cluster.policy.default_grace_seconds if req.grace_seconds is None else req.grace_seconds
        )
        job = Job(req, preemptible=preemptible, grace=grace, now=now, pods=self.pods_of(req))
        cluster.jobs[job.id] = job
        return job

    def _ever_fits(self, pool: Pool, pods: tuple[int, ...], *, own_only: bool = False) -> bool:
        """``fit.ever_fits``, remembered until nodes come or go (shapes are few)."""
        cluster = self._cluster
        if self._fits_topology != cluster.topology:
            self._fits.clear()
            self._fits_topology = cluster.topology
        key = (pool.name, pods, own_only)
        known = self._fits.get(key)
        if known is None:
            known = self._fits[key] = ever_fits(cluster, pool, pods, own_only=own_only)
        return known

    def must_borrow(self, job: Job) -> bool:
        """Whether ``job``'s pods fit on no nodes of its own pool's GPUs: it can only ever run
        on borrowed ones (so even at its lifetime cap it may borrow: else it would starve)."""
        return not self._ever_fits(self._cluster.pools[job.pool], job.pods, own_only=True)

    def pods_of(self, req: JobRequest) -> tuple[int, ...]:
        """The pods ``req`` asks for: its own pod size, a P0 replica's, or node-sized."""
        replica = req.kind in (JobKind.INFERENCE, JobKind.RESERVATION)
        return self._cluster.job_pods(req.pool, req.gpus, req.gpus_per_pod, replica=replica)

    def ends_at(self, job: Job, at: float) -> None:
        """The current run of ``job`` completes its work at ``at``."""
        self._ends.set(job, at)

    def next_completion(self) -> float:
        """When the soonest running job's work is done (``inf``: none)."""
        return self._ends.next_at()

    def complete_due(self, cycle: Cycle) -> None:
        """Jobs whose work is done by now complete (a tick step)."""
        for job in self._ends.due(cycle.now):
            if job.state in (JobState.RUNNING, JobState.PREEMPTING):
                n = len(job.gpu_ids)
                self.finish(job, JobState.COMPLETED)
                cycle.decide(
                    Action.COMPLETE,
                    job.pool,
                    Result.OK,
                    f"{job.id} completed, {n} GPUs freed",
                    gpus=n,
                    job=job.id,
                    cause=Cause.DONE,
                )

    def cancel(self, job: Job, correlation_id: str, cycle: Cycle) -> None:
        if job.state in FINISHED_STATES:
            raise Conflict(f"job {job.id} is already {job.state.value}")
        n = len(job.gpu_ids)
        gpu_ids = tuple(job.gpu_ids)
        self.finish(job, JobState.CANCELLED)
        cycle.decide(
            Action.CANCEL,
            job.pool,
            Result.OK,
            f"{job.id} cancelled" + (f", {n} GPUs freed" if n else ""),
            gpus=n,
            gpu_ids=gpu_ids,
            job=job.id,
            cause=Cause.REQUEST,
            correlation_id=correlation_id,
        )

    def checkpoint(self, job: Job, at: float | None, now: float) -> None:
        """The job saved a checkpoint at ``at`` (default ``now``): work before it is safe."""
        if not job.checkpointable:
            raise InvalidRequest(f"job {job.id} cannot checkpoint")
        if job.state not in (JobState.RUNNING, JobState.PREEMPTING) or job.started_at is None:
            raise Conflict(f"job {job.id} is {job.state.value}, not running")
        at = now if at is None else at
        if at > now or at < job.started_at:
            raise InvalidRequest("checkpoint time must lie within the job's current run")
        if job.last_checkpoint is not None and at <= job.last_checkpoint:
            return
        # Its work at risk changes, so its place among the victims does.
        self._victims.remove(job)
        job.last_checkpoint = at
        job.checkpoint_progress = job.progress + (at - job.started_at)
        if job.state is JobState.RUNNING:
            self._victims.add(job, now)
        self._cluster.dirty.add(job.id)

    def finish(self, job: Job, state: JobState) -> None:
        """Job leaves for good (completed or cancelled); frees GPUs and holds."""
        cluster = self._cluster
        pool = cluster.pools[job.pool]
        if job.state in WAITING_STATES:
            self._queues.leave(job)
        if job.state is JobState.RUNNING:
            pool.running_gpus -= job.gpus
        self._victims.remove(job)
        for u in job.gpu_ids:
            g = cluster.gpus[u]
            cluster.pools[g.home].borrowers_on.pop(job.id, None)
            cluster.let_go(g)
        job.gpu_ids = []
        for u in job.held:
            g = cluster.gpus[u]
            if g.held_for == job.id:
                cluster.unhold(g)
        job.held = []
        if job.preempted_for is not None:
            preemptor = cluster.jobs.get(job.preempted_for)
            if preemptor is not None:
                preemptor.pending_victims.discard(job.id)
            job.preempted_for = None
        job.deadline = None
        job.run_ticket = -1  # no run any more: its timers are stale
        job.state = state
        pool.elastic.pop(job.id, None)
        cluster.dirty.add(job.id)
        self._finished.append(job.id)
        while len(self._finished) > FINISHED_KEPT:
            old = self._finished.popleft()
            gone = cluster.jobs.get(old)
            if gone is not None and gone.state in FINISHED_STATES:
                del cluster.jobs[old]

    def restored_finished(self, job: Job) -> None:
        """A finished job read back from the store (forgotten as later jobs finish)."""
        self._finished.append(job.id)
