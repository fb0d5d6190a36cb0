"""Guards: the named checks that say whether a running job may be preempted now.

Each guard answers one question the same way on every path: ``until(victim,
preemptor, now, policy)``, the earliest time from which it lets ``victim`` be
preempted (``-inf``: no objection, ``inf``: never). The victim index asks every
guard that can judge a victim alone (``preemptor=None``) when a running job
becomes a candidate, and keeps it out of the index until then; a preemption plan
asks every guard about each (victim, preemptor) pair it considers, and the first
guard whose time has not come refuses (like KAI-Scheduler's victim filters). So a
new guard is one class added to the tuple in ``Guards``.

Guards in order (the first refusal is the one counted):

1. ``Preemptible``: only running jobs marked preemptible are victims; a
   reservation's hold never is.
2. ``MinRuntime``: no preemption before the job ran ``min_runtime_seconds``.
3. ``Budget``: at most ``preemption_budget`` preemptions per job inside
   ``preemption_budget_window_seconds``.
4. ``LifetimeCap``: a job that can lose work, preempted ``max_preemptions_*`` times
   in its life (one cap for jobs that checkpoint, one for jobs that cannot), is no
   longer a victim; except to reclaim a pool's guaranteed floor (``yields_to_floor``).
   Such a job borrows no idle GPUs either (``Preemption.own_pool_only``): their lender
   could not take them back; unless its pods fit on no node of its own pool.
5. ``NoReversal``: B is not preempted for A within ``cycle_window_seconds`` of A
   being preempted for B (the reversal would ping-pong); refusals are counted.

A job's preemptions (their times, for its whole life) and the reversal guard's
memory are persisted (``persistence``), so a restart resets neither.

Owns: the guards' own state: the preemption pairs and refusals ``NoReversal``
remembers, and the refusal count.
May call: ``cluster`` (the job records), ``model``.
"""

from __future__ import annotations

import heapq
import math
from typing import Protocol

from scheduler.core.cluster import Cluster, Job
from scheduler.core.model import JobKind, JobState, PolicySpec

# Pairs remembered before the expired ones are dropped (a bound, not a window).
REMEMBERED_PAIRS = 4096


class Guard(Protocol):
    name: str
    # The policy fields it reads: when one changes, the victim index is rebuilt.
    policy_fields: frozenset[str]
    # Whether it judges (victim, preemptor) pairs only: the index cannot wait for it.
    pairwise: bool
    # Whether it steps aside when a pool reclaims its guaranteed floor.
    yields_to_floor: bool

    def until(self, victim: Job, preemptor: str | None, now: float, policy: PolicySpec) -> float:
        """The earliest time from which this guard lets ``victim`` be preempted."""
        ...

    def preempted(self, victim: Job, preemptor: str, now: float) -> None:
        """``victim`` was preempted for ``preemptor`` at ``now``."""
        ...

    def refused(self, victim: Job, preemptor: str, now: float) -> None:
        """A plan that counts refusals was refused by this guard."""
        ...

    def forget(self, now: float, policy: PolicySpec) -> None:
        """Drop what no longer matters at ``now``."""
        ...


class _Stateless:
    """Guards that remember nothing."""

    yields_to_floor = False

    def preempted(self, victim: Job, preemptor: str, now: float) -> None:
        return None

    def refused(self, victim: Job, preemptor: str, now: float) -> None:
        return None

    def forget(self, now: float, policy: PolicySpec) -> None:
        return None


class Preemptible(_Stateless):
    name = "preemptible"
    policy_fields: frozenset[str] = frozenset()
    pairwise = False

    def until(self, victim: Job, preemptor: str | None, now: float, policy: PolicySpec) -> float:
        if (
            victim.state is JobState.RUNNING
            and victim.preemptible
            and victim.kind is not JobKind.RESERVATION
            and victim.started_at is not None
        ):
            return -math.inf
        return math.inf


class MinRuntime(_Stateless):
    name = "min_runtime"
    policy_fields = frozenset({"min_runtime_seconds"})
    pairwise = False

    def until(self, victim: Job, preemptor: str | None, now: float, policy: PolicySpec) -> float:
        if victim.started_at is None:
            return math.inf
        return victim.started_at + policy.min_runtime_seconds


class Budget(_Stateless):
    name = "budget"
    policy_fields = frozenset({"preemption_budget", "preemption_budget_window_seconds"})
    pairwise = False

    def until(self, victim: Job, preemptor: str | None, now: float, policy: PolicySpec) -> float:
        if len(victim.preemptions) < policy.preemption_budget:
            return -math.inf  # fewer in all than the budget: fewer inside the window too
        window = policy.preemption_budget_window_seconds
        recent = sorted(t for t in victim.preemptions if t > now - window)
        if len(recent) < policy.preemption_budget:
            return -math.inf
        # Free again once the oldest preemption that keeps it at the budget leaves the window.
        return recent[-policy.preemption_budget] + window


class LifetimeCap(_Stateless):
    name = "lifetime_cap"
    policy_fields = frozenset(
        {"max_preemptions_checkpointing", "max_preemptions_non_checkpointing"}
    )
    pairwise = False
    yields_to_floor = True

    def until(self, victim: Job, preemptor: str | None, now: float, policy: PolicySpec) -> float:
        if victim.stateless:
            return -math.inf  # loses nothing when stopped
        cap = policy.preemption_cap(checkpointable=victim.checkpointable)
        return math.inf if cap and victim.preemptions_total >= cap else -math.inf


