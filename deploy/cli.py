"""``novabrain``: one console script, one subcommand per job.

Every server subcommand takes ``--host``, ``--port`` and ``--stack PATH``
(default ``deploy/stack.yaml``), logs where it listens, and stops cleanly
(exit 0) on SIGTERM or Ctrl-C. Every mistake of the user's (a bad flag value,
an unusable path, an unreadable or invalid stack file, missing credentials, an
unreachable URL) is one line on stderr and exit 2, never a traceback; the
checks live in ``deploy.usage``. Component imports are deferred to the
subcommand that needs them, so ``novabrain --help`` and ``stack check`` stay fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import logging
import secrets
import signal
import sys
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import yaml

from deploy import usage
from deploy.stack import DEFAULT_STACK_PATH, Stack, StackError, load_stack
from deploy.usage import UsageError

if TYPE_CHECKING:
    from alerts.silence import Auditor

GENERATED_DIR = Path("deploy/generated")
PROVISIONING_DIR = Path("deploy/grafana")
RUNBOOKS_DIR = Path("docs/runbooks")
EXIT_CONFIG = 2  # every user mistake: a bad flag, path, file, URL or credentials
EXIT_INTERRUPTED = 130
LOG_LEVELS = ("debug", "info", "warning", "error")


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (the usage is one ``--help`` away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_CONFIG, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _stack_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--stack",
        type=Path,
        default=DEFAULT_STACK_PATH,
        metavar="PATH",
        help=f"stack file (default: {DEFAULT_STACK_PATH})",
    )


def _server_args(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--host",
        type=usage.host,
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1)",
    )
    p.add_argument(
        "--port", type=usage.port, default=None, help=f"port (default: the stack's ports.{what})"
    )
    _stack_arg(p)
    p.add_argument(
        "--log-level", choices=LOG_LEVELS, default="info", help="log threshold (default: info)"
    )


def _generate_args(p: argparse.ArgumentParser) -> None:
    _stack_arg(p)
    p.add_argument(
        "--out", type=Path, default=GENERATED_DIR, help=f"output dir (default: {GENERATED_DIR})"
    )
    p.add_argument(
        "--provisioning-out",
        type=Path,
        default=PROVISIONING_DIR,
        help=f"Grafana provisioning dir (default: {PROVISIONING_DIR})",
    )
    p.add_argument(
        "--runbooks-out",
        type=Path,
        default=RUNBOOKS_DIR,
        help=f"one runbook per alert (default: {RUNBOOKS_DIR})",
    )
    p.set_defaults(func=cmd_generate, needs_stack=True)


def _serve(
    args: argparse.Namespace,
    port: int,
    server: Callable[[], Coroutine[Any, Any, None]],
    *,
    user_errors: tuple[type[Exception], ...] = (),
) -> int:
    """Run a server until SIGTERM or Ctrl-C; a clean stop exits 0.

    The address is tried first, so a port in use or a foreign address is one
    line and exit 2. ``user_errors`` raised while the server starts (a bad
    --label, missing credentials) are the user's too.
    """
    usage.check_listen(args.host, port)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )

    async def until_stopped() -> None:
        # A server that handles the signals itself (the scheduler: it stops its
        # worker first) replaces these handlers; the others are cancelled.
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await server()

    try:
        asyncio.run(until_stopped())
    except user_errors as e:
        raise UsageError(str(e)) from None
    return 0


# ----------------------------------------------------------------------------- commands


def cmd_stack_check(args: argparse.Namespace, stack: Stack) -> int:
    print(
        f"{args.stack}: ok: {len(stack.pools)} pools, {stack.total_gpus} GPUs on "
        f"{sum(g.count for g in stack.node_groups)} nodes, {len(stack.models)} models, "
        f"{len(stack.reservations)} reservations, {len(stack.users)} users"
    )
    return 0


def token_entry(name: str, role: str, digest: str) -> str:
    """The stack file's ``rbac.users`` entry, as one line of YAML any name survives."""
    entry = [{"name": name, "role": role, "token_sha256": digest}]
    text = yaml.safe_dump(
        entry, default_flow_style=None, sort_keys=False, allow_unicode=True, width=1 << 20
    )
    return text.strip()


