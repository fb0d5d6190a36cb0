"""The closed loop, end to end, on simulated GPUs with real Prometheus and Alertmanager.

``SimulatedStack`` starts every part on loopback, in this process, around one
simulated world:

    load generator ──> model server (p0-risk) ──/metrics──┐
                          ▲ capacity = GPUs P0 holds       │
    simulated NVML ──> GPU exporter ─────────/metrics──────┤──> Prometheus ──rules──> Alertmanager
         ▲ load follows each GPU's pool                    │        (real binary)       (real binary)
         │                                                 │                               │ webhook
    scheduler runtime <── REST API / webhook ──/metrics────┘ <─────────────────────────────┘
         (owns the gpu -> pool assignment: rebalance preempts P1/P2 and lends their GPUs to P0)

The model server, the GPU exporter and the scheduler are the same components
that ``novabrain model-server``, ``gpu-exporter --backend sim`` and
``scheduler`` serve on their own; here they share one world so a GPU moved to
P0 shows P0's load on the GPU panels and really adds serving capacity.

``run_scenario`` drives the story (steady load, a spike on the P0 model, the
loop closing, the spike ending, the borrowed GPUs going back) and reports each
step as an ``Event``; ``novabrain demo`` prints them, the e2e test asserts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import math
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import yaml
from aiohttp import web
from prometheus_client import CollectorRegistry

from deploy.oncall import MailServer, WeComServer
from deploy.procs import AlertmanagerProcess, PrometheusProcess, free_port
from deploy.stack import Channel, EmailChannel, Stack, User, WebhookChannel, WechatChannel

# The demo's clock: the production loop, compressed from minutes to seconds.
FAST_TIMING = {
    "scrape_interval_seconds": 1.0,
    "latency_alert_for_seconds": 5.0,
    "group_wait_seconds": 1.0,
    "group_interval_seconds": 2.0,
    "return_stabilization_seconds": 15.0,
}
# The demo's workload has been running for hours, but preemption guards are
# scaled to the compressed clock too.
FAST_POLICY = {"min_runtime_seconds": 5.0, "default_grace_seconds": 5.0}
WORLD_TICK_SECONDS = 0.5
SPIKE_BASE_FACTOR = 0.5
SPIKE_FACTOR = 1.25


@dataclass(frozen=True)
class Event:
    """One step of the scenario, as it happened."""

    at: float  # seconds since the scenario started
    step: str  # machine-readable: "spike", "breach", "firing", "webhook", "moved", ...
    text: str
    data: dict[str, Any] = field(default_factory=dict)


class DemoError(RuntimeError):
    """A step of the loop did not happen within its deadline."""


def _fast_stack(stack: Stack) -> Stack:
    fast = stack.with_timing(**FAST_TIMING)
    return dataclasses.replace(fast, policy=dataclasses.replace(fast.policy, **FAST_POLICY))


@dataclass
class _Tokens:
    alertmanager: str
    viewer: str
    operator: str
    admin: str


def _with_fresh_tokens(stack: Stack) -> tuple[Stack, _Tokens]:
    """Replace the stack's users by demo users whose tokens only this process knows."""
    tokens = _Tokens(*(secrets.token_urlsafe(24) for _ in range(4)))
    users = tuple(
        User(name, role, hashlib.sha256(tok.encode()).hexdigest())
        for name, role, tok in (
            ("alertmanager", "alertmanager", tokens.alertmanager),
            ("demo-viewer", "viewer", tokens.viewer),
            ("demo-operator", "operator", tokens.operator),
            ("demo-admin", "admin", tokens.admin),
        )
    )
    return dataclasses.replace(stack, users=users), tokens


class _Server:
    """An aiohttp application served on 127.0.0.1:port until stopped."""

    def __init__(self, app: web.Application, port: int) -> None:
        self.app = app
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self._runner = web.AppRunner(app, access_log=None)

    async def start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        await self._runner.cleanup()


