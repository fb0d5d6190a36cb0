"""Time to capacity: for every P0 grant, how long from the alert to P0 serving on all of it.

A pure function of the decisions as they are recorded, in order: a grant (a
``rebalance`` decision of an alert or an operator that creates a burst) starts the
clock at its decision's instant, the moment the scheduler received the request.
Then, each observed once per grant, in seconds since that instant:

- ``first_victim_signalled``: its first victim told to checkpoint and stop (grants
  that take only idle GPUs have none, and skip this stage);
- ``last_gpu_free``: its last victim let go (0 when it took only idle GPUs);
- ``serving``: the burst placed on all of its GPUs: P0 serves on them.

A grant returned or cancelled before it served is forgotten. The scheduler's
metrics (``catalog.scheduler.GRANT_TIME_TO_CAPACITY``), the demo and the
trace replay all feed their decisions through one ``GrantTimer``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from scheduler.core.model import Action, Cause, Decision

STAGES = ("first_victim_signalled", "last_gpu_free", "serving")
# Grants it times: an alert's and an operator's (a reservation's handover borrows nothing new).
TIMED_CAUSES = frozenset({Cause.ALERT, Cause.MANUAL})


@dataclass
class _Grant:
    pool: str
    at: float
    victims: set[str]
    signalled: bool = False


@dataclass
class GrantTimer:
    """Feed it every decision, in order; it answers the stages each batch completed."""

    _grants: dict[str, _Grant] = field(default_factory=dict)  # burst job id -> its grant
    _victim_of: dict[str, str] = field(default_factory=dict)  # victim job id -> burst job id

    def observe(self, decisions: Iterable[Decision]) -> list[tuple[str, str, float]]:
        """(pool, stage, seconds) for every stage these decisions completed."""
        batch = list(decisions)
        out: list[tuple[str, str, float]] = []
        # A grant's own decision follows its victims' signals and its placement in the same
        # call (the core commits the plan, places, then records the grant): start it first.
        for d in batch:
            if (
                d.action is Action.REBALANCE
                and d.cause in TIMED_CAUSES
                and d.job
                and d.gpus
                and not d.dry_run
            ):
                self._grants[d.job] = _Grant(d.pool, d.at, set(d.victims))
                for v in d.victims:
                    self._victim_of[v] = d.job
                if not d.victims:
                    out.append((d.pool, "last_gpu_free", 0.0))
        for d in batch:
            job = d.job or ""
            if d.action is Action.PREEMPT and job in self._victim_of:
                g = self._grants.get(self._victim_of[job])
                if g is not None and not g.signalled:
                    g.signalled = True
                    out.append((g.pool, "first_victim_signalled", d.at - g.at))
            elif (
                d.action in (Action.RELEASE, Action.COMPLETE, Action.CANCEL)
                and job in self._victim_of
            ):  # a victim that finished inside its grace period lets go too
                burst = self._victim_of.pop(job)
                g = self._grants.get(burst)
                if g is not None:
                    g.victims.discard(job)
                    if not g.victims:
                        out.append((g.pool, "last_gpu_free", d.at - g.at))
            elif d.action is Action.PLACE and job in self._grants:
                g = self._grants.pop(job)
                out.append((g.pool, "serving", d.at - g.at))
                self._forget_victims(job)
            elif (
                d.action in (Action.RETURN, Action.CANCEL, Action.COMPLETE) and job in self._grants
            ):
                del self._grants[job]
                self._forget_victims(job)
        return out

    def _forget_victims(self, burst: str) -> None:
        for v in [v for v, b in self._victim_of.items() if b == burst]:
            del self._victim_of[v]
