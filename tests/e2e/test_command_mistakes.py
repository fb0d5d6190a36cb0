"""One rule for user mistakes: one line on stderr naming what is wrong, exit 2, no traceback, no hang.

Each case runs the installed ``novabrain`` as a process (see proc_testlib) with a
time bound, in a scratch directory. Placeholders in the arguments: ``{stack}``
the case's stack file (the committed one, edited as the case says), ``{file}``
a regular file, ``{closed}`` a port nothing listens on, ``{busy}`` a port this
test holds open.
"""

from __future__ import annotations

import argparse
import re
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from proc_testlib import STACK, looks_like_a_traceback, run

from deploy.cli import build_parser
from deploy.procs import free_port

pytestmark = pytest.mark.process

TEXT = STACK.read_text()


def edited(old: str, new: str) -> bytes:
    assert old in TEXT, old
    return TEXT.replace(old, new).encode()


@dataclass(frozen=True)
class Mistake:
    id: str
    args: tuple[str, ...]
    says: str  # a fragment of the one line
    stack: bytes | None = None  # the stack file's bytes, if not the committed stack's
    env: dict[str, str] = field(default_factory=dict)


CAP_LINE = TEXT[: TEXT.index("  fairness_cap: 400")].count("\n") + 1
NESTED = b"version: 1\nname: " + b"[" * 100_000 + b"]" * 100_000 + b"\n"

