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
SCHEDULER_DECISIONS = counter(
    "scheduler_decisions", "Scheduling decisions taken, by action and result.", "action", "result"
)
SCHEDULER_DECISION_DURATION = histogram(
    "scheduler_decision_duration_seconds", "Time the policy core took to decide.", "action"
)
SCHEDULER_PREEMPTIONS = counter(
    "scheduler_preemptions",
    "Jobs preempted, by reason and victim priority.",
    "reason",
    "victim_priority",
)
SCHEDULER_WEBHOOK_NOTIFICATIONS = counter(
    "scheduler_webhook_notifications",
    "Alertmanager notifications received, by result.",
    "result",
)

SCHEDULER_METRICS: tuple[Metric, ...] = (
    GPU_POOL_INFO,
    POOL_GPUS,
    SCHEDULER_DECISIONS,
    SCHEDULER_DECISION_DURATION,
    SCHEDULER_PREEMPTIONS,
    SCHEDULER_WEBHOOK_NOTIFICATIONS,
)