# What on-call's channels are in the demo: a real SMTP server and a WeCom API on loopback.
SMTP_USER, SMTP_PASSWORD = "novabrain-alerts", "demo-smtp-password"
WECOM_SECRET = "demo-wecom-secret"  # noqa: S105 (the demo's own loopback WeCom)
_RESOLVED = ("[RESOLVED]", "[已恢复]")


class OnCall:
    """What on-call received, from every channel: each notification's receiver, channel,
    status and subject (the email subject, the WeCom message's first line)."""

    def __init__(self) -> None:
        self.notifications: list[dict[str, Any]] = []
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.app = web.Application()
        self.app.router.add_post("/oncall/{receiver}", self._webhook)
        self._loop: asyncio.AbstractEventLoop | None = None

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def _add(self, note: dict[str, Any]) -> None:
        self.notifications.append(note)
        for listener in self.listeners:
            listener(note)

    def add(self, note: dict[str, Any]) -> None:
        """Record a notification; safe from the SMTP server's thread."""
        if self._loop is None:
            self._add(note)
        else:
            self._loop.call_soon_threadsafe(self._add, note)

    def mail(self, mail: Any) -> None:
        subject = mail.subject
        status = "resolved" if subject.startswith(_RESOLVED) else "firing"
        to = ", ".join(mail.to)
        self.add({"receiver": to, "channel": "email", "status": status, "subject": subject})

    def wecom(self, body: dict[str, Any]) -> None:
        first = str(body.get("markdown", {}).get("content", "")).splitlines()[0].lstrip("# ")
        status = "resolved" if first.startswith(_RESOLVED) else "firing"
        to = f"party {body.get('toparty', '-')}"
        self.add({"receiver": to, "channel": "wecom", "status": status, "subject": first})

    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.json()
        name = body.get("commonLabels", {}).get("alertname", "")
        subject = f"[{body['status']}] {name}"
        self.add(
            {
                "receiver": request.match_info["receiver"],
                "channel": "webhook",
                "status": body["status"],
                "subject": subject,
            }
        )
        return web.Response(status=200)


