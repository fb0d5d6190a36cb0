"""What the service needs of the scheduler runtime, and the one thread it is called on."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from scheduler.core.model import Decision, JobRequest

R = TypeVar("R")


class Runtime(Protocol):
    """What the service needs from ``scheduler.runtime.SchedulerRuntime``."""

    def on_alert(
        self, *, pool: str, action: str, firing: bool, correlation_id: str
    ) -> list[Decision]: ...
    def tick(self) -> list[Decision]: ...
    def checkpoint(self) -> None: ...
    def pools(self) -> Any: ...
    def jobs(self, pool: str | None = None, state: str | None = None) -> Any: ...
    def queues(self) -> Any: ...
    def decisions(self, limit: int = 100) -> Any: ...
    def reservations(self) -> Any: ...
    def submit_job(self, req: JobRequest, *, correlation_id: str = "") -> Any: ...
    def cancel_job(self, job_id: str, *, correlation_id: str = "") -> list[Decision]: ...
    def report_checkpoint(self, job_id: str, at: float | None = None) -> None: ...
    def ack_preemption(self, job_id: str) -> list[Decision]: ...
    def manual_rebalance(self, pool: str, gpus: int, correlation_id: str) -> list[Decision]: ...
    def manual_scale(self, pool: str, delta_nodes: int, correlation_id: str) -> list[Decision]: ...
    def set_policy(self, **fields: Any) -> list[Decision]: ...
    def policy(self) -> Any: ...


class RuntimeCaller:
    """Runs runtime methods on one dedicated thread.

    The runtime blocks: every decision is fsynced to its SQLite store before
    it is actuated, and a production actuator calls the Kubernetes API. On
    one dedicated thread those waits never stall the event loop (the
    webhook keeps answering), and runtime calls stay strictly one at a time.
    """

    def __init__(self) -> None:
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runtime")

    async def __call__(self, fn: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        return await asyncio.get_running_loop().run_in_executor(
            self._thread, functools.partial(fn, *args, **kwargs)
        )

    def shutdown(self) -> None:
        self._thread.shutdown(wait=True)
