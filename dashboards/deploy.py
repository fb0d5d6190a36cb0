"""Push the generated dashboards to Grafana through its HTTP API.

Plain HTTP (urllib) against Grafana's documented endpoints, so nothing beyond
the standard library is needed:

* ``GET /api/folders`` and ``POST /api/folders`` - the stack's folder, created if missing;
* ``GET /api/dashboards/uid/<uid>`` - what Grafana holds now (404: nothing);
* ``POST /api/dashboards/db`` with ``folderUid``, ``overwrite`` and ``message`` - create or update.

Idempotent: a dashboard whose stored model equals ours (ignoring the ``id``
and ``version`` Grafana adds) in the right folder is not posted again, so
Grafana's version history only grows when something changed. ``dry_run`` does
the reads and prints what would change. The token comes from ``GRAFANA_TOKEN``
or the stack's ``grafana.token_file``; 401, 403, 412 and an unreachable Grafana
each end with one line saying what to do.
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from dashboards.build import build_all
from dashboards.errors import (
    DashboardsError,
    GrafanaConflict,
    GrafanaError,
    GrafanaForbidden,
    GrafanaUnauthorized,
    GrafanaUnreachable,
    MissingToken,
)
from deploy.stack import Stack

TOKEN_ENV = "GRAFANA_TOKEN"  # noqa: S105 (the variable's name, not a token)
EXIT_OK, EXIT_GRAFANA, EXIT_CONFIG = 0, 1, 2
# Fields Grafana adds to what it stores; they say nothing about the content.
VOLATILE = ("id", "version")


def read_token(stack: Stack, env: Mapping[str, str]) -> str:
    token = env.get(TOKEN_ENV, "").strip()
    if token:
        return token
    path = Path(stack.grafana.token_file)
    try:
        token = path.read_text(encoding="utf-8").strip()
    except OSError:
        token = ""
    if not token:
        raise MissingToken(f"no Grafana token: set {TOKEN_ENV} or write one to {path}")
    return token


class GrafanaClient:
    """The few Grafana API calls deploying needs, with errors mapped to ``GrafanaError``s."""

    def __init__(self, url: str, token: str, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self._headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        self.timeout = timeout

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(  # noqa: S310 (the stack's Grafana URL, http or https)
            self.url + path, data=data, method=method, headers=self._headers
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:  # noqa: S310
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise GrafanaUnreachable(f"cannot reach Grafana at {self.url}: {reason}") from None
        try:
            message = str(json.loads(text).get("message", text))
        except (ValueError, AttributeError):
            message = text
        if status == 404:
            return status, None
        where = f"{method} {path}"
        if status == 401:
            raise GrafanaUnauthorized(
                f"Grafana rejected the token (401) on {where}: set {TOKEN_ENV} or the stack's "
                f"grafana.token_file to a valid service account token ({message})"
            )
        if status == 403:
            raise GrafanaForbidden(
                f"the token may not do {where} (403): give its service account the Editor role "
                f"on the folder ({message})"
            )
        if status == 412:
            raise GrafanaConflict(
                f"Grafana refused {where} (412 precondition failed): a dashboard with the same "
                f"name exists in the folder, or it changed meanwhile ({message})"
            )
        raise GrafanaError(f"Grafana answered {status} to {where}: {message}")

    def folders(self) -> list[dict[str, Any]]:
        _, body = self._call("GET", "/api/folders")
        return list(body or [])

    def create_folder(self, title: str) -> dict[str, Any]:
        _, body = self._call("POST", "/api/folders", {"title": title})
        return dict(body)

    def dashboard(self, uid: str) -> dict[str, Any] | None:
        status, body = self._call("GET", f"/api/dashboards/uid/{uid}")
        return None if status == 404 else dict(body)

    def post_dashboard(
        self, dashboard: dict[str, Any], folder_uid: str, message: str
    ) -> dict[str, Any]:
        _, body = self._call(
            "POST",
            "/api/dashboards/db",
            {
                "dashboard": {**dashboard, "id": None},
                "folderUid": folder_uid,
                "message": message,
                "overwrite": True,
            },
        )
        return dict(body)


@dataclass(frozen=True)
class Change:
    name: str
    uid: str
    action: str  # "create", "update", "unchanged"


def _same(stored: dict[str, Any], ours: dict[str, Any]) -> bool:
    def strip(d: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in d.items() if k not in VOLATILE}

    return strip(stored) == strip(ours)


def plan(
    client: GrafanaClient, dashboards: Mapping[str, dict[str, Any]], folder_uid: str | None
) -> list[Change]:
    changes = []
    for name, dash in dashboards.items():
        current = client.dashboard(dash["uid"])
        if current is None:
            action = "create"
        elif folder_uid is None or current.get("meta", {}).get("folderUid") != folder_uid:
            action = "update"  # moved to the stack's folder
        elif _same(current.get("dashboard", {}), dash):
            action = "unchanged"
        else:
            action = "update"
        changes.append(Change(name, dash["uid"], action))
    return changes


def run(
    stack: Stack,
    client: GrafanaClient,
    *,
    dry_run: bool,
    out: TextIO,
    message: str,
) -> list[Change]:
    dashboards = build_all(stack)
    folder_title = stack.grafana.folder
    folder = next((f for f in client.folders() if f.get("title") == folder_title), None)
    if folder is None:
        print(f"folder {folder_title!r}: {'would create' if dry_run else 'create'}", file=out)
        if not dry_run:
            folder = client.create_folder(folder_title)
    folder_uid = None if folder is None else str(folder["uid"])
    changes = plan(client, dashboards, folder_uid)
    for c in changes:
        if c.action == "unchanged":
            print(f"{c.name} ({c.uid}): unchanged", file=out)
            continue
        if dry_run:
            print(f"{c.name} ({c.uid}): would {c.action}", file=out)
            continue
        assert folder_uid is not None
        res = client.post_dashboard(dashboards[c.name], folder_uid, message)
        print(f"{c.name} ({c.uid}): {c.action}d, version {res.get('version')}", file=out)
    return changes


def deploy(
    stack: Stack,
    *,
    token: str | None,
    dry_run: bool,
    url: str | None = None,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    timeout: float = 10.0,
) -> int:
    """Push every dashboard; the exit code is 0, 1 for an error Grafana answered, 2 for a
    missing token or a Grafana that cannot be reached."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        tok = token or read_token(stack, os.environ if env is None else env)
        client = GrafanaClient(url or stack.grafana.url, tok, timeout)
        message = f"novabrain generate from {stack.source} (stack {stack.name})"
        run(stack, client, dry_run=dry_run, out=out, message=message)
    except (MissingToken, GrafanaUnreachable) as e:
        # The user's to fix: a token to provide, a URL that is wrong or down.
        print(f"novabrain dashboards deploy: {e}", file=err)
        return EXIT_CONFIG
    except DashboardsError as e:
        print(f"novabrain dashboards deploy: {e}", file=err)
        return EXIT_GRAFANA
    return EXIT_OK