class SimulatedStack:
    """Every part of the closed loop on loopback; ``async with`` starts and always stops it."""

    def __init__(self, stack: Stack, workdir: Path, *, fast: bool = True) -> None:
        self.workdir = Path(workdir)
        base = _fast_stack(stack) if fast else stack
        self.ports = {
            k: free_port()
            for k in ("scheduler", "gpu_exporter", "model_server", "oncall", "wecom", "prometheus")
        }
        sched_url = f"http://127.0.0.1:{self.ports['scheduler']}/api/v1/alerts"
        self.oncall = OnCall()
        self.mail = MailServer(SMTP_USER, SMTP_PASSWORD, on_mail=self.oncall.mail)
        corp = next(
            (
                c.corp_id
                for r in base.alerting.oncall
                for c in r.channels
                if isinstance(c, WechatChannel)
            ),
            "demo-corp",
        )
        self.wecom = WeComServer(corp, WECOM_SECRET, on_message=self.oncall.wecom)
        oncall = tuple(
            dataclasses.replace(r, channels=tuple(self._loopback(c, r.name) for c in r.channels))
            for r in base.alerting.oncall
        )
        base = dataclasses.replace(
            base,
            ports=dataclasses.replace(
                base.ports,
                scheduler=self.ports["scheduler"],
                gpu_exporter=self.ports["gpu_exporter"],
                model_server=self.ports["model_server"],
            ),
            alerting=dataclasses.replace(
                base.alerting,
                scheduler_webhook_url=sched_url,
                # The scheduler's load poller asks the demo's Prometheus for P0's load.
                prometheus_url=f"http://127.0.0.1:{self.ports['prometheus']}",
                webhook_credentials_file=str(self.workdir / "alertmanager-token"),
                oncall=oncall,
            ),
        )
        self.stack, self.tokens = _with_fresh_tokens(base)
        self._servers: list[_Server] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._stop = asyncio.Event()
        self.prometheus: PrometheusProcess | None = None
        self.alertmanager: AlertmanagerProcess | None = None
        self.loadgens: dict[str, Any] = {}

    def _loopback(self, c: Channel, receiver: str) -> Channel:
        """The stack's channel, pointed at the demo's on-call servers (PagerDuty becomes a
        webhook: there is no PagerDuty here)."""
        if isinstance(c, EmailChannel):
            return dataclasses.replace(
                c,
                smarthost=f"127.0.0.1:{self.mail.port}",
                require_tls=False,
                auth_username=SMTP_USER,
                auth_password_file=str(self.workdir / "smtp-password"),
                ca_file=None,
            )
        if isinstance(c, WechatChannel):
            return dataclasses.replace(
                c,
                api_url=f"http://127.0.0.1:{self.ports['wecom']}/cgi-bin/",
                api_secret_file=str(self.workdir / "wecom-secret"),
            )
        return WebhookChannel(f"http://127.0.0.1:{self.ports['oncall']}/oncall/{receiver}")

    async def stop_gpu_exporter(self) -> None:
        """Take the GPU exporter's endpoint away, as a crashed exporter would."""
        self._servers.remove(self._gpu_server)
        await self._gpu_server.stop()

    async def start_gpu_exporter(self) -> None:
        from exporters.gpu.server import build_app

        await self._serve(build_app(self.gpu_exporter), self.ports["gpu_exporter"])
        self._gpu_server = self._servers[-1]

    # -- urls
    @property
    def scheduler_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['scheduler']}"

    @property
    def gpu_exporter_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['gpu_exporter']}"

    @property
    def model_server_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['model_server']}"

    async def __aenter__(self) -> SimulatedStack:
        try:
            await self._start()
        except BaseException:
            await self._shutdown()
            raise
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._shutdown()

    async def _serve(self, app: web.Application, port: int) -> None:
        server = _Server(app, port)
        await server.start()
        self._servers.append(server)

    async def _start(self) -> None:
        from alerts.alertmanager import alertmanager_config
        from alerts.generate import templates
        from alerts.prometheus_config import (
            GPU_EXPORTER_JOB,
            MODEL_SERVER_JOB,
            SCHEDULER_JOB,
            prometheus_config,
        )
        from alerts.receivers import read_secret_file
        from alerts.rules import rule_files
        from exporters.gpu.exporter import GpuExporter
        from exporters.gpu.server import build_app as build_gpu_app
        from exporters.modelserver.sim import ModelServerSim
        from exporters.nvml.sim import SimBackend
        from scheduler.runtime import SchedulerRuntime
        from scheduler.service.app import build_app as build_scheduler_app
        from scheduler.service.app import service_config
        from scheduler.sim.workload import demo_workload

        self.workdir.mkdir(parents=True, exist_ok=True)
        stack = self.stack
        cred = Path(stack.alerting.webhook_credentials_file)
        cred.write_text(self.tokens.alertmanager)
        cred.chmod(0o600)

        # The scheduler owns pool membership; it starts with a cluster that has
        # been running for hours: P0's replicas on its own GPUs, P1/P2 full.
        self.scheduler_registry = CollectorRegistry()
        self.runtime = SchedulerRuntime.from_stack(
            stack, db_path=self.workdir / "scheduler.db", registry=self.scheduler_registry
        )
        self.runtime.seed(demo_workload(stack))
        await self._serve(
            build_scheduler_app(
                stack,
                self.runtime,
                audit_path=self.workdir / "audit.db",
                registry=self.scheduler_registry,
                config=service_config(stack),
            ),
            self.ports["scheduler"],
        )

        self.model_registry = CollectorRegistry()
        self.model_server = ModelServerSim(
            stack, self.model_registry, gpus_for_pool=self.runtime.serving_gpus
        )
        await self._serve(self.model_server.app(), self.ports["model_server"])

        self.gpu_registry = CollectorRegistry()
        self.backend = SimBackend.from_stack(stack)
        self.gpu_exporter = GpuExporter(
            self.backend,
            self.gpu_registry,
            fast_interval=stack.prometheus.scrape_interval_seconds,
            slow_interval=5 * stack.prometheus.scrape_interval_seconds,
        )
        self._update_world()
        await self.gpu_exporter.start()
        await self._serve(build_gpu_app(self.gpu_exporter), self.ports["gpu_exporter"])
        self._gpu_server = self._servers[-1]
        await self._serve(self.oncall.app, self.ports["oncall"])
        await self._serve(self.wecom.app, self.ports["wecom"])
        # Alertmanager 0.25 sends the password file's bytes as they are: no newline.
        for name, secret in (("smtp-password", SMTP_PASSWORD), ("wecom-secret", WECOM_SECRET)):
            (self.workdir / name).write_text(secret)
            (self.workdir / name).chmod(0o600)
        self.oncall.bind(asyncio.get_running_loop())
        await asyncio.to_thread(self.mail.start)
        self._mail_started = True
        self._tasks.append(asyncio.create_task(self._world_loop(), name="world"))

        # The real binaries, configured from the same stack the CEO would deploy.
        self.alertmanager = AlertmanagerProcess(
            alertmanager_config(stack, read_secret=read_secret_file),
            self.workdir / "alertmanager",
            files=templates(stack),
        )
        await asyncio.to_thread(self.alertmanager.start)
        rules = {
            name: yaml.safe_dump(doc, sort_keys=False) for name, doc in rule_files(stack).items()
        }
        prom_cfg = prometheus_config(
            stack,
            targets={
                GPU_EXPORTER_JOB: [f"127.0.0.1:{self.ports['gpu_exporter']}"],
                MODEL_SERVER_JOB: [f"127.0.0.1:{self.ports['model_server']}"],
                SCHEDULER_JOB: [f"127.0.0.1:{self.ports['scheduler']}"],
            },
            rule_files=list(rules),
            alertmanager_url=self.alertmanager.url,
        )
        self.prometheus = PrometheusProcess(
            prom_cfg, self.workdir / "prometheus", rule_files=rules, port=self.ports["prometheus"]
        )
        await asyncio.to_thread(self.prometheus.start)

    def _update_world(self) -> None:
        """Make every simulated GPU show the load of the pool the scheduler put it in."""
        busy = {p.name: self.model_server.busy_ratio(p.name) for p in self.stack.pools}
        served = {m.pool for m in self.stack.models}
        assignments = self.runtime.gpu_assignments()
        now = time.time()
        for g in self.stack.gpus():
            _, pool = assignments.get(g.uuid, (g.node, ""))
            if not pool:
                util = 0.0
            elif pool in served:
                util = busy.get(pool, 0.0)
            else:
                # Training and batch keep their GPUs busy, with a slow wobble so
                # the panels are not flat lines.
                util = 0.88 + 0.07 * math.sin(now / 7.0 + g.index)
            self.backend.set(
                g.uuid,
                utilization=util,
                memory_used_bytes=int(g.memory_bytes * (0.05 + 0.85 * min(1.0, util * 1.1))),
                temperature_celsius=34.0 + 46.0 * util,
                power_watts=70.0 + 580.0 * util,
            )

    async def _world_loop(self) -> None:
        while not self._stop.is_set():
            self._update_world()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stop.wait(), WORLD_TICK_SECONDS)

    def start_load(self, model: str, rate_qps: float) -> Any:
        """Start (or retarget) the load generator for ``model``."""
        from exporters.modelserver.load import LoadGenerator

        gen = self.loadgens.get(model)
        if gen is None:
            gen = LoadGenerator(self.model_server_url, model, rate_qps)
            self.loadgens[model] = gen
            self._tasks.append(asyncio.create_task(gen.run(self._stop), name=f"load-{model}"))
        gen.rate_qps = rate_qps
        return gen

    async def api(self, path: str, token: str | None = None) -> Any:
        """GET the scheduler's REST API as the demo viewer."""
        headers = {"Authorization": f"Bearer {token or self.tokens.viewer}"}
        timeout = aiohttp.ClientTimeout(total=10)
        async with (
            aiohttp.ClientSession(timeout=timeout) as s,
            s.get(self.scheduler_url + path, headers=headers) as r,
        ):
            r.raise_for_status()
            return await r.json()

    async def _shutdown(self) -> None:
        self._stop.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        for proc in (self.prometheus, self.alertmanager):
            if proc is not None:
                await asyncio.to_thread(proc.stop)
        if hasattr(self, "gpu_exporter"):
            await self.gpu_exporter.stop()
        for server in reversed(self._servers):
            await server.stop()
        if getattr(self, "_mail_started", False):
            await asyncio.to_thread(self.mail.stop)
        if hasattr(self, "runtime"):
            self.runtime.close()


