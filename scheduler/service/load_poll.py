"""The load poller: each P0 model's request rate from Prometheus, fed to the core.

P0's borrowed GPUs go back only once the model's current load would be served
without them (``scheduler.core.rebalance``), so the core must know the load between
alerts. Every ``interval`` seconds this asks Prometheus's HTTP API for each model's
request rate, with the query the latency alert's ``request_rate_rps`` annotation
uses (``exporters.catalog.model.request_rate_query``), and reports it through
``Runtime.report_load`` (a grant that causes, while P0's alert fires, is audited
like a tick's decisions). When Prometheus cannot be asked or answers nothing usable,
it reports the load unknown: the core then falls back to returning bursts on the
alert's resolution, as before. The rim of a pure entry point: no policy here.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Sequence

import aiohttp

from exporters.catalog.model import request_rate_query
from scheduler.core.errors import SchedulerError, StoreUnavailable
from scheduler.service.audit_writer import AuditWriter
from scheduler.service.caller import Runtime, RuntimeCaller
from scheduler.service.records import SCHEDULER_USER, decision_entry

log = logging.getLogger("novabrain.scheduler.load")
TIMEOUT_SECONDS = 5.0


def parse_rate(body: bytes) -> float | None:
    """A Prometheus instant-query answer's one value; None when it has none usable."""
    try:
        doc = json.loads(body)
        result = doc["data"]["result"]
        if doc.get("status") != "success" or doc["data"]["resultType"] != "vector":
            return None
        if len(result) != 1:
            return None  # no requests yet (no series), or a query that splits
        value = float(result[0]["value"][1])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


class LoadPoller:
    def __init__(
        self,
        runtime: Runtime,
        call: RuntimeCaller,
        *,
        writer: AuditWriter,
        prometheus_url: str,
        models: Sequence[str],
        window: str,
        interval: float,
        stopping: asyncio.Event,
    ) -> None:
        self.rt = runtime
        self.call = call
        self.writer = writer
        self.url = prometheus_url.rstrip("/") + "/api/v1/query"
        self.queries = {m: request_rate_query(m, window) for m in models}
        self.interval = interval
        self.stopping = stopping
        self._known: dict[str, bool] = {}  # model -> last report was a rate (logs changes only)

    async def run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while not self.stopping.is_set():
                for model, query in self.queries.items():
                    rate = await self._ask(session, query)
                    if self._known.get(model) != (rate is not None):
                        self._known[model] = rate is not None
                        log.info(
                            "load of %s: %s",
                            model,
                            "known" if rate is not None else "unknown (fallback)",
                        )
                    try:
                        decisions = await self.call(self.rt.report_load, model, rate)
                    except StoreUnavailable as e:
                        log.warning("load of %s: store unavailable: %s", model, e)
                        continue
                    except SchedulerError as e:  # a model the core does not size
                        log.error("load of %s not reported: %s", model, e)
                        continue
                    if decisions:  # a firing pool grew: audited as the scheduler's, as a tick's
                        await self.writer.write_quietly(
                            [decision_entry(d, SCHEDULER_USER) for d in decisions]
                        )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), timeout=self.interval)

    async def _ask(self, session: aiohttp.ClientSession, query: str) -> float | None:
        try:
            async with session.get(self.url, params={"query": query}) as resp:
                if resp.status != 200:
                    return None
                return parse_rate(await resp.read())
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None
