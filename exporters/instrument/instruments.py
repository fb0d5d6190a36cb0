"""``ModelInstruments``: a recorder for every model of the stack, in the store asked for.

A request for a model the stack does not declare is counted in one unlabelled
counter and creates no series.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import ParamSpec, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as PCounter

from deploy.stack import Model, Stack
from exporters.catalog import model as cat
from exporters.exposition import Snapshot
from exporters.instrument.buckets import buckets_for
from exporters.instrument.core import Clock, CounterChild, ModelKey, ModelRecorder, Tracked
from exporters.instrument.errors import MultiprocessError, UnknownModelError
from exporters.instrument.inprocess import InProcessStore
from exporters.instrument.multiprocess import MultiprocessStore

P = ParamSpec("P")
R = TypeVar("R")


class ModelInstruments:
    """Recorders for every model of the stack, registered once.

    ``registry`` receives the collector (in-process mode). With
    ``multiprocess=True`` the values go to prometheus_client's multiprocess files
    instead (``PROMETHEUS_MULTIPROC_DIR`` must have been set before
    prometheus_client was imported) and ``registry`` is not written to; serve
    ``exporters.instrument.multiprocess.multiprocess_registry()`` instead.
    """

    def __init__(
        self,
        models: Stack | Iterable[Model],
        registry: CollectorRegistry | None,
        *,
        clock: Clock = time.perf_counter,
        multiprocess: bool = False,
    ) -> None:
        model_list = models.models if isinstance(models, Stack) else tuple(models)
        self.clock = clock
        self._by_key: dict[tuple[str, str], ModelRecorder] = {}
        self._latest: dict[str, ModelRecorder] = {}
        store: InProcessStore | MultiprocessStore
        store = MultiprocessStore() if multiprocess else InProcessStore()
        self._unknown: CounterChild
        if isinstance(store, MultiprocessStore):
            unknown = cat.MODEL_UNKNOWN_REQUESTS
            self._unknown = PCounter(unknown.name, unknown.help, registry=None)
        else:
            self._unknown = store.unknown
        self._store = store
        for m in model_list:
            key = ModelKey(m.name, m.version, m.pool, m.llm)
            rec = store.add(key, buckets_for(m), clock)
            self._by_key[(m.name, m.version)] = rec
            # Without a version, a request means the version the stack lists last.
            self._latest[m.name] = rec
        if isinstance(store, InProcessStore) and registry is not None:
            registry.register(store)

    def snapshot(self) -> Snapshot:
        """This instance's metrics as they are now, for ``exporters.exposition.metrics_response``.
        In-process mode only: in multiprocess mode the values are in files, serve
        ``multiprocess_registry()``."""
        if not isinstance(self._store, InProcessStore):
            raise MultiprocessError(
                "multiprocess values are read from files: serve multiprocess_registry()"
            )
        return Snapshot(self._store.collect())

    def render(self) -> bytes:
        """This instance's metrics in the classic Prometheus text format (what
        ``generate_latest`` would write for them, many times faster)."""
        return self.snapshot().body()

    def recorder(self, model: str, version: str | None = None) -> ModelRecorder:
        """The recorder of a declared model; raises ``UnknownModelError`` otherwise (start-up use)."""
        rec = self.get(model, version)
        if rec is None:
            raise UnknownModelError(model, version)
        return rec

    def get(self, model: str, version: str | None = None) -> ModelRecorder | None:
        """The recorder, or ``None`` for a model the stack does not declare (request-path use).

        ``None`` is counted once in the unlabelled unknown-requests counter: a
        hostile path can make the counter grow, never the series count.
        """
        rec = self._latest.get(model) if version is None else self._by_key.get((model, version))
        if rec is None:
            self._unknown.inc()
        return rec

    def recorders(self) -> Iterator[ModelRecorder]:
        return iter(self._by_key.values())

    def timed(
        self, model: str, version: str | None = None
    ) -> Callable[[Callable[P, R]], Callable[P, R]]:
        """``@instruments.timed("risk-scorer")``: every call of the function is one request."""
        rec = self.recorder(model, version)
        return rec.timed

    def track(self, model: str, version: str | None = None) -> Tracked:
        """``with instruments.track("risk-scorer"):`` — one request per block."""
        return self.recorder(model, version).track()
