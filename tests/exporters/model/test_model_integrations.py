"""Every integration records exactly one request per call, with the right labels,
on success, on exception and on cancellation; durations come from the injected clock."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from prometheus_client import CollectorRegistry

from deploy.stack import Stack
from exporters.catalog.model import (
    MODEL_ERRORS,
    MODEL_IN_FLIGHT,
    MODEL_QUEUE_WAIT,
    MODEL_REQUEST_DURATION,
    MODEL_REQUESTS,
)
from exporters.instrument import (
    ErrorReason,
    InstrumentMiddleware,
    ModelInstruments,
    Outcome,
    RequestRejected,
    UnknownModelError,
    instrument_handler,
    instrument_middleware,
)

V3 = {"model": "risk-scorer", "version": "v3", "pool": "p0-risk"}
V2 = {**V3, "version": "v2"}
STEP = 0.25  # what the fake clock advances per reading


class StepClock:
    """Advances by ``STEP`` at every reading, so a tracked block lasts exactly ``STEP``."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        self.t += STEP
        return self.t


Snapshot = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def snapshot(reg: CollectorRegistry) -> Snapshot:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in reg.collect()
        for s in fam.samples
        if not s.name.endswith("_created")
    }


def changed(before: Snapshot, after: Snapshot) -> Snapshot:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}


def assert_one_request(
    before: Snapshot,
    reg: CollectorRegistry,
    outcome: Outcome,
    reason: ErrorReason | None = None,
    labels: dict[str, str] = V3,
    duration: float | None = STEP,
) -> None:
    diff = changed(before, snapshot(reg))
    lab = tuple(sorted(labels.items()))
    reqs = {k: v for k, v in diff.items() if k[0] == MODEL_REQUESTS.series}
    assert reqs == {
        (MODEL_REQUESTS.series, tuple(sorted({**labels, "outcome": outcome}.items()))): 1
    }
    errs = {k: v for k, v in diff.items() if k[0] == MODEL_ERRORS.series}
    want_errs = (
        {(MODEL_ERRORS.series, tuple(sorted({**labels, "reason": reason}.items()))): 1}
        if reason
        else {}
    )
    assert errs == want_errs
    assert diff[(MODEL_REQUEST_DURATION.count, lab)] == 1
    if duration is not None:
        assert diff[(MODEL_REQUEST_DURATION.sum, lab)] == pytest.approx(duration)
    # Nothing was left in flight, and no other model's series moved.
    assert reg.get_sample_value(MODEL_IN_FLIGHT.series, labels) == 0
    for name, lv in diff:
        assert dict(lv).get("model", labels["model"]) == labels["model"], name
        assert dict(lv).get("version", labels["version"]) == labels["version"], name


@pytest.fixture
def reg() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def ins(rich_stack: Stack, reg: CollectorRegistry) -> ModelInstruments:
    return ModelInstruments(rich_stack, reg, clock=StepClock())


# ----------------------------------------------------------------------------- plain API


def test_plain_api_records_queue_wait_and_error_reasons(
    ins: ModelInstruments, reg: CollectorRegistry
) -> None:
    rec = ins.recorder("risk-scorer", "v3")
    before = snapshot(reg)
    rec.observe(0.25, Outcome.ERROR, ErrorReason.TIMEOUT, queue_wait_seconds=0.2)
    assert_one_request(before, reg, Outcome.ERROR, ErrorReason.TIMEOUT)
    assert reg.get_sample_value(MODEL_QUEUE_WAIT.sum, V3) == pytest.approx(0.2)
    before = snapshot(reg)
    rec.observe(0.25, Outcome.ERROR)  # no reason given: "other", never a new value
    assert_one_request(before, reg, Outcome.ERROR, ErrorReason.OTHER)
    before = snapshot(reg)
    rec.observe_ok(0.25)
    assert_one_request(before, reg, Outcome.OK)


