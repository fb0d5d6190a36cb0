"""Hostile input cannot create series: unknown models, versions, paths and status codes
all land on series that existed from the start."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from deploy.stack import Stack
from exporters.catalog.model import MODEL_UNKNOWN_REQUESTS
from exporters.instrument import (
    InstrumentMiddleware,
    ModelInstruments,
    Outcome,
    classify_status,
    instrument_middleware,
    model_from_path,
)

names = st.one_of(
    st.sampled_from(["risk-scorer", "chat-llm", "RISK-SCORER", "risk-scorer ", "../etc"]),
    st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s and ":" not in s),
)
versions = st.one_of(st.none(), st.sampled_from(["v2", "v3", "v1", "latest"]), st.text(max_size=8))
statuses = st.integers(min_value=200, max_value=599)


def series(reg: CollectorRegistry) -> set[tuple[str, tuple[tuple[str, str], ...]]]:
    return {(s.name, tuple(sorted(s.labels.items()))) for f in reg.collect() for s in f.samples}


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(names, versions, statuses), min_size=1, max_size=20))
def test_aiohttp_hostile_requests(
    rich_stack: Stack, calls: list[tuple[str, str | None, int]]
) -> None:
    reg = CollectorRegistry()
    ins = ModelInstruments(rich_stack, reg)
    mw = instrument_middleware(ins)
    declared = {(m.name, m.version) for m in rich_stack.models} | {
        (m.name, None) for m in rich_stack.models
    }
    start = series(reg)

    async def run() -> None:
        for model, version, status in calls:
            info = {"model": model} | ({"version": version} if version is not None else {})
            req = make_mocked_request("POST", "/v1/models/x/infer", match_info=info)

            async def handler(_: web.Request, status: int = status) -> web.StreamResponse:
                return web.Response(status=status)

            await mw(req, handler)

    asyncio.run(run())
    assert series(reg) == start
    unknown = sum(1 for m, v, _ in calls if (m, v) not in declared)
    assert reg.get_sample_value(MODEL_UNKNOWN_REQUESTS.series) == unknown


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=80), statuses), min_size=1, max_size=20))
def test_asgi_hostile_paths(rich_stack: Stack, calls: list[tuple[str, int]]) -> None:
    reg = CollectorRegistry()
    ins = ModelInstruments(rich_stack, reg)
    start = series(reg)

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": scope["status"], "headers": []})

    mw = InstrumentMiddleware(app, ins)

    async def send(_: Any) -> None:
        return None

    async def run() -> None:
        for path, status in calls:
            await mw(
                {"type": "http", "path": "/v1/models/" + path + "/infer", "status": status},
                send,
                send,
            )
            await mw({"type": "http", "path": path, "status": status}, send, send)

    asyncio.run(run())
    assert series(reg) == start


@given(statuses)
def test_every_status_maps_to_the_closed_sets(status: int) -> None:
    outcome, reason = classify_status(status)
    assert (reason is not None) == (outcome is Outcome.ERROR)


def test_routes_of_the_common_protocols() -> None:
    assert model_from_path("/v1/models/risk-scorer/infer") == ("risk-scorer", None)
    assert model_from_path("/v1/models/risk-scorer:predict") == ("risk-scorer", None)
    assert model_from_path("/v2/models/risk-scorer/infer") == ("risk-scorer", None)
    assert model_from_path("/v2/models/risk-scorer/versions/v3/infer") == ("risk-scorer", "v3")
    assert model_from_path("/v2/models/chat-llm/generate_stream") == ("chat-llm", None)
    for other in (
        "/metrics",
        "/healthz",
        "/v2/models/risk-scorer",
        "/v1/models//infer",
        "/v3/models/x/infer",
    ):
        assert model_from_path(other) is None
