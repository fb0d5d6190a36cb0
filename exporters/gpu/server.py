"""HTTP for the GPU exporter: ``GET /metrics`` from the snapshot, ``GET /healthz``.

The handler renders the exporter's current snapshot and nothing else (in the
format and encoding the scraper asked for, once per snapshot however many ask):
NVML runs in the exporter's background loop, so a slow or failing GPU cannot
time a scrape out and no NVML error can reach this code.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry

from deploy.stack import Stack
from exporters.exposition import metrics_handler
from exporters.gpu.attribution import Attributor
from exporters.gpu.errors import ConfigError, PodResourcesError
from exporters.gpu.exporter import GpuExporter
from exporters.gpu.podresources import DEFAULT_SOCKET, KubeletPodResources
from exporters.nvml.backend import Nvml

log = logging.getLogger(__name__)

BACKENDS = ("nvml", "sim")


def build_app(exporter: GpuExporter) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        # 200 while the process serves; whether NVML answers is in the body (and in
        # the health metrics), because restarting the exporter does not fix a driver.
        gpus = exporter.gpus()
        return web.json_response(
            {
                "nvml": "ok" if exporter.last_success else "down",
                "gpus": len(gpus),
                "gpus_up": sum(1 for g in gpus if g.up),
            }
        )

    app = web.Application()
    app.router.add_get("/metrics", metrics_handler(exporter))
    app.router.add_get("/healthz", healthz)
    return app


def make_backend(stack: Stack, backend: str, *, node: str | None = None) -> Nvml:
    if backend == "sim":
        from exporters.nvml.sim import SimBackend

        if node is None:
            return SimBackend.from_stack(stack)
        # One node of the stack's cluster, as the exporter on that node would see it.
        slots = [g for g in stack.gpus() if g.node == node]
        if not slots:
            nodes = sorted({g.node for g in stack.gpus()})
            raise ConfigError(f"--node {node}: not a node of the stack ({', '.join(nodes)})")
        return SimBackend.from_slots(slots)
    if backend == "nvml":
        from exporters.nvml.real import NvmlBackend

        return NvmlBackend(node)
    raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")


async def serve(
    stack: Stack,
    host: str,
    port: int,
    *,
    backend: str = "nvml",
    node: str | None = None,
    extra_labels: Mapping[str, str] | None = None,
    fast_interval: float = 1.0,
    slow_interval: float = 5.0,
    job_resolver: Callable[[int], str | None] | None = None,
    pod_resources_socket: Path = DEFAULT_SOCKET,
) -> None:
    """Serve until cancelled: what ``novabrain gpu-exporter`` runs.

    Processes are attributed to pods through the kubelet's pod-resources socket
    when it exists (a GPU node running Kubernetes), else through /proc alone.
    """
    registry = CollectorRegistry()
    kubelet = None
    if backend == "nvml" and pod_resources_socket.exists():
        try:
            kubelet = KubeletPodResources(pod_resources_socket)
        except PodResourcesError as e:
            log.warning("no pod names from the kubelet: %s", e)
    exporter = GpuExporter(
        make_backend(stack, backend, node=node),
        registry,
        fast_interval=fast_interval,
        slow_interval=slow_interval,
        extra_labels=extra_labels,
        job_resolver=job_resolver,
        attributor=Attributor(pod_resources=kubelet),
    )
    await exporter.start()
    runner = web.AppRunner(build_app(exporter), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        log.info("GPU exporter (%s) on http://%s:%d/metrics", backend, host, port)
        await asyncio.Event().wait()  # until cancelled (Ctrl-C, SIGTERM)
    finally:
        await runner.cleanup()
        await exporter.stop()
        if kubelet is not None:
            kubelet.close()
