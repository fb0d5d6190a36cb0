"""Job traces in, as the replay wants them: ElasticFlow CSVs or any CSV through a column mapping.

ElasticFlow's traces (``job_id,submission_time,duration,num_gpu``, seconds from the
trace's start) are read as they are. Any other CSV names its columns with
``Columns.parse("submit=COL,duration=COL,gpus=COL[,id=COL][,pool=COL][,priority=COL]
[,gpus_per_pod=COL]")``
and its times with a ``TimeFormat``: epoch seconds, seconds from the start, or ISO
8601 dates (naive ones are local to the stack's timezone). Rows are sorted by
submission time; fractional GPU requests are rounded up; a row that cannot be read
(a missing or malformed field, a negative duration, no GPUs) is skipped and counted
with its reason, never fatal. A trace that cannot be opened, or that lacks a mapped
column, raises ``TraceError``.

``gpus_per_pod`` (optional) is each job's pod size: the job runs as ``gpus /
gpus_per_pod`` pods, each on one node. An empty cell, or a trace without the
column, leaves it to the scheduler: one pod up to the node size, node-sized pods
above that. A size that does not divide the job's GPUs skips the row.
"""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from zoneinfo import ZoneInfo

from scheduler.sim.errors import TraceError

REQUIRED = ("submit", "duration", "gpus")
OPTIONAL = ("id", "pool", "priority", "gpus_per_pod")
ELASTICFLOW = {
    "id": "job_id",
    "submit": "submission_time",
    "duration": "duration",
    "gpus": "num_gpu",
}


class TimeFormat(StrEnum):
    RELATIVE = "relative"  # seconds from the trace's start (ElasticFlow)
    EPOCH = "epoch"  # Unix seconds
    ISO = "iso"  # ISO 8601 dates; without an offset, local to the stack's timezone


@dataclass(frozen=True)
class Columns:
    """Which CSV column holds each field of a job."""

    submit: str
    duration: str
    gpus: str
    id: str | None = None
    pool: str | None = None
    priority: str | None = None
    gpus_per_pod: str | None = None

    @classmethod
    def parse(cls, text: str) -> Columns:
        """``submit=COL,duration=COL,gpus=COL[,id=COL][,pool=COL][,priority=COL][,gpus_per_pod=COL]``."""
        mapping: dict[str, str] = {}
        for item in text.split(","):
            key, sep, col = item.partition("=")
            key, col = key.strip(), col.strip()
            if not sep or not col:
                raise ValueError(f"{item!r} is not FIELD=COLUMN")
            if key not in REQUIRED + OPTIONAL:
                raise ValueError(
                    f"unknown field {key!r} (fields: {', '.join(REQUIRED + OPTIONAL)})"
                )
            if key in mapping:
                raise ValueError(f"field {key!r} given twice")
            mapping[key] = col
        missing = [k for k in REQUIRED if k not in mapping]
        if missing:
            raise ValueError(f"missing {', '.join(missing)} (needs submit, duration and gpus)")
        return cls(**mapping)

    def named(self) -> dict[str, str]:
        return {k: v for k in REQUIRED + OPTIONAL if (v := getattr(self, k)) is not None}


ELASTICFLOW_COLUMNS = Columns(**ELASTICFLOW)


@dataclass(frozen=True)
class TraceJob:
    id: str
    submit: float  # seconds: relative to the trace's start, or epoch seconds (``Trace.epoch``)
    duration: float  # seconds of work
    gpus: int
    pool: str | None = None  # the trace's own pool or priority class, if it has one
    priority: str | None = None
    gpus_per_pod: int | None = None  # None: the scheduler's default pods


@dataclass
class Trace:
    jobs: list[TraceJob]
    epoch: bool  # submit times are epoch seconds (else seconds from the start)
    source: str
    rows: int = 0
    skipped: Counter[str] = field(default_factory=Counter)  # reason -> rows


def read(
    path: str | Path,
    columns: Columns | None = None,
    time_format: TimeFormat = TimeFormat.RELATIVE,
    *,
    timezone: str = "UTC",
) -> Trace:
    """Read one trace; ``columns`` None means the ElasticFlow layout."""
    cols = columns or ELASTICFLOW_COLUMNS
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            absent = [c for c in cols.named().values() if c not in header]
            if absent:
                raise TraceError(
                    f"{p}: no column {', '.join(repr(c) for c in absent)} "
                    f"(columns: {', '.join(header) or 'none'})"
                )
            trace = Trace([], epoch=time_format is not TimeFormat.RELATIVE, source=str(p))
            _rows(reader, cols, time_format, ZoneInfo(timezone), trace)
    except OSError as e:
        raise TraceError(f"cannot read trace {p}: {e.strerror or e}") from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise TraceError(f"{p} is not a UTF-8 CSV file: {e}") from None
    trace.jobs.sort(key=lambda j: (j.submit, j.id))
    return trace


def _rows(
    rows: Iterable[dict[str, str | None]],
    cols: Columns,
    time_format: TimeFormat,
    tz: ZoneInfo,
    trace: Trace,
) -> None:
    seen: set[str] = set()
    for n, row in enumerate(rows, start=2):  # line 1 is the header
        trace.rows += 1
        try:
            job = _job(row, cols, time_format, tz, n)
        except _Skip as e:
            trace.skipped[e.reason] += 1
            continue
        if job.id in seen:
            trace.skipped["duplicate id"] += 1
            continue
        seen.add(job.id)
        trace.jobs.append(job)


class _Skip(Exception):
    def __init__(self, reason: str) -> None:
        self.reason = reason


def _field(row: dict[str, str | None], col: str | None) -> str | None:
    if col is None:
        return None
    v = row.get(col)
    return v.strip() if isinstance(v, str) and v.strip() else None


def _number(row: dict[str, str | None], col: str, what: str) -> float:
    text = _field(row, col)
    if text is None:
        raise _Skip(f"no {what}")
    try:
        v = float(text)
    except ValueError:
        raise _Skip(f"{what} not a number") from None
    if not math.isfinite(v):
        raise _Skip(f"{what} not a number")
    return v


def _job(
    row: dict[str, str | None], cols: Columns, time_format: TimeFormat, tz: ZoneInfo, line: int
) -> TraceJob:
    if time_format is TimeFormat.ISO:
        text = _field(row, cols.submit)
        if text is None:
            raise _Skip("no submit time")
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise _Skip("submit time not an ISO date") from None
        submit = (when if when.tzinfo else when.replace(tzinfo=tz)).timestamp()
    else:
        submit = _number(row, cols.submit, "submit time")
    duration = _number(row, cols.duration, "duration")
    if duration < 0:
        raise _Skip("negative duration")
    gpus = _number(row, cols.gpus, "GPU count")
    if gpus <= 0:
        raise _Skip("no GPUs")
    per: int | None = None
    if _field(row, cols.gpus_per_pod) is not None:
        assert cols.gpus_per_pod is not None
        raw = _number(row, cols.gpus_per_pod, "gpus_per_pod")
        if raw < 1 or raw != int(raw) or math.ceil(gpus) % int(raw):
            raise _Skip("gpus_per_pod not a whole divisor of the GPU count")
        per = int(raw)
    return TraceJob(
        id=_field(row, cols.id) or f"line-{line}",
        submit=submit,
        duration=duration,
        gpus=math.ceil(gpus),  # a fractional GPU still takes a whole one
        pool=_field(row, cols.pool),
        priority=_field(row, cols.priority),
        gpus_per_pod=per,
    )
