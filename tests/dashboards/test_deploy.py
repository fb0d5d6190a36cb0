"""``novabrain dashboards deploy`` against a fake Grafana that follows the published HTTP API.

What this proves: the folder is created once, dashboards are posted with
overwrite and a message, an unchanged dashboard is not posted again, dry-run
writes nothing, and 401/403/412/connection refused each end with a clear line
and a non-zero exit. What it does not prove: that a real Grafana accepts our
JSON (the schema tests check that against Grafana's own schema).
"""

from __future__ import annotations

import asyncio
import dataclasses
import io
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from fake_grafana import FakeGrafana, serving

from dashboards.build import build_all
from dashboards.deploy import EXIT_CONFIG, EXIT_GRAFANA, EXIT_OK, TOKEN_ENV, deploy
from deploy.procs import free_port
from deploy.stack import Stack

EDITOR, VIEWER = "editor-token", "viewer-token"


@pytest.fixture
async def grafana() -> AsyncIterator[tuple[FakeGrafana, str]]:
    async with serving({EDITOR: "editor", VIEWER: "viewer"}) as (fake, url):
        yield fake, url


async def _deploy(stack: Stack, url: str, **kw: Any) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    kw.setdefault("token", EDITOR)
    kw.setdefault("dry_run", False)
    code = await asyncio.to_thread(deploy, stack, url=url, out=out, err=err, env={}, **kw)
    return code, out.getvalue(), err.getvalue()


async def test_first_deploy_creates_folder_and_dashboards(
    stack: Stack, grafana: tuple[FakeGrafana, str]
) -> None:
    fake, url = grafana
    code, out, _ = await _deploy(stack, url)
    assert code == EXIT_OK
    assert [f["title"] for f in fake.folders] == [stack.grafana.folder]
    assert set(fake.dashboards) == {d["uid"] for d in build_all(stack).values()}
    for post in fake.posts:
        assert post["overwrite"] is True
        assert post["folderUid"] == fake.folders[0]["uid"]
        assert stack.name in post["message"]
    assert out.count("created") == 3


async def test_redeploy_is_idempotent_and_updates_only_changes(
    stack: Stack, grafana: tuple[FakeGrafana, str]
) -> None:
    fake, url = grafana
    await _deploy(stack, url)
    posted = len(fake.posts)
    code, out, _ = await _deploy(stack, url)
    assert code == EXIT_OK
    assert len(fake.posts) == posted  # nothing re-posted
    assert out.count("unchanged") == 3
    assert len(fake.folders) == 1

    changed = dataclasses.replace(
        stack, grafana=dataclasses.replace(stack.grafana, datasource_uid="other")
    )
    code, out, _ = await _deploy(changed, url)
    assert code == EXIT_OK
    assert len(fake.posts) == posted + 3
    assert all(d["dashboard"]["version"] == 2 for d in fake.dashboards.values())


async def test_dry_run_writes_nothing(stack: Stack, grafana: tuple[FakeGrafana, str]) -> None:
    fake, url = grafana
    code, out, _ = await _deploy(stack, url, dry_run=True)
    assert code == EXIT_OK
    assert fake.posts == [] and fake.folders == []
    assert "would create" in out and out.count("would create") == 4  # folder + 3 dashboards


async def test_401_403_412_and_refused_are_clear(
    stack: Stack, grafana: tuple[FakeGrafana, str]
) -> None:
    fake, url = grafana
    code, _, err = await _deploy(stack, url, token="wrong")
    assert code == EXIT_GRAFANA and "401" in err and TOKEN_ENV in err

    code, _, err = await _deploy(stack, url, token=VIEWER)
    assert code == EXIT_GRAFANA and "403" in err and "Editor" in err

    # A hand-made dashboard with our title but another uid already sits in the folder.
    await _deploy(stack, url)
    fleet = next(d for d in fake.dashboards.values())["dashboard"]
    fake.dashboards["hand-made"] = {
        "dashboard": {**fleet, "uid": "hand-made"},
        "folderUid": fake.folders[0]["uid"],
    }
    changed = dataclasses.replace(
        stack, grafana=dataclasses.replace(stack.grafana, datasource_uid="x")
    )
    code, _, err = await _deploy(changed, url)
    assert code == EXIT_GRAFANA and "412" in err and "same name" in err

    code, _, err = await _deploy(stack, f"http://127.0.0.1:{free_port()}")
    assert code == EXIT_CONFIG and "cannot reach Grafana" in err


async def test_token_from_env_or_file(
    stack: Stack, grafana: tuple[FakeGrafana, str], tmp_path: Path
) -> None:
    _, url = grafana
    missing = dataclasses.replace(
        stack, grafana=dataclasses.replace(stack.grafana, token_file=str(tmp_path / "none"))
    )
    out, err = io.StringIO(), io.StringIO()
    code = await asyncio.to_thread(
        deploy, missing, token=None, dry_run=True, url=url, env={}, out=out, err=err
    )
    assert code == EXIT_CONFIG and TOKEN_ENV in err.getvalue()

    code = await asyncio.to_thread(
        deploy,
        missing,
        token=None,
        dry_run=True,
        url=url,
        env={TOKEN_ENV: EDITOR},
        out=out,
        err=err,
    )
    assert code == EXIT_OK

    (tmp_path / "token").write_text(EDITOR + "\n")
    from_file = dataclasses.replace(
        stack, grafana=dataclasses.replace(stack.grafana, token_file=str(tmp_path / "token"))
    )
    code = await asyncio.to_thread(
        deploy, from_file, token=None, dry_run=True, url=url, env={}, out=out, err=err
    )
    assert code == EXIT_OK