class NoReversal:
    name = "no_reversal"
    policy_fields = frozenset({"cycle_window_seconds", "cycle_guard"})
    pairwise = True
    yields_to_floor = False

    def __init__(self) -> None:
        self.pairs: dict[tuple[str, str], float] = {}  # (victim, preemptor) -> when
        self.refusals: dict[tuple[str, str], float] = {}  # (victim, preemptor) -> first refused
        self.refused_count = 0  # reversals refused (each pair counted once)
        # When refusals given so far run out: a plan refused before may succeed then.
        self._lapses: list[float] = []
        self._lapse_set: set[float] = set()

    def until(self, victim: Job, preemptor: str | None, now: float, policy: PolicySpec) -> float:
        # Refuse preempting ``victim`` for ``preemptor`` if ``preemptor`` itself was
        # recently preempted for ``victim``.
        if not policy.cycle_guard:
            return -math.inf
        at = None if preemptor is None else self.pairs.get((preemptor, victim.id))
        if at is None:
            return -math.inf
        lapse = at + policy.cycle_window_seconds
        if lapse > now and lapse not in self._lapse_set:
            self._lapse_set.add(lapse)
            heapq.heappush(self._lapses, lapse)
        return lapse

    def next_lapse(self) -> float:
        """When the soonest refusal given so far runs out (``inf``: none; past ones go at a tick)."""
        return self._lapses[0] if self._lapses else math.inf

    def preempted(self, victim: Job, preemptor: str, now: float) -> None:
        self.pairs[(victim.id, preemptor)] = now

    def refused(self, victim: Job, preemptor: str, now: float) -> None:
        if (victim.id, preemptor) not in self.refusals:
            self.refusals[(victim.id, preemptor)] = now
            self.refused_count += 1

    def forget(self, now: float, policy: PolicySpec) -> None:
        lapses = self._lapses
        while lapses and lapses[0] <= now:
            self._lapse_set.discard(heapq.heappop(lapses))
        window = policy.cycle_window_seconds
        if len(self.pairs) > REMEMBERED_PAIRS:
            self.pairs = {k: t for k, t in self.pairs.items() if now - t < window}
        if len(self.refusals) > REMEMBERED_PAIRS:
            self.refusals = {k: t for k, t in self.refusals.items() if now - t < window}


class Guards:
    """The guards in force, asked together."""

    def __init__(self, cluster: Cluster, reversal: NoReversal | None = None) -> None:
        self._cluster = cluster
        self.reversal = reversal or NoReversal()  # persisted: its pairs and refusal count
        self.budget = Budget()
        self.cap = LifetimeCap()
        self.all: tuple[Guard, ...] = (
            Preemptible(),
            MinRuntime(),
            self.budget,
            self.cap,
            self.reversal,
        )
        alone = tuple(g for g in self.all if not g.pairwise)
        # Changing one of these changes when jobs become candidates: the index is rebuilt.
        self.index_fields = frozenset(f for g in alone for f in g.policy_fields)
        # Bound once: every plan asks each guard about every candidate it considers.
        self._asked = tuple((g, g.until) for g in self.all)
        self._asked_floor = tuple((g, g.until) for g in self.all if not g.yields_to_floor)
        self._asked_alone = tuple(g.until for g in alone)
        self._remembering = tuple(g.preempted for g in self.all if not isinstance(g, _Stateless))

    def ready_at(self, job: Job, now: float) -> float:
        """When ``job`` becomes a candidate for any preemptor (``inf``: never)."""
        policy = self._cluster.policy
        ready = -math.inf
        for until in self._asked_alone:
            t = until(job, None, now, policy)
            if t > ready:
                ready = t
        return ready

    def capped(self, job: Job) -> bool:
        """Whether ``job`` reached its lifetime cap (``LifetimeCap``): never again a victim,
        but to give back a pool's floor."""
        return self.cap.until(job, None, 0.0, self._cluster.policy) == math.inf

    def refusal(
        self, victim: Job, preemptor: str, now: float, *, floor: bool = False
    ) -> Guard | None:
        """The first guard that does not let ``victim`` be preempted for ``preemptor`` now.

        ``floor``: the preemption reclaims the preemptor's pool's guaranteed floor,
        and the guards that yield to that are not asked.
        """
        policy = self._cluster.policy
        for guard, until in self._asked_floor if floor else self._asked:
            if until(victim, preemptor, now, policy) > now:
                return guard
        return None

    def may_borrow_until(self, job: Job, now: float, until: float, end: float) -> bool:
        """Whether ``job``, started now, may run on GPUs lent until ``until`` (gone by ``end``).

        A lending window's loans are drained from ``until`` whatever the guards say,
        so only a job they would let go then takes them, and one that loses little
        by it: it is preemptible, runs its minimum runtime first, stays inside its
        budget and its lifetime cap, lets go within its grace before ``end``, and
        either loses nothing (stateless), keeps its work (checkpoints), or is done
        before ``until``.
        """
        policy = self._cluster.policy
        if not job.preemptible or job.kind is JobKind.RESERVATION:
            return False
        if now + policy.min_runtime_seconds > until or until + job.grace > end:
            return False
        if self.budget.until(job, None, until, policy) > until:
            return False
        if job.stateless:
            return True
        if job.checkpointable:
            cap = policy.max_preemptions_checkpointing
            return not cap or job.preemptions_total < cap  # a drain stays within its cap
        return job.duration is not None and now + job.duration - job.progress <= until

    def preempted(self, victim: Job, preemptor: str, now: float) -> None:
        for preempted in self._remembering:
            preempted(victim, preemptor, now)

    def forget(self, now: float) -> None:
        policy = self._cluster.policy
        for g in self.all:
            g.forget(now, policy)

    def next_lapse(self) -> float:
        """When a pairwise refusal given so far runs out (the others mature in the victim index)."""
        return self.reversal.next_lapse()
