"""What the service needs of the scheduler runtime, and the one thread it is called on."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from typing import Any, Protocol, TypeVar

from scheduler.core.model import Decision, JobRequest, PoolView, ReservationView
from scheduler.store.sqlite import Actor

R = TypeVar("R")


class Runtime(Protocol):
    """What the service needs from ``scheduler.runtime.SchedulerRuntime``."""

    def on_alert(
        self,
        *,
        pool: str,
        action: str,
        firing: bool,
        correlation_id: str,
        model: str = "",
        rate_rps: float | None = None,
    ) -> list[Decision]: ...
    def report_load(self, model: str, rate_rps: float | None) -> list[Decision]: ...
    def tick(self) -> list[Decision]: ...
    def checkpoint(self) -> None: ...
    def pools(self) -> Sequence[PoolView]: ...
    def jobs(self, pool: str | None = None, state: str | None = None) -> Any: ...
    def queues(self) -> Any: ...
    def decisions(self, limit: int = 100) -> Any: ...
    def reservations(self) -> Sequence[ReservationView]: ...
    def submit(
        self, req: JobRequest, *, correlation_id: str = ""
    ) -> tuple[Any, list[Decision]]: ...
    def cancel_job(self, job_id: str, *, correlation_id: str = "") -> list[Decision]: ...
    def report_checkpoint(self, job_id: str, at: float | None = None) -> None: ...
    def ack_preemption(self, job_id: str) -> list[Decision]: ...
    def manual_rebalance(self, pool: str, gpus: int, correlation_id: str) -> list[Decision]: ...
    def manual_scale(self, pool: str, delta_nodes: int, correlation_id: str) -> list[Decision]: ...
    def set_policy(self, **fields: Any) -> list[Decision]: ...
    def policy(self) -> Any: ...
    def acting_as(self, actor: Actor | None) -> AbstractContextManager[None]: ...
    def unaudited(self) -> list[tuple[Decision, Actor | None]]: ...
    def mark_audited(self, ids: list[str]) -> None: ...
    def decisions_for(self, correlation_ids: Collection[str]) -> dict[str, list[Decision]]: ...


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