# ----------------------------------------------------------------------------- scenario


async def _until(
    what: str, check: Callable[[], Awaitable[Any]], timeout: float, interval: float = 0.5
) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise DemoError(f"{what}: not seen within {timeout:.0f}s")
        await asyncio.sleep(interval)


@dataclass
class Timeline:
    events: list[Event] = field(default_factory=list)

    def at(self, step: str) -> float:
        for e in self.events:
            if e.step == step:
                return e.at
        raise KeyError(step)


async def run_scenario(
    env: SimulatedStack,
    emit: Callable[[Event], None] = lambda e: None,
    *,
    step_timeout: float = 90.0,
) -> Timeline:
    """Steady load, a spike on the P0 model, the loop closing, the spike ending, GPUs going back."""
    from alerts.rules import latency_alert_name, p99_expr

    assert env.prometheus is not None
    prom = env.prometheus
    stack = env.stack
    model = next(m for m in stack.models if m.action == "rebalance")
    pool = model.pool
    threshold = model.slo.latency_threshold_seconds
    alert = latency_alert_name(model)
    quantile_expr = p99_expr(stack, model)
    own = env.runtime.serving_gpus(pool)
    # Half of what P0's own GPUs serve, then a spike 25% past it: over the
    # threshold on P0's own GPUs, comfortably under once it borrows a step.
    base_rate = SPIKE_BASE_FACTOR * env.model_server.capacity_qps(model.name, own)
    spike_rate = SPIKE_FACTOR * env.model_server.capacity_qps(model.name, own)
    t0 = time.monotonic()
    timeline = Timeline()

    def record(step: str, text: str, **data: Any) -> None:
        e = Event(round(time.monotonic() - t0, 1), step, text, data)
        timeline.events.append(e)
        emit(e)

    # Every notification on-call receives, as it arrives.
    env.oncall.listeners.append(
        lambda n: record(
            "page", f"  on-call {n['channel']} to {n['receiver']}: {n['subject']}", **n
        )
    )

    async def p99() -> float | None:
        res = await prom.aquery(quantile_expr)
        if not res:
            return None
        v = float(res[0]["value"][1])
        return None if math.isnan(v) else v

    async def alert_state() -> str | None:
        for a in await prom.aalerts():
            if a["labels"].get("alertname") == alert and a["labels"].get("model") == model.name:
                return str(a["state"])
        return None

    pools = {p["name"]: p for p in await env.api("/api/v1/pools")}
    record(
        "start",
        f"stack up: {stack.total_gpus} simulated GPUs; "
        + ", ".join(f"{n} holds {env.runtime.serving_gpus(n)}" for n in pools)
        + f"; Prometheus {prom.url}, Alertmanager {env.alertmanager.url if env.alertmanager else '-'}",
    )
    env.start_load(model.name, base_rate)
    record(
        "load",
        f"steady load on {model.name}: {base_rate:.0f} req/s (threshold p99 {threshold * 1000:.0f} ms)",
    )
    healthy = await _until("p99 under the threshold at steady load", p99, step_timeout)
    record("steady", f"p99 {healthy * 1000:.1f} ms with {own} GPUs", p99=healthy)

    env.start_load(model.name, spike_rate)
    record("spike", f"market-open spike: {spike_rate:.0f} req/s on {model.name}")

    async def breaching() -> float | None:
        v = await p99()
        return v if v is not None and v > threshold else None

    v = await _until("p99 above the threshold", breaching, step_timeout)
    record("breach", f"breach: p99 {v * 1000:.1f} ms > {threshold * 1000:.0f} ms", p99=v)

    await _until("alert firing", lambda: _is(alert_state, "firing"), step_timeout)
    record(
        "firing",
        f"alert {alert} firing (pending for {stack.alerting.latency_alert_for_seconds:.0f}s)",
    )

    async def webhook_decision() -> dict[str, Any] | None:
        for d in await env.api("/api/v1/decisions?limit=50"):
            if d.get("pool") == pool and d.get("action") == "rebalance":
                return dict(d)
        return None

    d = await _until("webhook → rebalance decision", webhook_decision, step_timeout)
    record(
        "webhook", f"webhook received; decision {d.get('id')}: {d.get('reason', '')}", decision=d
    )
    sizing = d.get("sizing")
    if isinstance(sizing, dict):  # the alert carried the model's rate: the grant was sized
        record("sized", _sized(sizing, threshold, model.slo.latency_quantile), **sizing)
    else:
        record(
            "sized",
            f"no request rate on the alert: a fixed step of {stack.policy.rebalance_step_gpus} GPUs",
        )

    async def moved() -> int | None:
        n = env.runtime.serving_gpus(pool)
        return n if n > own else None

    grown = await _until("GPUs moved to the P0 pool", moved, step_timeout)
    victims = [str(v) for v in d.get("victims", [])]
    lost = sum(
        float(j.get("gpu_seconds_lost", 0.0))
        for j in await env.api("/api/v1/jobs")
        if j["id"] in victims
    )
    pods, spanning = _pods_on_nodes(stack, await env.api("/api/v1/jobs"))
    record(
        "moved",
        f"GPUs moved: {pool} {own} → {grown}; preempted {', '.join(victims) or 'none'} "
        f"after their grace period ({lost:.0f} GPU-seconds of work since their last checkpoints lost); "
        f"{pods} pods running, {spanning} of them across nodes",
        gpus=grown,
        victims=victims,
        pods=pods,
        pods_spanning_nodes=spanning,
    )

    stages = await _time_to_capacity(env, str(d.get("job") or ""))
    record(
        "capacity",
        "time to capacity: "
        + ", ".join(f"{stage.replace('_', ' ')} {sec:.1f}s" for stage, sec in stages.items())
        + " after the alert reached the scheduler",
        **stages,
    )

    async def recovered() -> float | None:
        v = await p99()
        return v if v is not None and v <= threshold else None

    v = await _until("p99 back under the threshold", recovered, step_timeout)
    record("recovered", f"p99 back to {v * 1000:.1f} ms with {grown} GPUs", p99=v)
    await _until("alert resolved", lambda: _is(alert_state, None), step_timeout)
    record("resolved", f"alert {alert} resolved")

    env.start_load(model.name, base_rate)
    record("calm", f"spike over: back to {base_rate:.0f} req/s")

    async def returned() -> int | None:
        n = env.runtime.serving_gpus(pool)
        return n if n <= own else None

    back = await _until(
        "borrowed GPUs returned", returned, step_timeout + stack.policy.return_stabilization_seconds
    )

    async def resumed() -> list[str] | None:
        jobs = {j["id"]: j for j in await env.api("/api/v1/jobs")}
        done = [
            v for v in victims if jobs[v]["state"] == "running" and jobs[v]["resume_count"] >= 1
        ]
        return done if len(done) == len(victims) else None

    again = await _until("preempted jobs resumed", resumed, step_timeout)
    record(
        "returned",
        f"the load needing them no more for {stack.policy.return_stabilization_seconds:.0f}s, "
        "borrowed GPUs returned: "
        f"{pool} holds {back}; {len(again)} preempted jobs resumed (from their last checkpoints where they had one)",
        gpus=back,
        resumed=again,
    )
    # A platform alert pages every team, each in its language: stop the GPU exporter.
    await env.stop_gpu_exporter()
    record("exporter", "GPU exporter stopped: Prometheus cannot scrape it")

    async def paged() -> list[str] | None:
        subjects = [
            n["subject"] for n in env.oncall.notifications if "NovabrainTargetDown" in n["subject"]
        ]
        zh = any(x.startswith("[告警") for x in subjects)
        en = any(x.startswith("[FIRING") for x in subjects)
        return subjects if zh and en else None

    await _until("NovabrainTargetDown paged in zh and en", paged, step_timeout)
    await env.start_gpu_exporter()
    record("exporter", "GPU exporter back")
    pages = env.oncall.notifications
    by_channel = {
        c: sum(1 for n in pages if n["channel"] == c) for c in ("email", "wecom", "webhook")
    }
    record(
        "oncall",
        f"on-call received {len(pages)} notifications (firing and resolved): "
        + ", ".join(f"{k} {v}" for k, v in by_channel.items()),
    )
    return timeline