def test_versions_are_told_apart_and_the_default_is_the_last_listed(
    ins: ModelInstruments, reg: CollectorRegistry
) -> None:
    before = snapshot(reg)
    ins.recorder("risk-scorer", "v2").observe_ok(0.25)
    assert_one_request(before, reg, Outcome.OK, labels=V2)
    before = snapshot(reg)
    ins.recorder("risk-scorer").observe_ok(0.25)
    assert_one_request(before, reg, Outcome.OK, labels=V3)


def test_unknown_model_at_startup_is_an_error(ins: ModelInstruments) -> None:
    with pytest.raises(UnknownModelError, match="nope v9"):
        ins.recorder("nope", "v9")
    with pytest.raises(UnknownModelError):
        ins.timed("risk-scorer", "v1")


# ----------------------------------------------------------------------------- decorator


def test_decorator_sync_success_and_exception(
    ins: ModelInstruments, reg: CollectorRegistry
) -> None:
    @ins.timed("risk-scorer")
    def predict(x: int) -> int:
        if x < 0:
            raise ValueError("negative")
        return x * 2

    before = snapshot(reg)
    assert predict(21) == 42
    assert_one_request(before, reg, Outcome.OK)
    before = snapshot(reg)
    with pytest.raises(ValueError):
        predict(-1)
    assert_one_request(before, reg, Outcome.ERROR, ErrorReason.BACKEND)
    assert predict.__name__ == "predict"


async def test_decorator_async_success_exception_cancellation(
    ins: ModelInstruments, reg: CollectorRegistry
) -> None:
    gate = asyncio.Event()

    @ins.timed("risk-scorer")
    async def predict(mode: str) -> str:
        if mode == "timeout":
            raise TimeoutError
        if mode == "shed":
            raise RequestRejected("queue full")
        if mode == "block":
            gate.set()
            await asyncio.Event().wait()
        return mode

    before = snapshot(reg)
    assert await predict("ok") == "ok"
    assert_one_request(before, reg, Outcome.OK)
    before = snapshot(reg)
    with pytest.raises(TimeoutError):
        await predict("timeout")
    assert_one_request(before, reg, Outcome.ERROR, ErrorReason.TIMEOUT)
    before = snapshot(reg)
    with pytest.raises(RequestRejected):
        await predict("shed")
    assert_one_request(before, reg, Outcome.ERROR, ErrorReason.REJECTED)

    before = snapshot(reg)
    task = asyncio.create_task(predict("block"))
    await gate.wait()
    assert reg.get_sample_value(MODEL_IN_FLIGHT.series, V3) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_one_request(before, reg, Outcome.CANCELLED)


# ----------------------------------------------------------------------------- context manager


def test_context_manager_sync(ins: ModelInstruments, reg: CollectorRegistry) -> None:
    before = snapshot(reg)
    with ins.track("risk-scorer", "v2"):
        assert reg.get_sample_value(MODEL_IN_FLIGHT.series, V2) == 1
    assert_one_request(before, reg, Outcome.OK, labels=V2)
    before = snapshot(reg)
    with pytest.raises(KeyError), ins.track("risk-scorer", "v2"):
        raise KeyError("boom")
    assert_one_request(before, reg, Outcome.ERROR, ErrorReason.BACKEND, labels=V2)


async def test_context_manager_async(ins: ModelInstruments, reg: CollectorRegistry) -> None:
    rec = ins.recorder("risk-scorer")
    before = snapshot(reg)
    async with rec.track() as t:
        t.queued()  # one clock reading: a queue wait of STEP
    # enter, queued and exit read the clock: 2 steps end to end.
    assert_one_request(before, reg, Outcome.OK, duration=2 * STEP)
    assert reg.get_sample_value(MODEL_QUEUE_WAIT.sum, V3) == pytest.approx(STEP)

    before = snapshot(reg)
    async with rec.track() as t:
        t.fail(ErrorReason.REJECTED)  # answered, not raised
    assert_one_request(before, reg, Outcome.ERROR, ErrorReason.REJECTED)

    before = snapshot(reg)
    async with rec.track() as t:
        t.invalid()  # a bad input, answered: the client's fault
    assert_one_request(before, reg, Outcome.INVALID)

    before = snapshot(reg)
    with pytest.raises(RuntimeError):
        async with rec.track():
            raise RuntimeError
    assert_one_request(before, reg, Outcome.ERROR, ErrorReason.BACKEND)

    gate = asyncio.Event()

    async def blocked() -> None:
        async with rec.track():
            gate.set()
            await asyncio.Event().wait()

    before = snapshot(reg)
    task = asyncio.create_task(blocked())
    await gate.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_one_request(before, reg, Outcome.CANCELLED)


