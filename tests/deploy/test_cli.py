"""The console script: every command has --help, bad stacks exit 2 naming the field."""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]


def _commands() -> list[list[str]]:
    out: list[list[str]] = []

    def walk(parser: object, prefix: list[str]) -> None:
        import argparse

        assert isinstance(parser, argparse.ArgumentParser)
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs:
            out.append(prefix)
        for s in subs:
            for name, child in s.choices.items():
                walk(child, [*prefix, name])

    walk(build_parser(), [])
    return out


@pytest.mark.parametrize("cmd", _commands(), ids=" ".join)
def test_every_command_has_help(cmd: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    assert "usage: novabrain" in capsys.readouterr().out


@pytest.mark.parametrize(
    "cmd", [c for c in _commands() if c[0] in ("gpu-exporter", "model-server", "scheduler")]
)
def test_server_commands_take_host_port_stack(
    cmd: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([*cmd, "--help"])
    text = capsys.readouterr().out
    for flag in ("--host", "--port", "--stack PATH"):
        assert flag in text


def test_bad_stack_exits_2_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "stack.yaml"
    bad.write_text(
        (ROOT / "deploy/stack.yaml").read_text().replace("lending_limit: 12", "lending_limit: 99")
    )
    # A real process: the exit status is what operators and CI see.
    r = subprocess.run(
        [sys.executable, "-m", "deploy.cli", "stack", "check", "--stack", str(bad)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert r.returncode == 2
    assert "pools[1].lending_limit" in r.stderr


def test_stack_check_accepts_the_example(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stack", "check", "--stack", str(ROOT / "deploy/stack.yaml")]) == 0
    assert "3 pools, 32 GPUs on 4 nodes" in capsys.readouterr().out


def test_token_new_prints_a_token_and_its_hash(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["token", "new", "--role", "operator", "--name", "ops"]) == 0
    out = capsys.readouterr().out
    token = re.search(r"^token:\s+(\S+)$", out, re.M)
    digest = re.search(r"^token_sha256: ([0-9a-f]{64})$", out, re.M)
    assert token and digest
    assert hashlib.sha256(token[1].encode()).hexdigest() == digest[1]


def test_audit_commands_exit_2_on_a_missing_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "none.db")
    assert main(["audit", "verify", "--db", missing]) == 2
    assert main(["audit", "export", "--db", missing]) == 2
    assert "no audit database" in capsys.readouterr().err
