"""The GPU collector: a background loop refreshes a snapshot; scrapes are served from it.

Two tiers. The fast tier (every ``fast_interval``) reads, per GPU, one
``nvmlDeviceGetFieldValues`` call for everything NVML exposes as a field
(energy, power, power limit, memory temperature, ECC, remapped rows, PCIe
replays, NVLink) plus the values that have no field id (utilisation, memory,
temperature, SM clock, throttle reasons), and drains XID events once per node:
six NVML calls per GPU. The slow tier (every ``slow_interval``) reads what is
expensive or moves slowly: processes (and their attribution), PCIe throughput
(the driver samples for 20 ms per call), MIG instances, and the video engines'
utilisation and the memory clock (idle or fixed on data-centre GPUs, so reading
them every second would only cost calls).

Each tier builds its families once per cycle (``exporters.gpu.families``) and
publishes them, with the health families, as one immutable ``Snapshot``. A
scrape renders the current snapshot (once, however many scrapers ask: the
snapshot keeps its bytes), so scrapes never call NVML, never wait for a cycle,
and a cycle never waits for a scrape.

Faults: a GPU whose call raises GPU_IS_LOST reads ``gpu_up 0`` and reports no
other values (no stale data) while the other GPUs keep reporting; a driver
failure (not loaded, uninitialised, init failure) leaves only the health
metrics and re-initialises NVML with exponential backoff; a value the GPU does
not support is skipped and logged once; no NVML error leaves this module. Any
other exception (a backend or exporter bug) stays where it happened: on one
value of one GPU it skips that value, elsewhere in a cycle it empties that
tier's families rather than leave them stale; either way the cycle counts as
not completed (``collect_success`` 0), the error is counted as
``UNEXPECTED_EXCEPTION`` and logged once, with its traceback, per place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric as PromMetric
from prometheus_client.registry import Collector

from exporters.catalog import Metric, MetricKind
from exporters.catalog import gpu as cat
from exporters.exposition import Family, Snapshot
from exporters.gpu.attribution import Attribution, Attributor
from exporters.gpu.errors import ConfigError
from exporters.gpu.families import (
    FAST_FAMILIES,
    HEALTH_FAMILIES,
    SLOW_FAMILIES,
    UNEXPECTED,
    Health,
    Rows,
    specs,
)
from exporters.gpu.fields import FIELD_FALLBACKS, FIELD_REQUEST, FIELDS, THROTTLE_REASONS
from exporters.nvml.backend import Nvml
from exporters.nvml.errors import (
    DriverError,
    GpuLostError,
    NotSupportedError,
    NvmlError,
)
from exporters.nvml.values import (
    Clock,
    GpuIdentity,
    PcieCounter,
    ProcessMemory,
)

log = logging.getLogger(__name__)

XID_EVENTS_PER_CYCLE = 256  # bounds the drain loop when a GPU storms XIDs
INIT_BACKOFF_SECONDS = (1.0, 60.0)  # first retry, cap

Sample = tuple[Metric, tuple[str, ...], float]  # family, label values after the GPU's, value


@dataclass(frozen=True)
class GpuState:
    """What the exporter knows of one GPU after a fast cycle (for tests and /healthz)."""

    identity: GpuIdentity
    up: bool


class _Cycle:
    """One cycle in progress: whether every read so far completed."""

    __slots__ = ("complete",)

    def __init__(self) -> None:
        self.complete = True


class GpuExporter(Collector):
    """NVML metrics for every GPU of ``backend``, registered into ``registry``."""

    def __init__(
        self,
        backend: Nvml,
        registry: CollectorRegistry,
        *,
        clock: Callable[[], float] = time.time,
        fast_interval: float = 1.0,
        slow_interval: float = 5.0,
        extra_labels: Mapping[str, str] | None = None,
        job_resolver: Callable[[int], str | None] | None = None,
        attributor: Attributor | None = None,
        init_backoff: tuple[float, float] = INIT_BACKOFF_SECONDS,
    ) -> None:
        extra = dict(extra_labels or {})
        reserved = {label for m in cat.GPU_METRICS for label in m.labels}
        if clash := sorted(reserved & extra.keys()):
            raise ConfigError(f"extra labels {clash} clash with the exporter's own labels")
        if fast_interval <= 0 or slow_interval <= 0:
            raise ConfigError("collection intervals must be positive")
        self.backend = backend
        self.clock = clock
        self.fast_interval = fast_interval
        self.slow_interval = slow_interval
        self.job_resolver = job_resolver
        self.attributor = attributor or Attributor()
        self._extra_names = tuple(extra)
        self._extra_values = tuple(extra.values())
        self._backoff_first, self._backoff_cap = init_backoff

        # NVML state, shared by the two tiers (they run in worker threads).
        self._nvml_lock = threading.Lock()
        self._ready = False
        self._gpus: tuple[GpuIdentity, ...] = ()
        self._driver = ""
        self._next_init = 0.0
        self._backoff = self._backoff_first
        self._up: dict[str, bool] = {}
        self._logged: set[tuple[str, str]] = set()
        # Keyed by GPU identity, not position: a re-init may enumerate GPUs differently.
        # Bounded by the GPUs ever seen times the XID codes NVIDIA defines.
        self._xid_count: dict[tuple[GpuIdentity, int], int] = {}
        self._xid_last: dict[tuple[GpuIdentity, int], float] = {}

        # Each tier swaps in its own tuple of families, then publishes a snapshot of
        # both with the health families; scrapes only read ``_snapshot``.
        self._specs = specs(self._extra_names)
        self._health = Health(self._specs, self._extra_values)
        self._fast: tuple[Family, ...] = ()
        self._slow: tuple[Family, ...] = ()
        self._publish_lock = threading.Lock()
        self._snapshot = Snapshot(())
        self.last_success = False  # whether NVML answered the last fast cycle (/healthz)
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        registry.register(self)

    # ------------------------------------------------------------------ Collector

    def collect(self) -> Iterator[PromMetric]:
        yield from self._snapshot.families

    def describe(self) -> Iterator[PromMetric]:
        """Family names only, so registration neither collects nor touches NVML."""
        for m in FAST_FAMILIES + SLOW_FAMILIES + HEALTH_FAMILIES:
            spec = self._specs[m]
            yield spec.histogram_family(()) if m.kind is MetricKind.HISTOGRAM else spec.family(())

    def snapshot(self) -> Snapshot:
        """The families of the last cycles, immutable: what a scrape renders."""
        return self._snapshot

    def _publish(self) -> None:
        with self._publish_lock:
            self._snapshot = Snapshot((*self._fast, *self._slow, *self._health.families()))

    # ------------------------------------------------------------------ state for callers

    def gpus(self) -> tuple[GpuState, ...]:
        return tuple(GpuState(g, self._up.get(g.uuid, False)) for g in self._gpus)

    # ------------------------------------------------------------------ NVML lifecycle

    def _ensure_ready(self, now: float) -> bool:
        """Initialise NVML if it is not, at most once per backoff period."""
        with self._nvml_lock:
            if self._ready:
                return True
            if now < self._next_init:
                return False
            try:
                self.backend.init()
                self._driver = self.backend.driver_version()
                self._gpus = self.backend.devices()
            except NvmlError as e:
                self._count_error(e)
                self._next_init = now + self._backoff
                log.warning("NVML init failed (%s); retrying in %.0fs", e.name, self._backoff)
                self._backoff = min(self._backoff * 2, self._backoff_cap)
                return False
            log.info("NVML ready: driver %s, %d GPUs", self._driver, len(self._gpus))
            self._ready = True
            self._backoff = self._backoff_first
            return True

    def _driver_failed(self, e: NvmlError, now: float) -> None:
        with self._nvml_lock:
            if self._ready:
                log.warning("NVML failed as a whole (%s): re-initialising", e.name)
                with contextlib.suppress(NvmlError):
                    self.backend.shutdown()
            self._ready = False
            self._next_init = now  # retry at once; backoff starts if that fails

    def _count_error(self, e: NvmlError) -> None:
        self._health.error(e.name)

    def _unexpected(self, where: str, e: Exception, cycle: _Cycle) -> None:
        """An exception that is not an NVML error: the cycle is incomplete; logged once per place."""
        cycle.complete = False
        self._health.error(UNEXPECTED)
        key = (where, UNEXPECTED)
        if key not in self._logged:
            self._logged.add(key)
            log.error("GPU collection: unexpected error in %s", where, exc_info=e)

    def _skip(self, uuid: str, e: NvmlError) -> None:
        """A value this GPU does not offer: skipped every cycle, logged once."""
        key = (uuid, e.call)
        if key not in self._logged:
            self._logged.add(key)
            log.info("GPU %s: %s not supported, skipped", uuid, e.call)

    # ------------------------------------------------------------------ fast tier

    def collect_fast(self) -> bool:
        """One fast cycle; True if NVML answered (the GPUs may still be individually down)."""
        t0 = time.perf_counter()
        now = self.clock()
        cycle = _Cycle()
        ok = False
        try:
            rows = Rows(self._specs, self._extra_values)
            if self._ensure_ready(now):
                try:
                    self._read_fast(rows, now, cycle)
                    ok = True
                except DriverError as e:
                    self._count_error(e)
                    self._driver_failed(e, now)
                    rows = Rows(self._specs, self._extra_values)
                except NvmlError as e:  # a backend error outside any GPU: fail the cycle
                    self._count_error(e)
                    rows = Rows(self._specs, self._extra_values)
            if not ok:
                # Known GPUs read down instead of vanishing, so `gpu_up == 0` alerts fire.
                for g in self._gpus:
                    self._up[g.uuid] = False
                    rows.add(cat.GPU_UP, self._gpu_labels(g), 0.0)
            self._fast = rows.build(FAST_FAMILIES)
        except Exception as e:  # a bug: report nothing rather than stale values, and say so
            ok = False
            self._fast = ()
            self._unexpected("the fast cycle", e, cycle)
        self.last_success = ok
        self._health.cycle(
            "fast",
            time.perf_counter() - t0,
            complete=ok and cycle.complete,
            finished=self.clock() if ok else None,
        )
        self._publish()
        return ok

    @staticmethod
    def _gpu_labels(g: GpuIdentity) -> tuple[str, ...]:
        return (g.node, str(g.index), g.uuid)

    def _read_fast(self, fams: Rows, now: float, cycle: _Cycle) -> None:
        for g in self._gpus:
            base = self._gpu_labels(g)
            samples: list[Sample] = []
            try:
                self._read_gpu(g, samples, cycle)
            except GpuLostError as e:
                self._count_error(e)
                if self._up.get(g.uuid, True):
                    log.warning("GPU %s (%s/%d) is down: %s", g.uuid, g.node, g.index, e)
                self._up[g.uuid] = False
                fams.add(cat.GPU_UP, base, 0.0)
                continue
            if not self._up.get(g.uuid, True):
                log.info("GPU %s (%s/%d) is back", g.uuid, g.node, g.index)
            self._up[g.uuid] = True
            fams.add(cat.GPU_UP, base, 1.0)
            fams.add(cat.GPU_INFO, (*base, g.name, self._driver, g.pci_bus_id), 1.0)
            fams.add(cat.GPU_MEMORY_TOTAL, base, float(g.memory_total_bytes))
            for metric, labels, value in samples:
                fams.add(metric, base + labels, value)
        self._read_xids(now, cycle)
        for (g, xid), n in self._xid_count.items():
            labels = (*self._gpu_labels(g), str(xid))
            fams.add(cat.GPU_XID_ERRORS, labels, float(n))
            fams.add(cat.GPU_XID_LAST_SEEN, labels, self._xid_last[(g, xid)])

    def _attempt(self, g: GpuIdentity, read: Callable[[], None], cycle: _Cycle) -> None:
        """Run one read; GpuLostError and DriverError propagate, any other error skips the value."""
        try:
            read()
        except NotSupportedError as e:
            self._count_error(e)
            self._skip(g.uuid, e)
        except (GpuLostError, DriverError):
            raise
        except NvmlError as e:  # TIMEOUT, UNKNOWN, ...: this value is missing this cycle
            self._count_error(e)
        except Exception as e:  # not NVML's: a bug, kept to this value of this GPU
            self._unexpected(f"{read.__name__} of GPU {g.uuid}", e, cycle)

    def _read_gpu(self, g: GpuIdentity, out: list[Sample], cycle: _Cycle) -> None:
        """Every fast value of one GPU. GpuLostError and DriverError propagate; others skip a value."""
        b = self.backend
        dev = g.dev

        def fields() -> None:
            for ((fid, _), metric, labels, scale), v in zip(
                FIELDS, b.field_values(dev, FIELD_REQUEST), strict=True
            ):
                if isinstance(v, NvmlError):
                    if isinstance(v, GpuLostError | DriverError):
                        raise v
                    self._count_error(v)
                    if isinstance(v, NotSupportedError):
                        self._skip(g.uuid, v)
                        if fid in FIELD_FALLBACKS:
                            self._attempt(g, fallback(fid, metric, labels, scale), cycle)
                    continue
                out.append((metric, labels, v * scale))

        def fallback(
            fid: int, metric: Metric, labels: tuple[str, ...], scale: float
        ) -> Callable[[], None]:
            def read() -> None:
                out.append((metric, labels, FIELD_FALLBACKS[fid](b, dev) * scale))

            return read

        def utilization() -> None:
            u = b.utilization(dev)
            out.append((cat.GPU_UTILIZATION, (), u.gpu_percent / 100))
            out.append((cat.GPU_MEMORY_COPY_UTILIZATION, (), u.memory_percent / 100))

        def memory() -> None:
            m = b.memory(dev)
            out.append((cat.GPU_MEMORY_USED, (), float(m.used_bytes)))
            out.append((cat.GPU_MEMORY_FREE, (), float(m.free_bytes)))

        def temperature() -> None:
            out.append((cat.GPU_TEMPERATURE, (), b.temperature(dev)))

        def sm_clock() -> None:
            out.append((cat.GPU_SM_CLOCK, (), b.clock(dev, Clock.SM) * 1e6))

        def throttle() -> None:
            mask = b.throttle_reasons(dev)
            for bit, reason in THROTTLE_REASONS:
                out.append((cat.GPU_THROTTLE, (reason,), 1.0 if mask & bit else 0.0))

        for read in (fields, utilization, memory, temperature, sm_clock, throttle):
            self._attempt(g, read, cycle)

    def _read_xids(self, now: float, cycle: _Cycle) -> None:
        """Count XID events by code: a counter that never forgets a repeat, unlike a last-value gauge."""
        try:
            events = self.backend.xid_events(XID_EVENTS_PER_CYCLE)
        except DriverError:
            raise
        except NvmlError as e:  # the event set is per node: no one GPU to mark down
            self._count_error(e)
            return
        except Exception as e:
            self._unexpected("the XID drain", e, cycle)
            return
        for ev in events:
            if not 0 <= ev.dev < len(self._gpus):
                continue
            g = self._gpus[ev.dev]
            key = (g, ev.xid)
            self._xid_count[key] = self._xid_count.get(key, 0) + 1
            self._xid_last[key] = now
            log.warning("GPU %s (%s/%d): XID %d", g.uuid, g.node, g.index, ev.xid)

    # ------------------------------------------------------------------ slow tier

    def collect_slow(self) -> bool:
        """One slow cycle: processes and their owners, PCIe throughput, MIG instances."""
        t0 = time.perf_counter()
        now = self.clock()
        cycle = _Cycle()
        ok = False
        try:
            rows = Rows(self._specs, self._extra_values)
            if self._ready:
                try:
                    self._read_slow(rows, cycle)
                    ok = True
                except DriverError as e:
                    self._count_error(e)
                    self._driver_failed(e, now)
                    rows = Rows(self._specs, self._extra_values)
                except NvmlError as e:
                    self._count_error(e)
                    rows = Rows(self._specs, self._extra_values)
            self._slow = rows.build(SLOW_FAMILIES)
        except Exception as e:
            ok = False
            self._slow = ()
            self._unexpected("the slow cycle", e, cycle)
        self._health.cycle(
            "slow", time.perf_counter() - t0, complete=ok and cycle.complete, finished=None
        )
        self._publish()
        return ok

    def _read_slow(self, fams: Rows, cycle: _Cycle) -> None:
        b = self.backend
        procs: dict[str, tuple[GpuIdentity, tuple[ProcessMemory, ...]]] = {}
        for g in self._gpus:
            dev = g.dev
            out: list[Sample] = []

            def processes(g: GpuIdentity = g) -> None:
                procs[g.uuid] = (g, b.processes(g.dev))

            def pcie(dev: int = dev, out: list[Sample] = out) -> None:
                out.append((cat.GPU_PCIE_TX, (), b.pcie_throughput(dev, PcieCounter.TX) * 1000))
                out.append((cat.GPU_PCIE_RX, (), b.pcie_throughput(dev, PcieCounter.RX) * 1000))

            def video(dev: int = dev, out: list[Sample] = out) -> None:
                out.append((cat.GPU_ENCODER_UTILIZATION, (), b.encoder_utilization(dev) / 100))
                out.append((cat.GPU_DECODER_UTILIZATION, (), b.decoder_utilization(dev) / 100))

            def mem_clock(dev: int = dev, out: list[Sample] = out) -> None:
                out.append((cat.GPU_MEMORY_CLOCK, (), b.clock(dev, Clock.MEM) * 1e6))

            def mig(dev: int = dev, out: list[Sample] = out) -> None:
                for m in b.mig_instances(dev):
                    out.append((cat.GPU_MIG_INFO, (str(m.gpu_instance_id), m.profile), 1.0))

            try:
                for read in (processes, pcie, video, mem_clock, mig):
                    self._attempt(g, read, cycle)
            except GpuLostError as e:
                # The fast tier owns gpu_up; here a lost GPU just reports nothing.
                self._count_error(e)
                procs.pop(g.uuid, None)
                continue
            base = self._gpu_labels(g)
            for metric, labels, value in out:
                fams.add(metric, base + labels, value)
        owners: dict[tuple[str, int], Attribution] = {}
        try:
            owners = self.attributor.resolve(
                {uuid: [p.pid for p in ps] for uuid, (_, ps) in procs.items()}
            )
        except Exception as e:  # processes are still reported, without their pods
            self._unexpected("pod attribution", e, cycle)
        for uuid, (g, ps) in procs.items():
            base = self._gpu_labels(g)
            for p in ps:
                a = owners.get((uuid, p.pid), Attribution())
                job = self._job(p.pid, cycle)
                labels = (*base, str(p.pid), a.namespace, a.pod, a.container, job)
                fams.add(cat.GPU_PROCESS_MEMORY, labels, float(p.used_bytes))

    def _job(self, pid: int, cycle: _Cycle) -> str:
        if self.job_resolver is None:
            return ""
        try:
            return self.job_resolver(pid) or ""
        except Exception as e:  # the caller's resolver: its failure costs the job label only
            self._unexpected("the job resolver", e, cycle)
            return ""

    # ------------------------------------------------------------------ loops

    def collect_once(self) -> bool:
        """One fast and one slow cycle, synchronously (tests, benchmarks)."""
        ok = self.collect_fast()
        self.collect_slow()
        return ok

    async def start(self) -> None:
        """Collect once (so the first scrape has data), then refresh in the background."""
        self._stop.clear()
        await asyncio.to_thread(self.collect_once)
        self._tasks = [
            asyncio.create_task(self._loop(self.collect_fast, self.fast_interval), name="gpu-fast"),
            asyncio.create_task(self._loop(self.collect_slow, self.slow_interval), name="gpu-slow"),
        ]

    async def stop(self) -> None:
        self._stop.set()
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await asyncio.to_thread(self._shutdown)

    def _shutdown(self) -> None:
        with self._nvml_lock:
            if self._ready:
                with contextlib.suppress(NvmlError):
                    self.backend.shutdown()
            self._ready = False

    async def _loop(self, cycle: Callable[[], bool], interval: float) -> None:
        while not self._stop.is_set():
            # Wait first: start() has just run one cycle of each tier.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), interval)
            if self._stop.is_set():
                return
            try:
                await asyncio.to_thread(cycle)
            except Exception:  # the loop must outlive any bug in one cycle
                log.exception("GPU collection cycle failed")
