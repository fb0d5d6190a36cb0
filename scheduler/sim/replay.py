"""The replay: a trace's jobs through the real policy core on a simulated clock, event by event.

The core is the ``Scheduler`` the service runs. The world around it is simulated:

- jobs arrive at their submission times and run their durations;
- training jobs save a checkpoint every ``checkpoint_interval_seconds`` of a run;
- a victim checkpoints (if it can) and acknowledges ``ack_seconds`` after it is
  signalled, unless its grace period ends first;
- a node the core asks for joins its pool ``scale_up_delay_seconds`` later;
- P0's load follows its daily profile (``demand``); when the GPUs P0 serves on fall
  below what keeps its latency under the threshold, the latency alert's condition
  holds: after the rule's ``for:`` and Alertmanager's ``group_wait`` it reaches the
  core as a firing notification, as in production, and its resolution after
  ``group_interval``.

Event-driven: the clock jumps to the next arrival, world event or
``Scheduler.next_wakeup()`` (a completion, a grace expiry, a window edge, ...), and the
core ticks only when that says so. What a tick makes due at its own instant is taken
``settle_seconds`` later, as the service's next heartbeat would. ``tick_seconds``
instead ticks on a fixed grid (the benchmark's baseline): arrivals and the world's
events still happen at their own times, and a job's run ends at its own time too (the
world knows when the work it started is done: its duration less the progress it
resumed from), where the loop ticks once more; everything else the core keeps time
for (grace periods, guards, windows, returns, scaling timers, a pass left unsettled)
waits for the next grid point. It never asks ``next_wakeup``.

What happens is recorded as it happens (``Recorder``): every job's runs, waits and
losses, every pool's GPUs over time, P0's shortfalls, and the time each core call took.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import count

from scheduler.core.engine import Scheduler
from scheduler.core.errors import SchedulerError
from scheduler.core.model import Action, Cause, Decision, JobKind, JobRequest, Result
from scheduler.grant_timing import GrantTimer
from scheduler.sim.demand import Demand
from scheduler.sim.policies import PolicyRun

# Without a tick, the replay stops this long after the last arrival: a job still
# unfinished then is reported unfinished (a starved job must not hang the replay).
HORIZON_SECONDS = 90 * 86400.0


@dataclass(frozen=True)
class SimJob:
    """A trace job as the replay submits it (mapped to a pool once, for every policy)."""

    id: str
    pool: str
    gpus: int
    kind: JobKind
    checkpointable: bool
    duration: float
    submit: float  # epoch seconds
    gpus_per_pod: int | None = None  # None: the core's default pods


@dataclass(frozen=True)
class World:
    """The simulated world's timings (from the stack's ``simulation`` and ``alerting``)."""

    checkpoint_interval_seconds: float
    ack_seconds: float
    scale_up_delay_seconds: float
    alert_delay_seconds: float  # the rule's for: plus Alertmanager's group_wait
    resolve_delay_seconds: float  # Alertmanager's group_interval
    settle_seconds: float = 1.0
    # None: event-driven. Else the fixed tick of the baseline loop, which also ticks
    # when a job's run ends (a "finish" event), but asks the core for no wakeups.
    tick_seconds: float | None = None


@dataclass
class JobRecord:
    """What happened to one trace job."""

    job: SimJob
    runs: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of each run
    waited: float = 0.0  # seconds queued, over all its waits
    lost: float = 0.0  # GPU-seconds thrown away by preemption
    losses: list[float] = field(default_factory=list)  # GPU-seconds lost at each release
    preemptions: int = 0
    start: float | None = None  # current run's start
    end: float | None = None  # completed at
    refused: str = ""  # the core refused it at submission (too big for what the pool may hold)


@dataclass
class P0Pool:
    """A P0 pool's demand and what the replay saw of it."""

    name: str
    demand: Demand
    next_demands: Iterator[Demand]
    pending: Demand | None = None  # the next change, queued as an event
    serving: int = 0
    short_since: float | None = None  # serving < needed since
    breach_since: float | None = None  # serving < breach since
    firing: bool = False
    token: int = 0  # bumps when a pending alert is overtaken
    shortfalls: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)
    above_slo_seconds: float = 0.0
    spike_seconds: float = 0.0
    spike_served_seconds: float = 0.0
    alerts: int = 0
    # Issue 15's figures: a spike's first grant, the shortfalls that start after it,
    # the wait at each bell (from the spike's start until served in full), and each
    # grant's GPUs beside what P0 lacked when it was decided.
    spike_start: float | None = None
    first_grant: float | None = None
    after_grant: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)
    short_after_grant_seconds: float = 0.0  # short after a spike's first grant, in all
    bell_waits: list[float] = field(default_factory=list)
    bell_open: bool = False  # short since this spike's start
    grants: list[tuple[int, int]] = field(default_factory=list)  # (granted, lacking then)
    last: float = 0.0
    needed_area: float = 0.0  # GPU-seconds needed
    served_area: float = 0.0  # GPU-seconds served, up to what was needed


