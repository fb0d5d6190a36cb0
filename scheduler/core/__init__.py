"""The pure policy core: no I/O, an injected clock, deterministic decisions.

``Scheduler`` (``engine.py``) is its one public face; the module map and its
layers are drawn in ``engine.py``'s docstring.
"""

from scheduler.core.engine import Scheduler
from scheduler.core.errors import (
    ActuatorError,
    Conflict,
    InvalidRequest,
    SchedulerError,
    StoreUnavailable,
    UnknownJob,
    UnknownPool,
)
from scheduler.core.model import (
    Action,
    Cause,
    ClusterSpec,
    Decision,
    GpuSpec,
    JobKind,
    JobRequest,
    JobState,
    JobView,
    LendingWindowSpec,
    ModelSpec,
    PolicySpec,
    PoolSpec,
    PoolView,
    ReservationSpec,
    ReservationView,
    Result,
)
from scheduler.core.ordering import Candidate, order_victims, victim_key

__all__ = [
    "Action",
    "ActuatorError",
    "Candidate",
    "Cause",
    "ClusterSpec",
    "Conflict",
    "Decision",
    "GpuSpec",
    "InvalidRequest",
    "JobKind",
    "JobRequest",
    "JobState",
    "JobView",
    "LendingWindowSpec",
    "ModelSpec",
    "PolicySpec",
    "PoolSpec",
    "PoolView",
    "ReservationSpec",
    "ReservationView",
    "Result",
    "Scheduler",
    "SchedulerError",
    "StoreUnavailable",
    "UnknownJob",
    "UnknownPool",
    "order_victims",
    "victim_key",
]