def cmd_token_new(args: argparse.Namespace) -> int:
    token = secrets.token_urlsafe(32)
    digest = hashlib.sha256(token.encode()).hexdigest()
    # The token is shown once, to the operator; only the hash goes in the stack file.
    print(f"token:        {token}")
    print(f"token_sha256: {digest}")
    print("add to rbac.users in the stack file:")
    print(f"  {token_entry(args.name, args.role, digest)}")
    return 0


def cmd_generate(args: argparse.Namespace, stack: Stack) -> int:
    from alerts.generate import write_all as write_alerts
    from alerts.runbooks import write_runbooks
    from dashboards.build import write_all as write_dashboards
    from dashboards.provisioning import write as write_provisioning
    from deploy.manifests.kustomize import write_all as write_manifests

    out = usage.writable_dir(args.out, "--out")
    provisioning = usage.writable_dir(args.provisioning_out, "--provisioning-out")
    runbooks = usage.writable_dir(args.runbooks_out, "--runbooks-out")
    try:
        written = [
            *write_alerts(stack, out),
            *write_dashboards(stack, out / "dashboards"),
            *write_provisioning(stack, provisioning),
            # The stack file's own text goes into the cluster's ConfigMap.
            *write_manifests(stack, args.stack.read_text(encoding="utf-8"), out / "kubernetes"),
            *write_runbooks(stack, runbooks),
        ]
    except OSError as e:
        raise UsageError(f"cannot write {e.filename}: {e.strerror}") from None
    for p in written:
        print(p)
    return 0