# ----------------------------------------------------------------------------- aiohttp


def _request(model: str = "risk-scorer", version: str | None = None) -> web.Request:
    info = {"model": model} | ({"version": version} if version else {})
    return make_mocked_request("POST", f"/v1/models/{model}/infer", match_info=info)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Call = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


@pytest.fixture(params=["middleware", "handler"])
def integration(request: pytest.FixtureRequest, ins: ModelInstruments) -> Call:
    """The middleware, or the handler decorator: both must record exactly the same."""
    if request.param == "middleware":
        return instrument_middleware(ins)
    decorate = instrument_handler(ins)
    return lambda req, handler: decorate(handler)(req)


def _handler(status: int = 200, raise_: BaseException | None = None) -> Handler:
    async def handler(_: web.Request) -> web.StreamResponse:
        if raise_ is not None:
            raise raise_
        return web.Response(status=status)

    return handler


@pytest.mark.parametrize(
    ("status", "outcome", "reason"),
    [
        (200, Outcome.OK, None),
        (404, Outcome.INVALID, None),
        (429, Outcome.ERROR, ErrorReason.REJECTED),
        (500, Outcome.ERROR, ErrorReason.BACKEND),
        (503, Outcome.ERROR, ErrorReason.REJECTED),
        (504, Outcome.ERROR, ErrorReason.TIMEOUT),
        (507, Outcome.ERROR, ErrorReason.OTHER),
    ],
)
async def test_aiohttp_middleware_by_status(
    integration: Call,
    reg: CollectorRegistry,
    status: int,
    outcome: Outcome,
    reason: ErrorReason | None,
) -> None:
    mw = integration
    before = snapshot(reg)
    response = await mw(_request(), _handler(status))
    assert response.status == status
    assert_one_request(before, reg, outcome, reason)


async def test_aiohttp_middleware_exceptions_and_cancellation(
    integration: Call, reg: CollectorRegistry
) -> None:
    mw = integration
    before = snapshot(reg)
    with pytest.raises(web.HTTPServiceUnavailable):
        await mw(_request(version="v2"), _handler(raise_=web.HTTPServiceUnavailable()))
    assert_one_request(before, reg, Outcome.ERROR, ErrorReason.REJECTED, labels=V2)

    before = snapshot(reg)
    with pytest.raises(ZeroDivisionError):
        await mw(_request(), _handler(raise_=ZeroDivisionError()))
    assert_one_request(before, reg, Outcome.ERROR, ErrorReason.BACKEND)

    gate = asyncio.Event()

    async def slow(_: web.Request) -> web.StreamResponse:
        gate.set()
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    before = snapshot(reg)
    task = asyncio.create_task(mw(_request(), slow))
    await gate.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_one_request(before, reg, Outcome.CANCELLED)


async def test_aiohttp_middleware_ignores_other_routes(
    integration: Call, reg: CollectorRegistry
) -> None:
    before = snapshot(reg)
    await integration(make_mocked_request("GET", "/metrics"), _handler())
    assert changed(before, snapshot(reg)) == {}