@dataclass
class Recorder:
    start: float
    pools: list[str]
    homes: dict[str, str]  # GPU uuid -> home pool
    jobs: dict[str, JobRecord] = field(default_factory=dict)
    held: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # pool -> (t, GPUs)
    capacity: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    busy_home: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    preemptions: dict[tuple[str, str], int] = field(default_factory=dict)  # (victim, by) -> n
    lost_by_pool: dict[str, float] = field(default_factory=dict)
    p0: dict[str, P0Pool] = field(default_factory=dict)
    call_seconds: list[float] = field(default_factory=list)
    decisions: int = 0
    ticks: int = 0
    cycles_refused: int = 0
    nodes_added: int = 0
    end: float = 0.0
    stuck_wakeups: int = 0  # next_wakeup in the past after a tick: should stay 0
    # Each grant's time to capacity, as the service exports it: (pool, stage, seconds).
    to_capacity: list[tuple[str, str, float]] = field(default_factory=list)
    # placement, per the core's counters at the end: pods placed across nodes, preemptions
    # that freed no hole their preemptor's pods fit, waits a repack would have ended
    pods_spanning_nodes: int = 0
    no_hole_preemptions: int = 0
    repacks_declined: int = 0
    wall_seconds: float = 0.0


class Replay:
    """One policy over one trace."""

    def __init__(
        self,
        run: PolicyRun,
        jobs: Sequence[SimJob],
        world: World,
        *,
        start: float,
        p0: Mapping[str, tuple[Callable[[], Iterator[Demand]], Sequence[JobRequest]]],
        progress: Callable[[int], None] | None = None,
        on_decisions: Callable[[Sequence[Decision]], None] | None = None,
    ) -> None:
        self.run_spec = run
        self.jobs = jobs
        self.world = world
        self.now = start
        self.core = Scheduler(run.cluster, run.policy, clock=lambda: self.now)
        self.progress = progress
        self.on_decisions = on_decisions
        pools = [p.name for p in run.cluster.pools]
        self.rec = Recorder(start, pools, {g.uuid: g.pool for g in run.cluster.gpus})
        self._pool_of_job: dict[str, str] = {}
        self._homes_of_job: dict[str, dict[str, int]] = {}
        self._held = dict.fromkeys(pools, 0)
        self._busy = dict.fromkeys(pools, 0)
        self._cap = {p: 0 for p in pools}
        for g in run.cluster.gpus:
            self._cap[g.pool] += 1
        for p in pools:
            self.rec.held[p] = [(start, 0)]
            self.rec.busy_home[p] = [(start, 0)]
            self.rec.capacity[p] = [(start, self._cap[p])]
        # (when, order, kind, key, number): a job or pool, and a time or token.
        self._events: list[tuple[float, int, str, str, float]] = []
        self._seq = count()
        self._preempting: dict[str, float] = {}  # victim -> when signalled
        self._node_serial = count(1)
        self._per_node = run.cluster.gpus_per_new_node
        self._live = 0  # trace jobs submitted and not finished
        self._grants = GrantTimer()
        self._finished = False  # the baseline: a run's work ended at this instant
        self._seeds: list[JobRequest] = []
        for name, (demands, replicas) in p0.items():
            it = demands()
            self.rec.p0[name] = P0Pool(name, next(it), it, last=start)
            self._seeds += replicas

    # ------------------------------------------------------------------ the loop

    def run(self) -> Recorder:
        t0 = time.perf_counter()
        core = self.core
        rec = self.rec
        if self._seeds:
            self._call(core.seed, self._seeds)
        for p in rec.p0.values():
            self._feed_load(p)
            self._p0_check(p)
            self._push_next_demand(p)
        jobs = self.jobs
        n = len(jobs)
        i = 0
        tick = self.world.tick_seconds
        settle = self.world.settle_seconds
        next_grid = self.now
        last_tick = -math.inf
        last_submit = jobs[-1].submit if jobs else self.now
        horizon = last_submit + HORIZON_SECONDS
        events = self._events
        pop = heapq.heappop
        world_event = self._world_event
        while True:
            if i >= n and self._live == 0:
                break
            t = jobs[i].submit if i < n else math.inf
            if events and events[0][0] < t:
                t = events[0][0]
            if tick is None:
                wake = core.next_wakeup()
                if wake <= self.now and last_tick == self.now:
                    if wake < self.now:
                        rec.stuck_wakeups += 1
                    wake = self.now + settle
                if wake < t:
                    t = wake
            elif next_grid < t:
                t = next_grid
            if t > horizon or t == math.inf:
                break
            if t > self.now:
                self.now = t
            now = self.now
            while events and events[0][0] <= now:
                _, _, kind, key, number = pop(events)
                world_event(kind, key, number)
            while i < n and jobs[i].submit <= now:
                self._submit(jobs[i])
                i += 1
                if self.progress is not None and (i & 255 == 0 or i == n):
                    self.progress(i)
            if tick is None:
                due = core.next_wakeup() <= now
            else:
                # A run that ends at the instant of the last tick (it resumed with no work
                # left) is seen at the loop's next step, as the service's next heartbeat would.
                due = now >= next_grid or (self._finished and last_tick != now)
                if now >= next_grid:
                    next_grid = (math.floor((now - rec.start) / tick) + 1) * tick + rec.start
            if due:
                rec.ticks += 1
                self._finished = False
                last_tick = now
                self._call(core.tick)
        rec.end = self.now
        for p in rec.p0.values():
            self._p0_account(p, self.now)
            if p.short_since is not None:
                p.shortfalls.append((p.short_since, self.now - p.short_since))
        rec.cycles_refused = core.cycles_refused
        for name in core.pool_names():
            v = core.pool_view(name)
            rec.pods_spanning_nodes += v.pods_spanning_nodes
            rec.no_hole_preemptions += v.no_hole_preemptions
            rec.repacks_declined += v.repacks_declined
        rec.wall_seconds = time.perf_counter() - t0
        return rec

    # ------------------------------------------------------------------ the world

    def _push(self, at: float, kind: str, key: str, number: float = 0.0) -> None:
        heapq.heappush(self._events, (at, next(self._seq), kind, key, number))

    def _submit(self, job: SimJob) -> None:
        rec = self.rec
        record = JobRecord(job)
        rec.jobs[job.id] = record
        self._pool_of_job[job.id] = job.pool
        try:
            self._call(
                self.core.submit,
                JobRequest(
                    job.id,
                    job.pool,
                    job.gpus,
                    job.kind,
                    checkpointable=job.checkpointable,
                    duration_seconds=job.duration,
                    submitted_at=job.submit,
                    gpus_per_pod=job.gpus_per_pod,
                ),
            )
        except SchedulerError as e:
            record.refused = str(e)
            return
        self._live += 1

    def _world_event(self, kind: str, key: str, number: float) -> None:
        core = self.core
        now = self.now
        if kind == "ack":
            job_id, signalled = key, number
            if self._preempting.get(job_id) != signalled:
                return  # released already (grace over) or gone
            record = self.rec.jobs.get(job_id)
            if record is not None and record.job.checkpointable:
                core.report_checkpoint(job_id)
            self._call(core.ack_preemption, job_id)
        elif kind == "checkpoint":
            job_id, started = key, number
            record = self.rec.jobs[job_id]
            if record.start == started and job_id not in self._preempting and record.end is None:
                core.report_checkpoint(job_id)
                self._push(now + self.world.checkpoint_interval_seconds, kind, job_id, started)
        elif kind == "finish":
            # The run's work is done: the baseline ticks at this instant, after the
            # arrivals of the same instant (as the event-driven loop's tick comes after them).
            if self.rec.jobs[key].start == number:
                self._finished = True
        elif kind == "node":
            pool = key
            k = next(self._node_serial)
            node = f"{pool}-sim-{k}"
            uuids = [f"GPU-{node}-{j}" for j in range(self._per_node)]
            for u in uuids:
                self.rec.homes[u] = pool
            try:
                self._call(core.add_node, pool, node, uuids)
            except SchedulerError:
                return
            self.rec.nodes_added += 1
            self._capacity(pool, len(uuids))
        elif kind == "demand":
            p = self.rec.p0[key]
            self._p0_account(p, now)
            assert p.pending is not None
            p.demand = p.pending
            self._push_next_demand(p)
            self._feed_load(p)
            self._p0_check(p)
        elif kind == "fire":
            name, token = key, number
            p = self.rec.p0[name]
            if p.token == token and p.breach_since is not None and not p.firing:
                p.firing = True
                p.alerts += 1
                # The alert carries the model's rate (the rule's annotation) when one
                # model serves the pool; otherwise the load feed has them all.
                rates = p.demand.rates
                self._call(
                    core.alert,
                    pool=name,
                    action="rebalance",
                    firing=True,
                    correlation_id=f"sim-{name}-{int(p.breach_since)}",
                    model=rates[0][0] if len(rates) == 1 else None,
                    rate_rps=rates[0][1] if len(rates) == 1 else None,
                )
        elif kind == "resolve":
            name, token = key, number
            p = self.rec.p0[name]
            if p.firing and p.token == token:
                p.firing = False
                self._call(
                    core.alert,
                    pool=name,
                    action="rebalance",
                    firing=False,
                    correlation_id=f"sim-{name}-resolved-{int(now)}",
                )

    def _feed_load(self, p: P0Pool) -> None:
        """The load poller's report, as the service's would make it (rim -> core)."""
        for model, rps in p.demand.rates:
            try:
                self._call(self.core.report_load, model, rps)
            except SchedulerError:
                return  # a model the policy's cluster does not size (no serving spec)

    def _push_next_demand(self, p: P0Pool) -> None:
        nxt = next(p.next_demands, None)
        if nxt is None:
            return  # the load never changes again
        p.pending = nxt
        self._push(nxt.at, "demand", p.name)

    # ------------------------------------------------------------------ P0

    def _p0_account(self, p: P0Pool, now: float) -> None:
        dt = now - p.last
        if dt > 0:
            d = p.demand
            if p.serving < d.breach:
                p.above_slo_seconds += dt
            if d.spike:
                p.spike_seconds += dt
                if p.serving >= d.needed:
                    p.spike_served_seconds += dt
            p.needed_area += d.needed * dt
            p.served_area += min(d.needed, p.serving) * dt
            if p.first_grant is not None and p.serving < d.needed:
                p.short_after_grant_seconds += dt
        p.last = now

    def _p0_check(self, p: P0Pool) -> None:
        """P0's serving GPUs or demand changed: shortfalls and the alert's condition."""
        now = self.now
        d = p.demand
        short = p.serving < d.needed
        if d.spike and p.spike_start is None:
            p.spike_start, p.first_grant = now, None
            p.bell_open = short
            if not short:
                p.bell_waits.append(0.0)
        elif not d.spike and p.spike_start is not None:
            if p.bell_open:
                p.bell_waits.append(now - p.spike_start)
            p.spike_start, p.first_grant, p.bell_open = None, None, False
        if short and p.short_since is None:
            p.short_since = now
        elif not short and p.short_since is not None:
            p.shortfalls.append((p.short_since, now - p.short_since))
            if p.first_grant is not None and p.short_since >= p.first_grant:
                p.after_grant.append((p.short_since, now - p.short_since))
            if p.bell_open and p.spike_start is not None:
                p.bell_waits.append(now - p.spike_start)
                p.bell_open = False
            p.short_since = None
        breach = p.serving < d.breach
        if breach and p.breach_since is None:
            p.breach_since = now
            p.token += 1
            self._push(now + self.world.alert_delay_seconds, "fire", p.name, p.token)
        elif not breach and p.breach_since is not None:
            p.breach_since = None
            p.token += 1
            if p.firing:
                self._push(now + self.world.resolve_delay_seconds, "resolve", p.name, p.token)

    # ------------------------------------------------------------------ the core

    def _call(self, fn: Callable[..., object], *args: object, **kw: object) -> None:
        t = time.perf_counter()
        out = fn(*args, **kw)
        self.rec.call_seconds.append(time.perf_counter() - t)
        if isinstance(out, list) and out:
            self._absorb(out)

    def _capacity(self, pool: str, delta: int) -> None:
        self._cap[pool] += delta
        self.rec.capacity[pool].append((self.now, self._cap[pool]))

    def _absorb(self, ds: list[Decision]) -> None:
        if self.on_decisions is not None:
            self.on_decisions(ds)
        rec = self.rec
        if rec.p0:
            rec.to_capacity += self._grants.observe(ds)
        now = self.now
        held = self._held
        touched: set[str] = set()
        homes_touched: set[str] = set()
        rec.decisions += len(ds)
        for d in ds:
            action = d.action
            if action is Action.REBALANCE and d.cause is Cause.ALERT and d.gpus and not d.dry_run:
                self._p0_grant(d, now)
            if d.result is not Result.OK:
                continue
            job_id = d.job or ""
            if action is Action.PLACE:
                held[d.pool] += d.gpus
                touched.add(d.pool)
                homes: dict[str, int] = {}
                for u in d.gpu_ids:
                    h = rec.homes[u]
                    homes[h] = homes.get(h, 0) + 1
                    self._busy[h] += 1
                    homes_touched.add(h)
                self._homes_of_job[job_id] = homes
                self._pool_of_job.setdefault(job_id, d.pool)
                record = rec.jobs.get(job_id)
                if record is not None:
                    record.start = now
                    record.waited += d.waited_seconds
                    if record.job.checkpointable:
                        self._push(
                            now + self.world.checkpoint_interval_seconds, "checkpoint", job_id, now
                        )
                    if self.world.tick_seconds is not None:
                        # The work left: its duration less the progress it resumed from.
                        left = record.job.duration - self.core.job(job_id).progress_seconds
                        self._push(now + max(0.0, left), "finish", job_id, now)
            elif action is Action.PREEMPT:
                touched.add(d.pool)  # it serves no more, though it still holds its GPUs
                self._preempting[job_id] = now
                self._push(now + self.world.ack_seconds, "ack", job_id, now)
                key = (d.pool, self._preempted_by(d))
                rec.preemptions[key] = rec.preemptions.get(key, 0) + 1
                record = rec.jobs.get(job_id)
                if record is not None:
                    record.preemptions += 1
            elif action in (Action.RELEASE, Action.COMPLETE, Action.CANCEL, Action.RETURN) or (
                action is Action.RESERVE and d.gpus
            ):
                if action is Action.RESERVE and d.job not in self._homes_of_job:
                    continue
                self._preempting.pop(job_id, None)
                held[d.pool] -= d.gpus
                touched.add(d.pool)
                for h, k in self._homes_of_job.pop(job_id, {}).items():
                    self._busy[h] -= k
                    homes_touched.add(h)
                record = rec.jobs.get(job_id)
                if action is Action.RELEASE:
                    rec.lost_by_pool[d.pool] = (
                        rec.lost_by_pool.get(d.pool, 0.0) + d.gpu_seconds_lost
                    )
                if record is not None and record.start is not None:
                    record.runs.append((record.start, now))
                    record.start = None
                    if action is Action.RELEASE:
                        record.lost += d.gpu_seconds_lost
                        record.losses.append(d.gpu_seconds_lost)
                    else:
                        record.end = now
                        self._live -= 1
            elif action is Action.SCALE_UP:
                if self.run_spec.autoscale and not d.dry_run:
                    nodes = max(1, d.gpus // self._per_node)
                    for _ in range(nodes):
                        self._push(now + self.world.scale_up_delay_seconds, "node", d.pool)
            elif action is Action.SCALE_DOWN:
                self._capacity(d.pool, -d.gpus)
        for name in touched:
            rec.held[name].append((now, held[name]))
        for h in homes_touched:
            rec.busy_home[h].append((now, self._busy[h]))
        for p0 in rec.p0.values():
            if p0.name in touched:
                serving = self.core.serving_gpus(p0.name)
                if serving != p0.serving:
                    self._p0_account(p0, now)
                    p0.serving = serving
                    self._p0_check(p0)

    def _p0_grant(self, d: Decision, now: float) -> None:
        p0 = self.rec.p0.get(d.pool)
        if p0 is None:
            return
        if p0.spike_start is not None and p0.first_grant is None:
            self._p0_account(p0, now)  # what came before the grant is not after it
            p0.first_grant = now
        p0.grants.append((d.gpus, max(0, p0.demand.needed - p0.serving)))

    def _preempted_by(self, d: Decision) -> str:
        """The pool a preemption gives GPUs to: its preemptor's, or a closing window's lender."""
        by = d.reason.partition(" preempted for ")[2].rpartition(f" ({d.cause})")[0]
        if by:
            return self._pool_name(by)
        # A lending window closing drains borrowers, for its pool ("the lending window of
        # POOL is closing"): the lender's lent count comes down, whichever GPUs they hold.
        lender = d.reason.partition("the lending window of ")[2].partition(" ")[0]
        return lender or "?"

    def _pool_name(self, job_id: str) -> str:
        pool = self._pool_of_job.get(job_id)
        if pool is not None:
            return pool
        # Bursts and reservation holds are named after their pool.
        head, _, rest = job_id.partition("/")
        if head == "reservation":
            return self._reservation_pools.get(rest.partition("/")[0], "?")
        return head

    @property
    def _reservation_pools(self) -> dict[str, str]:
        return {r.name: r.pool for r in self.run_spec.cluster.reservations}
