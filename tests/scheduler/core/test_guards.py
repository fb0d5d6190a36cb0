"""The guards: named checks, one tuple, asked the same way by the victim index and the planner."""

from __future__ import annotations

import math
from dataclasses import replace

from core_testkit import FAST, T0, bank
from hypothesis import given
from hypothesis import strategies as st

from scheduler.core.cluster import Cluster, Job
from scheduler.core.guards import (
    Budget,
    Guards,
    LifetimeCap,
    MinRuntime,
    NoReversal,
    Preemptible,
)
from scheduler.core.model import JobKind, JobRequest, JobState


def running(
    started_at: float,
    preemptions: list[float],
    *,
    preemptible: bool = True,
    kind: JobKind = JobKind.BATCH,
    checkpointable: bool = False,
) -> Job:
    req = JobRequest("v", "p2", 1, kind, checkpointable=checkpointable)
    job = Job(req, preemptible=preemptible, grace=0, now=0)
    job.state = JobState.RUNNING
    job.started_at = started_at
    job.preemptions = preemptions
    job.preemptions_total = len(preemptions)  # as if all inside the budget window
    return job


def guards(**policy: float) -> Guards:
    return Guards(Cluster(bank(), replace(FAST, **policy)))


def test_the_guards_in_order() -> None:
    g = guards()
    assert [x.name for x in g.all] == [
        "preemptible",
        "min_runtime",
        "budget",
        "lifetime_cap",
        "no_reversal",
    ]
    assert g.index_fields == {
        "min_runtime_seconds",
        "preemption_budget",
        "preemption_budget_window_seconds",
        "max_preemptions_checkpointing",
        "max_preemptions_non_checkpointing",
    }
    assert [x.name for x in g.all if x.yields_to_floor] == ["lifetime_cap"]


def test_the_lifetime_cap_counts_a_jobs_whole_life() -> None:
    policy = replace(FAST, max_preemptions_checkpointing=3, max_preemptions_non_checkpointing=1)
    cap = LifetimeCap()

    def lifetime(total: int, **kw: object) -> Job:
        job = running(T0, [], **kw)  # type: ignore[arg-type]
        job.preemptions_total = total  # long ago: none inside any budget window
        return job

    # A job that cannot checkpoint: one preemption in its life, however long ago.
    assert cap.until(lifetime(0), None, T0, policy) == -math.inf
    assert cap.until(lifetime(1), None, T0, policy) == math.inf
    # A checkpointing job: three.
    ckpt = lifetime(2, kind=JobKind.TRAINING, checkpointable=True)
    assert cap.until(ckpt, None, T0, policy) == -math.inf
    ckpt.preemptions_total += 1
    assert cap.until(ckpt, None, T0, policy) == math.inf
    # A stateless replica loses nothing: never capped. 0 turns a cap off.
    assert cap.until(lifetime(9, kind=JobKind.INFERENCE), None, T0, policy) == -math.inf
    off = replace(policy, max_preemptions_non_checkpointing=0)
    assert cap.until(lifetime(9), None, T0, off) == -math.inf


def test_a_capped_job_is_refused_but_for_a_floor_reclaim() -> None:
    g = guards(max_preemptions_non_checkpointing=1)
    capped = running(T0 - 3600, [T0 - 86400.0])
    assert g.refusal(capped, "p", T0) is not None and g.refusal(capped, "p", T0).name == (
        "lifetime_cap"
    )
    assert g.ready_at(capped, T0) == math.inf  # never indexed as a candidate
    assert g.refusal(capped, "p", T0, floor=True) is None
    # The floor does not lift the other guards.
    fresh = running(T0 - 1, [T0 - 86400.0])
    refusal = g.refusal(fresh, "p", T0, floor=True)
    assert refusal is not None and refusal.name == "min_runtime"


def test_each_guard_names_when_it_lets_go() -> None:
    policy = replace(FAST, min_runtime_seconds=60.0, preemption_budget=2)
    job = running(T0, [T0 - 3000, T0 - 100])
    assert MinRuntime().until(job, None, T0, policy) == T0 + 60
    # Two preemptions inside the hour: free once the older one leaves the window.
    assert Budget().until(job, None, T0, policy) == T0 - 3000 + 3600
    assert Budget().until(running(T0, [T0 - 100]), None, T0, policy) == -math.inf
    assert Preemptible().until(job, None, T0, policy) == -math.inf
    assert Preemptible().until(running(T0, [], preemptible=False), None, T0, policy) == math.inf
    reversal = NoReversal()
    reversal.preempted(running(T0, []), "p", T0)  # "v" preempted for "p"...
    other = Job(JobRequest("p", "p1", 1), preemptible=True, grace=0, now=0)
    # ... so "p" may not be preempted for "v" inside the window, for anyone else it may.
    assert reversal.until(other, "v", T0 + 1, policy) == T0 + policy.cycle_window_seconds
    assert reversal.until(other, "w", T0 + 1, policy) == -math.inf
    assert reversal.until(other, None, T0 + 1, policy) == -math.inf


@given(
    started=st.floats(T0 - 7200, T0),
    ago=st.lists(st.floats(0, 7200), max_size=5),
    min_runtime=st.sampled_from([0.0, 60.0, 300.0]),
    budget=st.integers(1, 3),
    reversed_at=st.one_of(st.none(), st.floats(0, 1200)),
)
def test_index_and_planner_ask_the_guards_alike(
    started: float, ago: list[float], min_runtime: float, budget: int, reversed_at: float | None
) -> None:
    """A job is a candidate in the index exactly when no guard that judges it alone refuses it."""
    g = guards(min_runtime_seconds=min_runtime, preemption_budget=budget)
    job = running(started, [T0 - a for a in ago])
    if reversed_at is not None:
        g.reversal.pairs[("p", job.id)] = T0 - reversed_at  # "p" was preempted for it
    refusal = g.refusal(job, "p", T0)
    alone = None if refusal is None or refusal.pairwise else refusal
    assert (g.ready_at(job, T0) <= T0) == (alone is None)
    if refusal is None:
        assert reversed_at is None or reversed_at >= g._cluster.policy.cycle_window_seconds
    # The refusal is the first guard in order whose time has not come.
    policy = g._cluster.policy
    first = next((x for x in g.all if x.until(job, "p", T0, policy) > T0), None)
    assert refusal is first


def test_only_counted_reversals_are_counted_once_per_pair() -> None:
    g = guards()
    victim = running(T0 - 3600, [])
    g.reversal.pairs[("p", victim.id)] = T0 - 10
    refusal = g.refusal(victim, "p", T0)
    assert refusal is g.reversal
    refusal.refused(victim, "p", T0)
    refusal.refused(victim, "p", T0 + 1)
    assert g.reversal.refused_count == 1