def _sized(sizing: dict[str, Any], threshold: float, quantile: float) -> str:
    """The sized grant as on-call reads it: the inputs and the prediction (None: unstable)."""

    def ms(v: Any) -> str:
        return "unstable" if v is None else f"{float(v) * 1000:.0f} ms"

    q = f"p{quantile * 100:g}"
    return (
        f"sized grant: {float(sizing['rate_rps']):.0f} req/s at "
        f"{float(sizing['service_time_seconds']) * 1000:.0f} ms a request needs "
        f"{int(sizing['needed_gpus'])} GPUs; {int(sizing['held_gpus'])} serving + "
        f"{int(sizing['credit_gpus'])} granted, so {int(sizing['want_gpus'])} more; predicted {q} "
        f"{ms(sizing['quantile_before_seconds'])} → {ms(sizing['quantile_after_seconds'])} "
        f"(threshold {threshold * 1000:.0f} ms)"
    )


async def _time_to_capacity(env: SimulatedStack, burst: str) -> dict[str, float]:
    """The grant's stages (grant_timing), from the scheduler's recorded decisions: only
    the decisions of the grant and of its victims, so no other grant mixes in."""
    from scheduler.core.model import Decision
    from scheduler.grant_timing import GrantTimer

    rows = await env.api("/api/v1/decisions?limit=10000")
    ds = sorted((Decision.from_dict(r) for r in rows), key=lambda x: x.id)
    grant = next((x for x in ds if x.job == burst and x.action == "rebalance"), None)
    if grant is None:
        return {}
    mine = {burst, *grant.victims}
    return {stage: secs for _, stage, secs in GrantTimer().observe(x for x in ds if x.job in mine)}