def cmd_alertmanager_config(args: argparse.Namespace, stack: Stack) -> int:
    from alerts.errors import AlertsError
    from alerts.generate import write_deployable

    out = usage.writable_dir(args.out, "--out")
    try:
        for p in write_deployable(stack, out):
            print(p)
    except OSError as e:
        raise UsageError(f"cannot write {e.filename}: {e.strerror}") from None
    except AlertsError as e:
        print(f"novabrain: {e}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def cmd_dashboards_deploy(args: argparse.Namespace, stack: Stack) -> int:
    from dashboards.deploy import deploy

    return deploy(stack, token=None, dry_run=args.dry_run, url=args.url)


def cmd_gpu_exporter(args: argparse.Namespace, stack: Stack) -> int:
    from exporters.gpu.errors import ConfigError
    from exporters.gpu.server import serve

    port = args.port or stack.ports.gpu_exporter
    labels = dict(args.label)
    if len(labels) < len(args.label):
        raise UsageError("--label: each KEY may be given once")
    return _serve(
        args,
        port,
        lambda: serve(
            stack, args.host, port, backend=args.backend, node=args.node, extra_labels=labels
        ),
        user_errors=(ConfigError,),
    )


def cmd_model_server(args: argparse.Namespace, stack: Stack) -> int:
    from exporters.modelserver.server import serve

    port = args.port or stack.ports.model_server
    if args.token_file is not None:
        usage.readable_file(args.token_file, "--token-file")
    return _serve(
        args,
        port,
        lambda: serve(
            stack, args.host, port, scheduler_url=args.scheduler_url, token_file=args.token_file
        ),
    )


def cmd_loadgen(args: argparse.Namespace) -> int:
    from exporters.modelserver.load import run_for

    usage.check_reachable(args.url, "--url")
    print(asyncio.run(run_for(args.url, args.model, args.rate, args.seconds, seed=args.seed)))
    return 0


def cmd_scheduler(args: argparse.Namespace, stack: Stack) -> int:
    from scheduler.actuators.errors import ActuatorConfigError
    from scheduler.service.app import serve

    port = args.port or stack.ports.scheduler
    state_dir = usage.writable_dir(args.state_dir, "--state-dir")
    if args.actuator == "kubernetes":
        try:
            import scheduler.actuators.kubernetes  # noqa: F401 (is the client installed?)
        except ImportError:
            raise UsageError(
                "--actuator kubernetes needs the Kubernetes client: "
                "pip install 'novabrain-ops[kubernetes]'"
            ) from None
    return _serve(
        args,
        port,
        lambda: serve(stack, args.host, port, state_dir=state_dir, actuator=args.actuator),
        user_errors=(ActuatorConfigError,),
    )


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0: the chain is whole; 1: tampered (where, on stdout); 2: the file cannot be
    read as an audit log, or a published point is malformed (one line on stderr)."""
    from scheduler.audit import AuditError, ChainPoint, verify

    try:
        head = None if args.expect_head is None else ChainPoint.parse(args.expect_head)
        first = None if args.expect_first is None else ChainPoint.parse(args.expect_first)
    except ValueError as e:
        print(f"novabrain: {e}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        result = verify(args.db, archive=args.archive, expected_head=head, expected_first=first)
    except AuditError as e:
        print(f"novabrain: {e}", file=sys.stderr)
        return EXIT_CONFIG
    print(result)
    return 0 if result.ok else 1


def cmd_audit_export(args: argparse.Namespace) -> int:
    from scheduler.audit import AuditError, export

    try:
        export(
            args.db,
            out=sys.stdout,
            fmt=args.format,
            since=args.since,
            until=args.until,
            user=args.user,
            operation=args.operation,
        )
    except AuditError as e:
        print(f"novabrain: {e}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def _silence_setup(args: argparse.Namespace, stack: Stack) -> tuple[str, Auditor]:
    from urllib.parse import urlsplit

    from alerts.silence import Auditor

    am = args.alertmanager_url or stack.alerting.alertmanager_url
    hook = urlsplit(stack.alerting.scheduler_webhook_url)
    scheduler = args.scheduler_url or f"{hook.scheme}://{hook.netloc}"
    return am, Auditor(scheduler, args.token_file)


def cmd_silence(args: argparse.Namespace, stack: Stack) -> int:
    from alerts.silence import (
        SilenceError,
        add,
        describe,
        expire,
        list_silences,
        parse_duration,
        parse_matchers,
    )

    try:
        if args.sub == "list":
            am = args.alertmanager_url or stack.alerting.alertmanager_url
            for s in list_silences(am, everything=args.all):
                print(describe(s))
            return 0
        am, auditor = _silence_setup(args, stack)
        if args.sub == "add":
            matchers = parse_matchers(args.matchers)
            duration = parse_duration(args.duration)
            sid = add(
                stack,
                am,
                matchers,
                author=args.author,
                comment=args.comment,
                duration=duration,
                auditor=auditor,
            )
            print(sid)
        else:
            expire(am, args.id, author=args.author, auditor=auditor)
            print(f"expired {args.id}")
        if not auditor.enabled:
            print("novabrain: not audited (no --token-file for the scheduler)", file=sys.stderr)
    except SilenceError as e:
        print(f"novabrain: {e}", file=sys.stderr)
        return e.exit_code
    return 0


def cmd_simulate(args: argparse.Namespace, stack: Stack) -> int:
    from scheduler.sim.cli import run_simulate

    return run_simulate(args, stack)


def cmd_demo(args: argparse.Namespace, stack: Stack) -> int:
    from deploy.demo import run_demo
    from deploy.procs import ALERTMANAGER_BIN, PROMETHEUS_BIN

    usage.require_tools(
        PROMETHEUS_BIN,
        ALERTMANAGER_BIN,
        hint="run 'make tools' (Debian's prometheus and prometheus-alertmanager)",
    )
    if args.workdir is not None:
        usage.writable_dir(args.workdir, "--workdir")
    return run_demo(stack, workdir=args.workdir, keep=args.keep)


# ----------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="novabrain",
        description="GPU monitoring, alerting and self-healing GPU pools, as code.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help: str, **kw: object) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help, description=help, **kw)  # type: ignore[arg-type]

    p = add(
        "demo", "run the whole closed loop on simulated GPUs with real Prometheus and Alertmanager"
    )
    _stack_arg(p)
    p.add_argument(
        "--workdir", type=Path, default=None, help="keep state here (default: a temp dir)"
    )
    p.add_argument("--keep", action="store_true", help="do not delete the work dir at the end")
    p.set_defaults(func=cmd_demo, needs_stack=True)

    p = add(
        "simulate",
        "replay job traces through the scheduler under several policies and report the trade-offs",
    )
    _stack_arg(p)
    from scheduler.sim.cli import add_arguments as simulate_args

    simulate_args(p)
    p.set_defaults(func=cmd_simulate, needs_stack=True)

    p = add("gpu-exporter", "serve NVML GPU metrics on /metrics")
    _server_args(p, "gpu_exporter")
    p.add_argument(
        "--backend", choices=("nvml", "sim"), default="nvml", help="NVML or simulated GPUs"
    )
    p.add_argument(
        "--node",
        type=usage.node_name,
        default=None,
        help="node label of every series (default: the host name); with --backend sim, "
        "serve only this node of the stack",
    )
    p.add_argument(
        "--label",
        type=usage.label,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a constant label on every series (repeatable), e.g. --label cluster=sh-prod",
    )
    p.set_defaults(func=cmd_gpu_exporter, needs_stack=True)

    p = add("model-server", "serve the simulated model server (instrumented) and /metrics")
    _server_args(p, "model_server")
    p.add_argument(
        "--scheduler-url",
        type=usage.http_url,
        default=None,
        help="poll the scheduler's pools for GPU counts (default: nominal)",
    )
    p.add_argument(
        "--token-file", type=Path, default=None, help="bearer token for the scheduler API"
    )
    p.set_defaults(func=cmd_model_server, needs_stack=True)

    p = add("loadgen", "send open-loop (Poisson) load to a model server and print latencies")
    p.add_argument("--url", type=usage.http_url, required=True, help="model server base URL")
    p.add_argument("--model", type=usage.printable, required=True)
    p.add_argument(
        "--rate",
        type=usage.finite(0, 100_000),
        default=100.0,
        help="requests per second (default: 100)",
    )
    p.add_argument(
        "--seconds", type=usage.finite(0, 86_400), default=10.0, help="duration (default: 10)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the arrival times")
    p.set_defaults(func=cmd_loadgen, needs_stack=False)

    p = add("scheduler", "serve the scheduler: Alertmanager webhook, REST API and /metrics")
    _server_args(p, "scheduler")
    p.add_argument(
        "--state-dir",
        type=Path,
        default=Path("/var/lib/novabrain"),
        help="SQLite state and audit log",
    )
    p.add_argument(
        "--actuator",
        choices=("simulated", "kubernetes"),
        default="simulated",
        help="act on an embedded simulated cluster, or on Kubernetes (the stack's kubernetes section)",
    )
    p.set_defaults(func=cmd_scheduler, needs_stack=True)

    p = add(
        "generate", "generate rules, Alertmanager/Prometheus config and dashboards from the stack"
    )
    _generate_args(p)

    rules = add("rules", "alerting and recording rules").add_subparsers(
        dest="sub", required=True, metavar="SUB"
    )
    p = rules.add_parser("build", help="same as generate", description="same as generate")
    _generate_args(p)

    amg = add("alertmanager", "Alertmanager configuration").add_subparsers(
        dest="sub", required=True, metavar="SUB"
    )
    p = amg.add_parser(
        "config",
        help="write alertmanager.yml and its templates for deployment, secrets read from files",
        description="write alertmanager.yml (mode 0600) and its templates for deployment: "
        "Alertmanager 0.25 reads no WeCom secret from a file, so it is read here from "
        "api_secret_file (the committed deploy/generated/alertmanager.yml has a marker)",
    )
    _stack_arg(p)
    p.add_argument("--out", type=Path, required=True, help="directory, e.g. /etc/alertmanager")
    p.set_defaults(func=cmd_alertmanager_config, needs_stack=True)

    dash = add("dashboards", "Grafana dashboards").add_subparsers(
        dest="sub", required=True, metavar="SUB"
    )
    p = dash.add_parser("build", help="same as generate", description="same as generate")
    _generate_args(p)
    p = dash.add_parser(
        "deploy",
        help="push dashboards to Grafana (token: GRAFANA_TOKEN or the stack's grafana.token_file)",
        description="push dashboards to Grafana (token: GRAFANA_TOKEN or the stack's grafana.token_file)",
    )
    _stack_arg(p)
    p.add_argument(
        "--url",
        type=usage.http_url,
        default=None,
        help="Grafana URL (default: the stack's grafana.url)",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
    p.set_defaults(func=cmd_dashboards_deploy, needs_stack=True)

    st = add("stack", "the stack file").add_subparsers(dest="sub", required=True, metavar="SUB")
    p = st.add_parser("check", help="validate a stack file", description="validate a stack file")
    _stack_arg(p)
    p.set_defaults(func=cmd_stack_check, needs_stack=True)

    tok = add("token", "API tokens").add_subparsers(dest="sub", required=True, metavar="SUB")
    p = tok.add_parser(
        "new", help="make a token and the hash for the stack file", description="make a token"
    )
    p.add_argument(
        "--name",
        type=usage.user_name,
        default="new-user",
        help="the user's name, as the audit log will show it",
    )
    p.add_argument(
        "--role", default="viewer", choices=("viewer", "operator", "admin", "alertmanager")
    )
    p.set_defaults(func=cmd_token_new, needs_stack=False)

    sil = add("silence", "ad-hoc Alertmanager silences, audited").add_subparsers(
        dest="sub", required=True, metavar="SUB"
    )

    def silence_args(p: argparse.ArgumentParser, audited: bool) -> None:
        _stack_arg(p)
        p.add_argument(
            "--alertmanager-url",
            type=usage.http_url,
            default=None,
            help="Alertmanager (default: the stack's alerting.alertmanager_url)",
        )
        if audited:
            p.add_argument(
                "--scheduler-url",
                type=usage.http_url,
                default=None,
                help="scheduler whose audit log records the call (default: the stack's)",
            )
            p.add_argument(
                "--token-file",
                type=Path,
                default=None,
                help="operator token for the scheduler: with it, every call is audited first",
            )
        p.set_defaults(func=cmd_silence, needs_stack=True)

    p = sil.add_parser(
        "add",
        help="silence alerts matching MATCHERs (never the scheduler's P0 alerts)",
        description="silence alerts matching MATCHERs (never the scheduler's P0 alerts)",
    )
    silence_args(p, True)
    p.add_argument("--author", required=True, help="who silences (shown in Alertmanager)")
    p.add_argument("--comment", required=True, help="why, e.g. a change ticket")
    p.add_argument("--duration", default="2h", help="how long: 90m, 2h, 1d (default: 2h)")
    p.add_argument("matchers", nargs="+", metavar="MATCHER", help='e.g. node="gpu-node-3"')
    p = sil.add_parser("list", help="active and pending silences", description="list silences")
    silence_args(p, False)
    p.add_argument("--all", action="store_true", help="expired ones too")
    p = sil.add_parser("expire", help="end a silence now", description="end a silence now")
    silence_args(p, True)
    p.add_argument("--author", required=True, help="who ends it (audited)")
    p.add_argument("id", help="the silence id (from add or list)")

    aud = add("audit", "the tamper-evident audit log").add_subparsers(
        dest="sub", required=True, metavar="SUB"
    )
    p = aud.add_parser(
        "verify",
        help="verify the hash chain",
        description="verify the hash chain: exit 0 intact, 1 tampered, 2 cannot be read",
    )
    p.add_argument("--db", type=Path, required=True, help="audit database")
    p.add_argument("--archive", type=Path, default=None, help="archive db the live log continues")
    p.add_argument(
        "--expect-head",
        metavar="SEQ:HASH",
        default=None,
        help="a head the service published (log line 'audit head'): the chain must hold it",
    )
    p.add_argument(
        "--expect-first",
        metavar="SEQ:HASH",
        default=None,
        help="where a retention purge left the chain starting (default: record 1)",
    )
    p.set_defaults(func=cmd_audit_verify, needs_stack=False)
    p = aud.add_parser("export", help="export records", description="export records")
    p.add_argument("--db", type=Path, required=True, help="audit database")
    p.add_argument("--since", default=None, help="ISO 8601 time or unix seconds")
    p.add_argument("--until", default=None, help="ISO 8601 time or unix seconds")
    p.add_argument("--user", default=None)
    p.add_argument("--operation", default=None)
    p.add_argument("--format", choices=("csv", "jsonl"), default="jsonl")
    p.set_defaults(func=cmd_audit_export, needs_stack=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not args.needs_stack:
            return int(args.func(args))
        try:
            stack = load_stack(args.stack)
        except StackError as e:
            print(f"novabrain: invalid stack {args.stack}: {e}", file=sys.stderr)
            return EXIT_CONFIG
        return int(args.func(args, stack))
    except UsageError as e:
        command = " ".join(c for c in (args.command, getattr(args, "sub", None)) if c)
        print(f"novabrain {command}: {e}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:  # Ctrl-C before a server's own handler is in place
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
