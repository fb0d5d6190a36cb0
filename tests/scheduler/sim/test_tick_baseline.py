"""The benchmark's tick-stepping baseline is a fair one: it steps a fixed tick, but arrivals,
the world's events and every run's end happen at their own times, and it never asks the
core when to wake. On ``static`` (no preemption: none of the core's own timers decide who
runs) it agrees with the event-driven replay on every job's start and end within one tick;
on a grid (every time a multiple of the tick) the two take the very same decisions under
every policy, which is what lets the replay jump from event to event at trace scale."""

from __future__ import annotations

import dataclasses
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest
from simkit import STACK, write_trace

from deploy.stack import Stack, load_stack
from scheduler.config import cluster_spec, policy_spec
from scheduler.core.engine import Scheduler
from scheduler.core.model import Decision
from scheduler.sim.docs import SAMPLE
from scheduler.sim.policies import policy_runs
from scheduler.sim.reader import Trace, read
from scheduler.sim.replay import Recorder, Replay, SimJob
from scheduler.sim.scenario import aligned, map_jobs, p0_demand, start_of, world

TICK = 60.0


@pytest.fixture(scope="module")
def stack() -> Stack:
    return load_stack(STACK)


def replay(stack: Stack, trace: Path, policy: str, tick: float | None) -> Recorder:
    start = datetime(2025, 3, 3, 8, 0).astimezone().timestamp()
    jobs, _ = map_jobs([read(trace, timezone=stack.alerting.timezone)], stack, start)
    run = policy_runs([policy], [], cluster_spec(stack), policy_spec(stack))[0]
    w = world(stack, tick_seconds=tick)
    return Replay(run, jobs, w, start=start, p0=p0_demand(stack, start)).run()


def test_the_tick_loop_never_asks_for_wakeups_and_ends_every_run_on_time(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def asked(self: Scheduler) -> float:
        raise AssertionError("the tick-stepping baseline asked next_wakeup")

    monkeypatch.setattr(Scheduler, "next_wakeup", asked)
    rec = replay(stack, write_trace(tmp_path / "t.csv"), "novabrain", TICK)
    assert rec.jobs and all(r.end is not None for r in rec.jobs.values())
    off_grid = 0
    for r in rec.jobs.values():
        # What ran is the work plus what preemption threw away, to the second: a run
        # ends when its work is done, not at the next grid point.
        run = sum(e - s for s, e in r.runs)
        assert r.job.gpus * run == pytest.approx(r.job.gpus * r.job.duration + r.lost), r.job.id
        off_grid += (r.runs[-1][1] - rec.start) % TICK != 0
    assert off_grid > len(rec.jobs) / 2  # the ends are the jobs' own instants


def test_static_agrees_with_the_event_loop_on_every_job_within_one_tick(
    stack: Stack, tmp_path: Path
) -> None:
    trace = write_trace(tmp_path / "t.csv", jobs=300)
    event = replay(stack, trace, "static", None)
    ticked = replay(stack, trace, "static", TICK)
    assert event.jobs.keys() == ticked.jobs.keys()
    for job_id, a in event.jobs.items():
        b = ticked.jobs[job_id]
        assert a.end is not None and b.end is not None, job_id
        assert abs(a.runs[0][0] - b.runs[0][0]) <= TICK, job_id
        assert abs(a.end - b.end) <= TICK, job_id
    # Not the event loop in disguise: it ticks on its grid, many more times.
    assert ticked.ticks > 2 * event.ticks


def on_the_grid(
    stack: Stack, policy: str, jobs: list[SimJob], start: float
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """Every decision of the event loop and of the tick loop, every time on the grid."""
    runs = policy_runs([policy], [], cluster_spec(stack), policy_spec(stack))
    jobs, timings, runs = aligned(jobs, start, world(stack), runs, TICK)
    streams = []
    for tick in (None, TICK):
        out: list[Decision] = []
        Replay(
            runs[0],
            jobs,
            replace(timings, tick_seconds=tick),
            start=start,
            p0=p0_demand(stack, start),
            on_decisions=out.extend,
        ).run()
        streams.append([d.to_dict() for d in out])
    return streams[0], streams[1]


@pytest.mark.parametrize("policy", ["static", "naive", "novabrain"])
def test_on_a_grid_the_two_loops_take_the_very_same_decisions(
    stack: Stack, tmp_path: Path, policy: str
) -> None:
    # Every time a multiple of the tick (jobs, the world's delays, the policy's timers):
    # nothing the core keeps time for falls between grid points, so the tick loop is
    # never late, and ticking at next_wakeup must decide what ticking every step does.
    start = datetime(2025, 3, 3, 8, 0).astimezone().timestamp()
    trace = read(write_trace(tmp_path / "t.csv", jobs=200), timezone=stack.alerting.timezone)
    jobs, _ = map_jobs([trace], stack, start)
    event, ticked = on_the_grid(stack, policy, jobs, start)
    assert len(event) > 300
    assert event == ticked


def test_on_a_grid_the_loops_agree_on_the_sample_repeated(stack: Stack) -> None:
    """3,400 jobs of the vendored sample under the stack's policy (bell reservations, P0
    grants and returns, drains, autoscaling): on the grid, the same decisions throughout.
    (Before part B of issue 15, a job resumed from a checkpoint with no work left, ending
    at the instant it started, made the tick loop tick twice at that instant; it now sees
    that end at its next step, as the event loop does one settle later.)"""
    sample = read(SAMPLE, timezone=stack.alerting.timezone).jobs
    span = sample[-1].submit - sample[0].submit + 3600.0
    copies = [
        dataclasses.replace(j, id=f"{j.id}~{k}", submit=j.submit + k * span)
        for k in range(12)
        for j in sample
    ][:3400]
    trace = Trace(copies, epoch=False, source="sample x12")
    start = start_of([trace], stack, None)
    jobs, _ = map_jobs([trace], stack, start)
    event, ticked = on_the_grid(stack, "novabrain", jobs, start)
    assert len(event) > 8_000
    assert event == ticked