@pytest.mark.parametrize("kind", ["middleware", "handler"])
async def test_aiohttp_middleware_in_a_real_app(
    ins: ModelInstruments, reg: CollectorRegistry, kind: str
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    async def infer(request: web.Request) -> web.StreamResponse:
        if request.match_info["version"] == "v2":
            raise web.HTTPBadGateway()
        return web.json_response({"ok": True})

    route = "/v2/models/{model}/versions/{version}/infer"
    if kind == "middleware":
        app = web.Application(middlewares=[instrument_middleware(ins)])
        app.router.add_post(route, infer)
    else:
        app = web.Application()  # no middleware: aiohttp skips its middleware chain
        app.router.add_post(route, instrument_handler(ins)(infer))
    async with TestClient(TestServer(app)) as client:
        before = snapshot(reg)
        r = await client.post("/v2/models/risk-scorer/versions/v3/infer")
        assert r.status == 200
        assert_one_request(before, reg, Outcome.OK)
        before = snapshot(reg)
        r = await client.post("/v2/models/risk-scorer/versions/v2/infer")
        assert r.status == 502
        assert_one_request(before, reg, Outcome.ERROR, ErrorReason.BACKEND, labels=V2)


# ----------------------------------------------------------------------------- ASGI


async def raw_asgi_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """A hand-written ASGI app: the query string says what to do."""
    mode = scope["query_string"].decode()
    if mode == "raise-before":
        raise RuntimeError("model crashed")
    if mode == "block":
        await asyncio.Event().wait()
    if mode == "disconnect":
        message = await receive()
        assert message["type"] == "http.disconnect"
        return
    status = int(mode) if mode.isdigit() else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    if mode == "raise-after":
        raise RuntimeError("stream broke")
    await send({"type": "http.response.body", "body": b"{}"})


async def _asgi_call(
    app: InstrumentMiddleware, mode: str, path: str = "/v2/models/risk-scorer/versions/v3/infer"
) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": path, "query_string": mode.encode()}
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize(
    ("mode", "outcome", "reason"),
    [
        ("200", Outcome.OK, None),
        ("422", Outcome.INVALID, None),
        ("503", Outcome.ERROR, ErrorReason.REJECTED),
        ("disconnect", Outcome.CANCELLED, None),
    ],
)
async def test_asgi_middleware_by_response(
    ins: ModelInstruments,
    reg: CollectorRegistry,
    mode: str,
    outcome: Outcome,
    reason: ErrorReason | None,
) -> None:
    app = InstrumentMiddleware(raw_asgi_app, ins)
    before = snapshot(reg)
    await _asgi_call(app, mode)
    assert_one_request(before, reg, outcome, reason)


@pytest.mark.parametrize("mode", ["raise-before", "raise-after"])
async def test_asgi_middleware_exception(
    ins: ModelInstruments, reg: CollectorRegistry, mode: str
) -> None:
    app = InstrumentMiddleware(raw_asgi_app, ins)
    before = snapshot(reg)
    with pytest.raises(RuntimeError):
        await _asgi_call(app, mode)
    # A 200 already sent and then a broken body is still a failed request.
    assert_one_request(before, reg, Outcome.ERROR, ErrorReason.BACKEND)


async def test_asgi_middleware_cancellation(ins: ModelInstruments, reg: CollectorRegistry) -> None:
    app = InstrumentMiddleware(raw_asgi_app, ins)
    before = snapshot(reg)
    task = asyncio.create_task(_asgi_call(app, "block"))
    for _ in range(100):
        if reg.get_sample_value(MODEL_IN_FLIGHT.series, V3) == 1:
            break
        await asyncio.sleep(0)
    assert reg.get_sample_value(MODEL_IN_FLIGHT.series, V3) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert_one_request(before, reg, Outcome.CANCELLED)


async def test_asgi_passes_lifespan_and_other_paths(
    ins: ModelInstruments, reg: CollectorRegistry
) -> None:
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    mw = InstrumentMiddleware(app, ins)
    before = snapshot(reg)
    await mw({"type": "lifespan"}, None, None)
    await _asgi_call(mw, "200", path="/healthz")
    assert seen == ["lifespan", "http"]
    assert changed(before, snapshot(reg)) == {}
