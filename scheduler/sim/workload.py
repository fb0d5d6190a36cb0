"""The demo's starting point: a cluster that has been running for hours.

P0's inference replicas fill its own GPUs; P1 training jobs (4 GPUs,
checkpointing) and P2 batch jobs (2 GPUs, half of them checkpointing) fill
theirs. All started long before ``now`` so they are past any min runtime; the
checkpointing ones have a last checkpoint a few minutes back.
"""

from __future__ import annotations

import time

from deploy.stack import Stack
from scheduler.core.model import JobKind, JobRequest

TRAINING_GPUS = 4
BATCH_GPUS = 2


def demo_workload(stack: Stack, now: float | None = None) -> list[JobRequest]:
    t = time.time() if now is None else now
    top = stack.top_priority_class()
    served = {m.pool for m in stack.models}
    jobs: list[JobRequest] = []
    for rank, pool in enumerate(sorted(stack.pools, key=lambda p: -stack.priority_of(p.name))):
        started = t - 3 * 3600 - 600 * rank
        if pool.priority == top or pool.name in served:
            jobs += [
                JobRequest(
                    id=f"{pool.name}-replica-{i}",
                    pool=pool.name,
                    gpus=1,
                    kind=JobKind.INFERENCE,
                    started_at=started,
                )
                for i in range(pool.nominal_gpus)
            ]
            continue
        training = rank == 1  # the pool right below the top trains; the rest run batch
        size = TRAINING_GPUS if training else BATCH_GPUS
        for i in range(pool.nominal_gpus // size):
            checkpointable = training or i % 2 == 0
            jobs.append(
                JobRequest(
                    id=f"{pool.name}-{'train' if training else 'batch'}-{i}",
                    pool=pool.name,
                    gpus=size,
                    kind=JobKind.TRAINING if training else JobKind.BATCH,
                    checkpointable=checkpointable,
                    started_at=started - 60 * i,
                    last_checkpoint=t - 120 - 30 * i if checkpointable else None,
                )
            )
    return jobs