# One case per line: the table reads as a list of mistakes.
# fmt: off
MISTAKES = [
    # Stack files that are not a stack.
    Mistake("stack-latin1", ("stack", "check", "--stack", "{stack}"), "is not UTF-8: byte 0xe9", TEXT.encode().replace(b"folder: NovaBrain", b"folder: NovaBrain caf\xe9")),
    Mistake("stack-utf16", ("stack", "check", "--stack", "{stack}"), "is UTF-16", TEXT.encode("utf-16")),
    Mistake("stack-nested", ("scheduler", "--stack", "{stack}"), "nested deeper than 32 levels", NESTED),
    Mistake("stack-missing-default", ("stack", "check"), "cannot read stack file deploy/stack.yaml"),
    Mistake("stack-a-directory", ("stack", "check", "--stack", "."), "cannot read stack file ."),
    Mistake("stack-bad-field", ("stack", "check", "--stack", "{stack}"), "pools[1].lending_limit", edited("lending_limit: 12", "lending_limit: 99")),
    Mistake("stack-duplicate-key", ("stack", "check", "--stack", "{stack}"), f"duplicate key 'fairness_cap' (first given at line {CAP_LINE})", edited("  fairness_cap: 400  ", "  fairness_cap: 400\n  fairness_cap: 1  ")),
    Mistake("stack-nan-slo", ("generate", "--stack", "{stack}", "--out", "out"), "latency_threshold_seconds: must be a finite number", edited("latency_threshold_seconds: 0.05", "latency_threshold_seconds: .nan")),
    Mistake("stack-inf-policy", ("scheduler", "--stack", "{stack}"), "scheduler.fairness_cap: must be a finite number", edited("fairness_cap: 400", "fairness_cap: .inf")),
    Mistake("stack-nan-retention", ("stack", "check", "--stack", "{stack}"), "audit.retention_days: must be a finite", edited(re.search(r"retention_days: \d+", TEXT)[0], "retention_days: .nan")),
    Mistake("stack-version-true", ("stack", "check", "--stack", "{stack}"), "version: must be 1, got True", edited("version: 1", "version: true")),
    Mistake("stack-hash-newline", ("stack", "check", "--stack", "{stack}"), "rbac.users[0].token_sha256", edited("token_sha256: 927662d206d92ea57558a7f799671056748db7da9da6131a08c3e1851aec3ad3}", 'token_sha256: "927662d206d92ea57558a7f799671056748db7da9da6131a08c3e1851aec3ad3\\n"}')),
    Mistake("stack-name-newline", ("generate", "--stack", "{stack}", "--out", "out"), "models[0].name", edited("name: risk-scorer", 'name: "risk-scorer\\n"')),
    Mistake("stack-step-beyond-api", ("stack", "check", "--stack", "{stack}"), "rebalance_step_gpus: must be between 1 and 4096", edited("rebalance_step_gpus: 8", "rebalance_step_gpus: 1000000000000000000000000000000")),
    # Flags of the servers.
    Mistake("port-negative", ("scheduler", "--stack", "{stack}", "--port", "-1"), "argument --port"),
    Mistake("port-too-big", ("model-server", "--stack", "{stack}", "--port", "99999"), "argument --port"),
    Mistake("port-not-a-number", ("gpu-exporter", "--stack", "{stack}", "--port", "http"), "argument --port"),
    Mistake("port-busy", ("model-server", "--stack", "{stack}", "--port", "{busy}"), "already in use"),
    Mistake("host-not-an-ip", ("scheduler", "--stack", "{stack}", "--host", "256.1.1.1"), "'256.1.1.1' is not an IP address"),
    Mistake("host-not-ours", ("model-server", "--stack", "{stack}", "--host", "192.0.2.1"), "--host 192.0.2.1: not an address of this machine"),
    Mistake("host-garbage", ("gpu-exporter", "--stack", "{stack}", "--host", "a b"), "argument --host"),
    Mistake("log-level", ("scheduler", "--stack", "{stack}", "--log-level", "loud"), "argument --log-level"),
    Mistake("state-dir-a-file", ("scheduler", "--stack", "{stack}", "--state-dir", "{file}"), "exists and is not a directory"),
    Mistake("state-dir-under-a-file", ("scheduler", "--stack", "{stack}", "--state-dir", "{file}/state"), "--state-dir"),
    Mistake("state-dir-uncreatable", ("scheduler", "--stack", "{stack}", "--state-dir", "/proc/novabrain/state"), "cannot create it"),
    Mistake("kubernetes-no-kubeconfig", ("scheduler", "--stack", "{stack}", "--state-dir", "state", "--actuator", "kubernetes", "--port", "{closed}"), "no Kubernetes credentials", env={"KUBECONFIG": "/nonexistent/kubeconfig"}),
    Mistake("kubernetes-bad-kubeconfig", ("scheduler", "--stack", "{stack}", "--state-dir", "state", "--actuator", "kubernetes", "--port", "{closed}"), "no usable kubeconfig", env={"KUBECONFIG": "{file}"}),
    Mistake("gpu-label-no-value", ("gpu-exporter", "--stack", "{stack}", "--label", "rack"), "argument --label"),
    Mistake("gpu-label-reserved", ("gpu-exporter", "--stack", "{stack}", "--label", "__name__=x"), "argument --label"),
    Mistake("gpu-label-clash", ("gpu-exporter", "--stack", "{stack}", "--backend", "sim", "--label", "uuid=x", "--port", "{closed}"), "clash with the exporter's own labels"),
    Mistake("gpu-label-twice", ("gpu-exporter", "--stack", "{stack}", "--label", "a=1", "--label", "a=2"), "each KEY may be given once"),
    Mistake("gpu-node-bad", ("gpu-exporter", "--stack", "{stack}", "--node", "Node_1"), "argument --node"),
    Mistake("gpu-node-unknown", ("gpu-exporter", "--stack", "{stack}", "--backend", "sim", "--node", "gpu-node-9", "--port", "{closed}"), "not a node of the stack"),
    Mistake("gpu-backend", ("gpu-exporter", "--stack", "{stack}", "--backend", "dcgm"), "argument --backend"),
    Mistake("model-token-file", ("model-server", "--stack", "{stack}", "--token-file", "missing-token"), "--token-file missing-token: cannot read it"),
    Mistake("model-scheduler-url", ("model-server", "--stack", "{stack}", "--scheduler-url", "localhost:9470"), "argument --scheduler-url"),
    # Paths that cannot be written.
    Mistake("generate-out-a-file", ("generate", "--stack", "{stack}", "--out", "{file}"), "--out"),
    Mistake("rules-provisioning-a-file", ("rules", "build", "--stack", "{stack}", "--out", "out", "--provisioning-out", "{file}"), "--provisioning-out"),
    Mistake("dashboards-out-under-a-file", ("dashboards", "build", "--stack", "{stack}", "--out", "{file}/x"), "cannot create it"),
    Mistake("simulate-trace-missing", ("simulate", "--stack", "{stack}", "--trace", "missing.csv"), "cannot read trace missing.csv"),
    Mistake("simulate-out-a-file", ("simulate", "--stack", "{stack}", "--trace", "{file}", "--out", "{file}"), "--out"),
    Mistake("demo-workdir-a-file", ("demo", "--stack", "{stack}", "--workdir", "{file}"), "--workdir"),
    Mistake("runbooks-out-a-file", ("generate", "--stack", "{stack}", "--out", "out", "--runbooks-out", "{file}"), "--runbooks-out"),
    Mistake("alertmanager-config-out-a-file", ("alertmanager", "config", "--stack", "{stack}", "--out", "{file}"), "--out"),
    # URLs.
    Mistake("grafana-not-a-url", ("dashboards", "deploy", "--stack", "{stack}", "--url", "not a url"), "must be an http:// or https:// URL"),
    Mistake("grafana-unreachable", ("dashboards", "deploy", "--stack", "{stack}", "--url", "http://127.0.0.1:{closed}"), "cannot reach Grafana", env={"GRAFANA_TOKEN": "t"}),
    Mistake("grafana-no-token", ("dashboards", "deploy", "--stack", "{stack}", "--dry-run"), "no Grafana token", env={"GRAFANA_TOKEN": ""}),
    Mistake("silence-not-a-url", ("silence", "list", "--stack", "{stack}", "--alertmanager-url", "am:9093"), "argument --alertmanager-url"),
    Mistake("silence-unreachable", ("silence", "list", "--stack", "{stack}", "--alertmanager-url", "http://127.0.0.1:{closed}"), "cannot reach"),
    Mistake("silence-token-file", ("silence", "expire", "--stack", "{stack}", "--token-file", "missing-token", "--author", "a", "x"), "cannot read token file"),
    Mistake("loadgen-rate-nan", ("loadgen", "--url", "http://127.0.0.1:{closed}", "--model", "m", "--rate", "nan"), "argument --rate"),
    Mistake("loadgen-rate-inf", ("loadgen", "--url", "http://127.0.0.1:{closed}", "--model", "m", "--rate", "inf"), "argument --rate"),
    Mistake("loadgen-rate-negative", ("loadgen", "--url", "http://127.0.0.1:{closed}", "--model", "m", "--rate", "-5"), "argument --rate"),
    Mistake("loadgen-seconds-nan", ("loadgen", "--url", "http://127.0.0.1:{closed}", "--model", "m", "--seconds", "nan"), "argument --seconds"),
    Mistake("loadgen-not-a-url", ("loadgen", "--url", "model-server:9472", "--model", "m"), "argument --url"),
    Mistake("loadgen-unreachable", ("loadgen", "--url", "http://127.0.0.1:{closed}", "--model", "m", "--seconds", "1"), "cannot connect"),
    # Names and choices.
    Mistake("token-name-newline", ("token", "new", "--name", "ops\n"), "argument --name"),
    Mistake("token-name-empty", ("token", "new", "--name", ""), "argument --name"),
    Mistake("token-role", ("token", "new", "--role", "root"), "argument --role"),
    Mistake("no-command", (), "required: COMMAND"),
    Mistake("unknown-command", ("serve",), "invalid choice: 'serve'"),
]
# fmt: on


