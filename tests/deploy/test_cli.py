"""The console script's conventions and ``token new``'s stack entry (the commands as processes
are in tests/e2e)."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from deploy.cli import build_parser, main, token_entry
from deploy.stack import load_stack
from deploy.stack_fields import user_name_problem

ROOT = Path(__file__).resolve().parents[2]
STACK_TEXT = (ROOT / "deploy/stack.yaml").read_text()


@pytest.mark.parametrize("cmd", ["gpu-exporter", "model-server", "scheduler"])
def test_server_commands_take_host_port_stack(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([cmd, "--help"])
    text = capsys.readouterr().out
    for flag in ("--host", "--port", "--stack PATH"):
        assert flag in text


def test_the_gpu_exporter_takes_node_and_repeated_labels() -> None:
    args = build_parser().parse_args(
        ["gpu-exporter", "--node", "gpu-7", "--label", "a=1", "--label", "b=x=y"]
    )
    assert args.node == "gpu-7"
    assert args.label == [("a", "1"), ("b", "x=y")]


# Any name the stack accepts (printable text on one line, YAML's indicators included)
# that is not already a user's.
TAKEN = {u.name for u in load_stack(ROOT / "deploy/stack.yaml").users}
NAMES = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40).filter(
    lambda n: user_name_problem(n) is None and n not in TAKEN
)


@settings(max_examples=300, deadline=None)
@given(NAMES, st.sampled_from(["viewer", "operator", "admin", "alertmanager"]))
def test_token_entries_round_trip_through_the_stack_file(name: str, role: str) -> None:
    digest = hashlib.sha256(name.encode()).hexdigest()
    line = token_entry(name, role, digest)
    assert "\n" not in line
    assert yaml.safe_load(line) == [{"name": name, "role": role, "token_sha256": digest}]
    # Pasted under rbac.users as printed, the stack loads with that user, unchanged.
    anchor = "rbac:\n  users:\n"
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "stack.yaml"
        path.write_text(STACK_TEXT.replace(anchor, f"{anchor}    {line}\n"), encoding="utf-8")
        users = load_stack(path).users
    assert (users[0].name, users[0].role, users[0].token_sha256) == (name, role, digest)


def test_audit_commands_exit_2_on_a_missing_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = str(tmp_path / "none.db")
    assert main(["audit", "verify", "--db", missing]) == 2
    assert main(["audit", "export", "--db", missing]) == 2
    assert "no audit database" in capsys.readouterr().err
