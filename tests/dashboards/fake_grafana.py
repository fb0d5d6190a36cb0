"""A small stand-in for Grafana's HTTP API, as its documentation describes it.

Implements only what ``dashboards.deploy`` calls: bearer-token auth (401 for an
unknown token, 403 for a read-only one on writes), ``GET/POST /api/folders``,
``GET /api/dashboards/uid/<uid>`` (404 when missing, otherwise
``{"dashboard", "meta": {"folderUid"}}``) and ``POST /api/dashboards/db``
(412 ``name-exists`` when another uid has the same title in the folder, 412
``version-mismatch`` when overwrite is false and the uid exists; stored with a
new id and an incremented version). It proves the client follows that contract;
it does not prove a real Grafana accepts every field of our dashboards (the
schema tests cover that).
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from deploy.procs import free_port


class FakeGrafana:
    def __init__(self, tokens: dict[str, str]) -> None:
        self.tokens = tokens  # token -> "editor" | "viewer"
        self.folders: list[dict[str, Any]] = []
        self.dashboards: dict[str, dict[str, Any]] = {}  # uid -> {"dashboard", "folderUid"}
        self.posts: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self.app = web.Application(middlewares=[self._auth])
        self.app.router.add_get("/api/folders", self._folders)
        self.app.router.add_post("/api/folders", self._create_folder)
        self.app.router.add_get("/api/dashboards/uid/{uid}", self._get)
        self.app.router.add_post("/api/dashboards/db", self._post)

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        header = request.headers.get("Authorization", "")
        role = self.tokens.get(header.removeprefix("Bearer "))
        if not header.startswith("Bearer ") or role is None:
            return web.json_response({"message": "invalid API key"}, status=401)
        if request.method != "GET" and role != "editor":
            return web.json_response({"message": "Access denied"}, status=403)
        return await handler(request)

    async def _folders(self, request: web.Request) -> web.Response:
        return web.json_response(self.folders)

    async def _create_folder(self, request: web.Request) -> web.Response:
        body = await request.json()
        folder = {"id": next(self._ids), "uid": f"f{len(self.folders) + 1}", "title": body["title"]}
        self.folders.append(folder)
        return web.json_response(folder)

    async def _get(self, request: web.Request) -> web.Response:
        stored = self.dashboards.get(request.match_info["uid"])
        if stored is None:
            return web.json_response({"message": "Dashboard not found"}, status=404)
        return web.json_response(
            {"dashboard": stored["dashboard"], "meta": {"folderUid": stored["folderUid"]}}
        )

    async def _post(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.posts.append(body)
        dash, folder = body["dashboard"], body.get("folderUid", "")
        for uid, stored in self.dashboards.items():
            if (
                uid != dash["uid"]
                and stored["folderUid"] == folder
                and stored["dashboard"]["title"] == dash["title"]
            ):
                return web.json_response(
                    {"status": "name-exists", "message": "A dashboard with the same name exists"},
                    status=412,
                )
        old = self.dashboards.get(dash["uid"])
        if old is not None and not body.get("overwrite"):
            return web.json_response(
                {"status": "version-mismatch", "message": "The dashboard has been changed"},
                status=412,
            )
        version = 1 if old is None else old["dashboard"]["version"] + 1
        stored = {**dash, "id": next(self._ids), "version": version}
        self.dashboards[dash["uid"]] = {"dashboard": stored, "folderUid": folder}
        return web.json_response(
            {"id": stored["id"], "uid": dash["uid"], "status": "success", "version": version}
        )


@contextlib.asynccontextmanager
async def serving(tokens: dict[str, str]) -> AsyncIterator[tuple[FakeGrafana, str]]:
    """A ``FakeGrafana`` on a free loopback port, and its URL, until the block ends."""
    fake = FakeGrafana(tokens)
    runner = web.AppRunner(fake.app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