def _pods_on_nodes(stack: Stack, jobs: list[dict[str, Any]]) -> tuple[int, int]:
    """(pods running, pods whose GPUs are on more than one node): the API lists a job's
    GPUs pod by pod."""
    node = {g.uuid: g.node for g in stack.gpus()}
    pods = spanning = 0
    for j in jobs:
        ids = j["gpu_ids"]
        at = 0
        for size in j.get("pods") or [len(ids)]:
            if not ids:
                break
            pods += 1
            spanning += len({node.get(u, u) for u in ids[at : at + size]}) > 1
            at += size
    return pods, spanning


async def _is(state: Callable[[], Awaitable[str | None]], want: str | None) -> bool:
    return (await state()) == want


# ----------------------------------------------------------------------------- command


async def _demo(stack: Stack, workdir: Path) -> int:
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    assert main is not None
    # SIGTERM stops the demo as cleanly as Ctrl-C does.
    loop.add_signal_handler(signal.SIGTERM, main.cancel)

    def show(e: Event) -> None:
        print(f"[{e.at:6.1f}s] {e.text}", flush=True)

    print(f"novabrain demo: work dir {workdir}", flush=True)
    async with SimulatedStack(stack, workdir) as env:
        timeline = await run_scenario(env, show)
    took = timeline.at("moved") - timeline.at("breach")
    print(f"closed loop: breach → GPUs moved in {took:.1f}s; everything stopped.", flush=True)
    return 0


def run_demo(stack: Stack, *, workdir: Path | None = None, keep: bool = False) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="novabrain-demo-")) if workdir is None else Path(workdir)
    try:
        return asyncio.run(_demo(stack, tmp))
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted: everything stopped", file=sys.stderr)
        return 130
    except DemoError as e:
        print(f"demo failed: {e}", file=sys.stderr)
        return 1
    finally:
        if workdir is None and not keep:
            shutil.rmtree(tmp, ignore_errors=True)