@pytest.fixture
def placeholders(tmp_path: Path) -> Iterator[dict[str, str]]:
    afile = tmp_path / "a-file"
    afile.write_text("not a directory\n")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        yield {
            "file": str(afile),
            "closed": str(free_port()),
            "busy": str(busy.getsockname()[1]),
            "stack": str(STACK),
        }


@pytest.mark.parametrize("m", MISTAKES, ids=[m.id for m in MISTAKES])
def test_a_mistake_is_one_line_and_exit_2(
    m: Mistake, tmp_path: Path, placeholders: dict[str, str]
) -> None:
    if m.stack is not None:
        path = tmp_path / "stack.yaml"
        path.write_bytes(m.stack)
        placeholders = {**placeholders, "stack": str(path)}
    args = [a.format(**placeholders) for a in m.args]
    env = {k: v.format(**placeholders) for k, v in m.env.items()}
    r = run(*args, cwd=tmp_path, **env)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert not looks_like_a_traceback(r.stderr), r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert m.says in lines[0], lines[0]
    assert lines[0].startswith("novabrain")


def _commands() -> list[list[str]]:
    out: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out.append(prefix)
        for s in subs:
            for name, child in s.choices.items():
                walk(child, [*prefix, name])

    walk(build_parser(), [])
    return out


REQUIRED = {
    "loadgen": ["--url", "http://127.0.0.1:1", "--model", "m"],
    "audit verify": ["--db", "audit.db"],
    "audit export": ["--db", "audit.db"],
    "alertmanager config": ["--out", "out"],
    "silence add": ["--author", "a", "--comment", "c", 'node="x"'],
    "silence expire": ["--author", "a", "some-id"],
    "simulate": ["--trace", "trace.csv"],
}


@pytest.mark.parametrize("cmd", _commands(), ids=" ".join)
def test_every_command_has_help_and_refuses_an_unknown_flag(cmd: list[str], tmp_path: Path) -> None:
    helped = run(*cmd, "--help", cwd=tmp_path)
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith(f"usage: novabrain {' '.join(cmd)}")
    # argparse reports missing required flags first: give them, so the unknown one is reported.
    required = REQUIRED.get(" ".join(cmd), [])
    wrong = run(*cmd, *required, "--no-such-flag", cwd=tmp_path)
    assert wrong.returncode == 2
    assert len(wrong.stderr.splitlines()) == 1, wrong.stderr
    assert "--no-such-flag" in wrong.stderr
