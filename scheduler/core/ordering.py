"""Victim ordering and effective priority: the two rules everything else leans on.

``victim_key`` is the ONE ordering of preemption candidates (like Kueue's
CandidatesOrdering, plus the checkpoint awareness Kueue #477 asks for):

1. borrowers before owners (a job holding GPUs of another pool gives them back first);
2. least work lost first: GPU-seconds since the job's last checkpoint, or since its
   start if it has none (zero for stateless inference replicas). With the policy's
   ``cost_before_class`` off, lower classes go first and work lost decides within
   a class: the candidate's ``tier`` is its priority then, and 0 for all otherwise;
3. lower effective priority first: the class priority raised by a boost for every
   preemption the job already suffered (Kueue's KEP-7990), so that among equally
   cheap victims the one preempted least goes;
4. fewest victims: a job that alone covers more of what is needed first;
5. most recently started first;
6. job id, so that the order is total and deterministic.

Which jobs may be victims at all (lower classes only for the top class, a pool's own
GPUs back from any borrower, the guards) is decided elsewhere; this only orders them.

The victim index (``victims.py``) keeps running jobs in this order without
re-sorting them as time passes, through ``index_key``; it relies on two
properties of ``victim_key`` that any change to it must keep: it orders by work
lost monotonically, and the other criteria depend on nothing that changes while a
job runs (a job's boost changes only when it is preempted, which stops its run).

``newest_first_key`` is the other order a policy may choose (``PolicySpec.victim_order``):
what a plain priority scheduler does, blind to checkpoints (borrowers first, lower
class first, then the most recently started). ``key_for`` names the one in force;
both keep the two properties above.

``effective_priority`` is Slurm's age factor and the preemption boost on top of the
class priority.

Owns: nothing (pure functions).
May call: nothing in the core.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import NamedTuple


class Candidate(NamedTuple):
    """A running job as the ordering sees it.

    Immutable like the core's other values, but a NamedTuple rather than a frozen
    dataclass: a plan builds one for every job it reads, and a NamedTuple is about
    three times cheaper to build.
    """

    job_id: str
    borrower: bool
    priority: float  # effective: class priority plus the preemption boost
    work_lost: float  # GPU-seconds that preempting it now would throw away
    gpus: int
    started_at: float
    tier: float = 0.0  # compared before work lost: its priority when class goes before cost


VictimKey = tuple[bool, float, float, float, int, float, str]
KeyFn = Callable[[Candidate, int], VictimKey]
VICTIM_ORDERS = ("least_work_lost", "newest_first")


def victim_key(c: Candidate, need: int) -> VictimKey:
    """Sort key: smaller sorts first, i.e. is preempted first."""
    return (
        not c.borrower,
        c.tier,
        c.work_lost,
        c.priority,
        -min(c.gpus, need),
        -c.started_at,
        c.job_id,
    )


def newest_first_key(c: Candidate, need: int) -> VictimKey:
    """A plain priority scheduler's order: borrowers, lower class, then newest first, work be lost.

    Shaped like ``victim_key`` (a constant fills the place of its tier).
    """
    return (
        not c.borrower,
        c.priority,
        -c.started_at,
        0.0,
        -min(c.gpus, need),
        c.work_lost,
        c.job_id,
    )


def key_for(order: str) -> KeyFn:
    """The victim order named ``order`` (one of ``VICTIM_ORDERS``); read at call time."""
    return newest_first_key if order == "newest_first" else victim_key


def index_key(
    job_id: str,
    *,
    borrower: bool,
    priority: float,
    tier: float,
    gpus: int,
    started_at: float,
    at_risk_since: float | None,
    key: KeyFn | None = None,
) -> VictimKey:
    """``victim_key`` of a running job as the victim index files it: the same at every instant.

    ``at_risk_since`` is when the work it would lose began (its start, or its last
    checkpoint); None for a stateless job, which loses nothing. Among jobs of one
    size and one kind of loss, the work lost at any instant ``now`` is
    ``gpus * (now - at_risk_since)`` (or zero), a strictly increasing function of
    ``-at_risk_since`` with one slope for all of them; so ``victim_key`` with
    ``-at_risk_since`` in place of the work lost orders them as it would at every
    instant, and the index never re-sorts a bucket.
    """
    lost = 0.0 if at_risk_since is None else -at_risk_since
    order = victim_key if key is None else key
    return order(Candidate(job_id, borrower, priority, lost, gpus, started_at, tier), gpus)


def order_victims(
    candidates: Iterable[Candidate], need: int, key: KeyFn | None = None
) -> list[Candidate]:
    """Candidates in the order they are preempted to free ``need`` GPUs (``key``: victim_key)."""
    order = victim_key if key is None else key
    return sorted(candidates, key=lambda c: order(c, need))


def work_lost(
    *, gpus: int, stateless: bool, started_at: float, last_checkpoint: float | None, now: float
) -> float:
    """GPU-seconds done since the last checkpoint of the current run (all of it without one)."""
    if stateless:
        return 0.0
    since = started_at if last_checkpoint is None else max(started_at, last_checkpoint)
    return gpus * max(0.0, now - since)


def boosted(class_priority: int, preemptions: int, boost: float) -> float:
    """A job's class priority raised by ``boost`` for each preemption it suffered (KEP-7990)."""
    return class_priority + boost * preemptions if preemptions else float(class_priority)


def effective_priority(
    class_priority: float, waited_seconds: float, factor_per_hour: float, cap: float
) -> float:
    """A priority plus an age bonus growing with the wait, capped (Slurm's age factor)."""
    return class_priority + min(cap, factor_per_hour * max(0.0, waited_seconds) / 3600.0)
