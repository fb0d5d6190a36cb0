"""A small trace made here, deterministic, that makes P1 and P2 compete and P0 spike."""

from __future__ import annotations

import csv
import random
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
STACK = ROOT / "deploy" / "stack.yaml"


def write_trace(path: Path, jobs: int = 160, seed: int = 3) -> Path:
    """ElasticFlow's layout: bursts of 1-GPU jobs and some 8-GPU ones over two working days."""
    rng = random.Random(seed)
    t = 0
    rows = []
    for i in range(jobs):
        t += rng.choice([5, 20, 60, 300, 900])
        gpus = rng.choice([1, 1, 1, 1, 2, 8])
        duration = rng.choice([600, 1800, 3600, 7200, 4 * 3600])
        rows.append((f"job-{i:04d}", t, duration, gpus))
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["job_id", "submission_time", "duration", "num_gpu"])
        w.writerows(rows)
    return path
