"""Traces in another layout run through ``--columns`` and ``--time-format`` with no code change."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from simkit import STACK

from deploy.stack import load_stack
from scheduler.sim.errors import TraceError
from scheduler.sim.reader import Columns, TimeFormat, read
from scheduler.sim.run import Options, compare

# A scheduler's own export: its column names, ISO times (some with an offset), fractional
# GPUs, a queue column, rows out of order, and rows that cannot be read.
OTHER_LAYOUT = """\
task,queue,submitted_at,run_seconds,gpu_request,owner
t-3,p2-batch,2025-03-03T09:20:00,1800,0.5,ana
t-1,p1-train,2025-03-03T09:00:00,3600,2.5,bo
t-2,p2-batch,2025-03-03 09:10:00+08:00,600,1,cy
t-4,p1-train,not a date,600,1,dee
t-5,p2-batch,2025-03-03T09:30:00,,1,eve
t-6,p2-batch,2025-03-03T09:40:00,900,zero,fay
t-7,p1-train,2025-03-03T09:50:00,-5,1,gus
t-8,nowhere,2025-03-03T09:55:00,60,1,hal
t-9,p1-train,2025-03-03T10:00:00,7200,16,ian
"""
COLUMNS = "id=task,pool=queue,submit=submitted_at,duration=run_seconds,gpus=gpu_request"


def write(tmp_path: Path) -> Path:
    path = tmp_path / "export.csv"
    path.write_text(OTHER_LAYOUT, encoding="utf-8")
    return path


def test_rows_are_read_sorted_rounded_up_and_the_broken_ones_counted(tmp_path: Path) -> None:
    trace = read(write(tmp_path), Columns.parse(COLUMNS), TimeFormat.ISO, timezone="Asia/Shanghai")
    assert [j.id for j in trace.jobs] == ["t-1", "t-2", "t-3", "t-8", "t-9"]
    first = datetime(2025, 3, 3, 9, 0, tzinfo=ZoneInfo("Asia/Shanghai")).timestamp()
    assert trace.jobs[0].submit == first  # naive times are the stack's timezone's
    assert trace.jobs[1].submit == first + 600  # an explicit offset is kept
    assert [j.gpus for j in trace.jobs] == [3, 1, 1, 1, 16]  # 2.5 -> 3, 0.5 -> 1
    assert trace.rows == 9
    assert dict(trace.skipped) == {
        "submit time not an ISO date": 1,
        "no duration": 1,
        "GPU count not a number": 1,
        "negative duration": 1,
    }


def test_the_replay_takes_it_and_reports_what_it_skipped(tmp_path: Path) -> None:
    stack = load_stack(STACK)
    opts = Options(
        traces=[write(tmp_path)],
        columns=Columns.parse(COLUMNS),
        time_format=TimeFormat.ISO,
        policies=["static", "novabrain"],
    )
    result = compare(stack, opts)
    ctx = result.context
    assert ctx.skipped["unknown pool 'nowhere'"] == 1
    assert sum(ctx.skipped.values()) == 5
    assert ctx.jobs_by_pool == {"p1-train": 2, "p2-batch": 2}
    # The trace's own dates set the start: Monday 2025-03-03 09:00 in Shanghai.
    assert ctx.start.startswith("2025-03-03 09:00")
    static = result.summaries["static"]["jobs"]
    # 16 GPUs fit p1-train's own 16 only with nothing else running; under static it may never
    # borrow, and nothing is refused: it waits for its pool.
    assert static["submitted"] == 4 and static["completed"] == 4


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("submit=a,duration=b", "missing gpus"),
        ("submit=a,duration=b,gpus=c,size=d", "unknown field 'size'"),
        ("submit=a,submit=b,duration=c,gpus=d", "given twice"),
        ("submit", "is not FIELD=COLUMN"),
    ],
)
def test_a_bad_column_mapping_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Columns.parse(text)


def test_a_mapped_column_the_file_lacks_is_named(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="no column 'start'"):
        read(write(tmp_path), Columns.parse("submit=start,duration=run_seconds,gpus=gpu_request"))
    with pytest.raises(TraceError, match="cannot read trace"):
        read(tmp_path / "missing.csv")


PODS_LAYOUT = """\
job_id,submission_time,duration,num_gpu,per_pod
a,0,600,8,2
b,10,600,8,
c,20,600,6,4
d,30,600,4,x
e,40,600,16,8
"""


def test_an_optional_gpus_per_pod_column_gives_each_job_its_pods(tmp_path: Path) -> None:
    path = tmp_path / "pods.csv"
    path.write_text(PODS_LAYOUT, encoding="utf-8")
    cols = "id=job_id,submit=submission_time,duration=duration,gpus=num_gpu,gpus_per_pod=per_pod"
    trace = read(path, Columns.parse(cols))
    # An empty cell leaves it to the scheduler; a size that does not divide is skipped.
    assert [(j.id, j.gpus_per_pod) for j in trace.jobs] == [("a", 2), ("b", None), ("e", 8)]
    assert dict(trace.skipped) == {
        "gpus_per_pod not a whole divisor of the GPU count": 1,
        "gpus_per_pod not a number": 1,
    }
    # Replayed, every pod of every job has its GPUs on one node.
    stack = load_stack(STACK)
    result = compare(stack, Options(traces=[path], columns=Columns.parse(cols)))
    for summary in result.summaries.values():
        assert summary["placement"]["pods_spanning_nodes"] == 0
        assert summary["placement"]["preemptions_without_hole"] == 0
