"""Scheduler metrics: pools, queues, preemptions, decisions, and the gpu -> pool join series."""

from __future__ import annotations

from exporters.catalog._metric import Metric, counter, gauge, histogram, info

# The one series every pool-level GPU query joins on (by uuid): pool membership
# is owned by the scheduler and changes with every rebalance.
GPU_POOL_INFO = info(
    "gpu_pool", "Current pool of each GPU, owned by the scheduler.", "uuid", "node", "pool"
)

POOL_GPUS = gauge(
    "pool_gpus", "GPUs per pool by state (owned, borrowed, lent, idle).", "pool", "state"
)
POOL_NODES = gauge("pool_nodes", "Nodes per pool.", "pool")

QUEUE_LENGTH = gauge(
    "scheduler_queue_length", "Jobs waiting, by pool and priority.", "pool", "priority"
)
QUEUE_OLDEST_WAIT = gauge(
    "scheduler_queue_oldest_wait_seconds", "Age of the oldest waiting job.", "pool", "priority"
)
QUEUE_WAIT = histogram(
    "scheduler_queue_wait_seconds", "Time jobs waited before placement.", "pool", "priority"
)
JOBS = gauge("scheduler_jobs", "Jobs by pool and state.", "pool", "state")

PREEMPTIONS = counter(
    "scheduler_preemptions",
    "Jobs preempted, by reason and victim priority.",
    "reason",
    "victim_priority",
)
GPU_SECONDS_LOST = counter(
    "scheduler_gpu_seconds_lost",
    "GPU-seconds of work lost to preemption (since last checkpoint).",
    "pool",
)
JOB_PREEMPTIONS = histogram(
    "scheduler_job_preemptions",
    "Preemptions a job suffered over its life, observed when it finishes.",
    "pool",
)
JOB_GPU_SECONDS_LOST = histogram(
    "scheduler_job_gpu_seconds_lost",
    "GPU-seconds of work a job lost to preemption over its life, observed when it finishes.",
    "pool",
)
POOL_DRAINING = gauge(
    "scheduler_pool_draining",
    "1 while a pool holds the GPUs that free up for the head of its queue (waited too long).",
    "pool",
)
DRAIN_HELD_GPUS = gauge(
    "scheduler_drain_held_gpus",
    "GPUs a draining pool holds for the head of its queue.",
    "pool",
)
GRANT_TIME_TO_CAPACITY = histogram(
    "scheduler_grant_time_to_capacity_seconds",
    "Seconds from a P0 grant's request (alert or operator) to each stage: first victim "
    "signalled, last GPU free, serving on all of them.",
    "pool",
    "stage",
)
POOL_FREE_USABLE_RATIO = gauge(
    "scheduler_pool_free_gpus_usable_ratio",
    "Fragmentation: of a pool's idle GPUs, the share the largest pod waiting in its queue "
    "can use (whole pods per node); 1 when nothing is idle or nothing waits.",
    "pool",
)
NO_HOLE_PREEMPTIONS = counter(
    "scheduler_preemptions_without_hole",
    "Preemptions committed whose freed GPUs hold no pod of their preemptor (should stay 0).",
    "pool",
)
REPACKS_DECLINED = counter(
    "scheduler_repacks_declined",
    "Waits in which a job's GPUs were idle but spread over too many nodes for its pods "
    "(moving running pods would have placed it; the scheduler does not).",
    "pool",
)
CYCLES_REFUSED = counter(
    "scheduler_preemption_cycles_refused",
    "Preemptions refused because they would reverse a recent one.",
)

DECISIONS = counter(
    "scheduler_decisions", "Decisions taken, by action and result.", "action", "result"
)
DECISION_DURATION = histogram(
    "scheduler_decision_duration_seconds", "Policy core decision time.", "action"
)

RESERVATION_ACTIVE = gauge(
    "scheduler_reservation_active",
    "1 while a reservation window (or its drain lead) is active.",
    "reservation",
    "pool",
)
RESERVATION_SATISFIED = gauge(
    "scheduler_reservation_satisfied",
    "1 if the reserved GPUs are held by the pool now.",
    "reservation",
    "pool",
)
SCALE_EVENTS = counter(
    "scheduler_scale_events",
    "Scale actions, by pool, direction and result.",
    "pool",
    "direction",
    "result",
)

SCHEDULER_METRICS: tuple[Metric, ...] = (
    GPU_POOL_INFO,
    POOL_GPUS,
    POOL_NODES,
    QUEUE_LENGTH,
    QUEUE_OLDEST_WAIT,
    QUEUE_WAIT,
    JOBS,
    PREEMPTIONS,
    GPU_SECONDS_LOST,
    JOB_PREEMPTIONS,
    JOB_GPU_SECONDS_LOST,
    POOL_DRAINING,
    DRAIN_HELD_GPUS,
    GRANT_TIME_TO_CAPACITY,
    POOL_FREE_USABLE_RATIO,
    NO_HOLE_PREEMPTIONS,
    REPACKS_DECLINED,
    CYCLES_REFUSED,
    DECISIONS,
    DECISION_DURATION,
    RESERVATION_ACTIVE,
    RESERVATION_SATISFIED,
    SCALE_EVENTS,
)
