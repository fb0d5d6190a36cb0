"""prometheus_client's multiprocess mode, for servers with several worker processes.

Set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory *before* any process
imports prometheus_client (gunicorn: in the master's environment), create
``ModelInstruments(stack, None, multiprocess=True)`` in each worker, serve
``multiprocess_registry()`` on ``/metrics`` (from any worker), and call
``mark_process_dead(pid)`` from the master's ``child_exit`` hook.

What multiprocess mode does and does not do (see the README):

* counters and histograms are summed over every process that ever wrote them,
  dead ones included, so totals never go backwards when a worker is replaced;
* the in-flight/running/waiting gauges use ``livesum``: only live workers
  count, which needs ``mark_process_dead`` to drop a dead worker's file;
* the directory grows by one set of files per worker pid; a restart with the
  same directory must empty it first, or old values are served again;
* each scrape reads every file: exposition cost grows with workers x series.
"""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry
from prometheus_client import multiprocess as _mp

from exporters.instrument.errors import MultiprocessError

ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir(environ: dict[str, str] | None = None) -> str | None:
    """The directory multiprocess mode writes to, or ``None`` when it is off."""
    env = os.environ if environ is None else environ
    return env.get(ENV) or None


def multiprocess_registry(path: str | None = None) -> CollectorRegistry:
    """A registry that reads every worker's files: serve this on ``/metrics``."""
    path = path or multiprocess_dir()
    if path is None or not os.path.isdir(path):
        raise MultiprocessError(f"{ENV} must name an existing directory, got {path!r}")
    registry = CollectorRegistry()
    _mp.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def mark_process_dead(pid: int, path: str | None = None) -> None:
    """Drop a dead worker's live-gauge files (gunicorn ``child_exit`` hook)."""
    _mp.mark_process_dead(pid, path)  # type: ignore[no-untyped-call]
