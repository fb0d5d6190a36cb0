"""The one-shot commands as processes: ``generate``, ``stack check`` and
``dashboards deploy --dry-run`` (against a stand-in Grafana), run outside the checkout."""

from __future__ import annotations

import asyncio
import filecmp
import importlib.util
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from proc_testlib import ROOT, STACK, run

from dashboards.build import build_all
from deploy.stack import load_stack

pytestmark = pytest.mark.process


def _same_tree(a: Path, b: Path) -> list[str]:
    """Files that differ or exist on one side only (recursively)."""
    cmp = filecmp.dircmp(a, b)
    out = [*cmp.left_only, *cmp.right_only, *cmp.diff_files, *cmp.funny_files]
    for sub in cmp.common_dirs:
        out += [f"{sub}/{f}" for f in _same_tree(a / sub, b / sub)]
    return out


def test_generate_writes_what_is_committed(tmp_path: Path) -> None:
    r = run(
        "generate",
        "--stack",
        str(STACK),
        "--out",
        "generated",
        "--provisioning-out",
        "grafana",
        "--runbooks-out",
        "runbooks",
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines(), "generate lists what it wrote"
    assert _same_tree(tmp_path / "generated", ROOT / "deploy/generated") == []
    assert _same_tree(tmp_path / "grafana", ROOT / "deploy/grafana") == []
    assert _same_tree(tmp_path / "runbooks", ROOT / "docs/runbooks") == []


def test_stack_check_accepts_the_committed_stack(tmp_path: Path) -> None:
    r = run("stack", "check", "--stack", str(STACK), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "ok: 3 pools, 32 GPUs on 4 nodes, 1 models, 1 reservations, 4 users" in r.stdout
    assert r.stderr == ""


def _fake_grafana_module() -> Any:
    # The stand-in the dashboards tests use (a module of theirs, loaded by path).
    path = ROOT / "tests/dashboards/fake_grafana.py"
    spec = importlib.util.spec_from_file_location("e2e_fake_grafana", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def grafana() -> AsyncIterator[tuple[Any, str]]:
    async with _fake_grafana_module().serving({"editor-token": "editor"}) as (fake, url):
        yield fake, url


async def test_dashboards_deploy_dry_run_changes_nothing(
    grafana: tuple[Any, str], tmp_path: Path
) -> None:
    fake, url = grafana
    r = await asyncio.to_thread(
        run,
        "dashboards",
        "deploy",
        "--stack",
        str(STACK),
        "--url",
        url,
        "--dry-run",
        cwd=tmp_path,
        GRAFANA_TOKEN="editor-token",
    )
    assert r.returncode == 0, r.stderr
    stack = load_stack(STACK)
    expected = [f"folder '{stack.grafana.folder}': would create"] + [
        f"{name} ({d['uid']}): would create" for name, d in build_all(stack).items()
    ]
    assert r.stdout.splitlines() == expected
    assert fake.posts == [] and fake.folders == []
