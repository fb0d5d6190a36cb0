"""Bodies no parser should choke on: every one is a 400 (Alertmanager does not retry a 4xx;
it retries a 5xx, which is promised only for storage failures), never a 500."""

from __future__ import annotations

import pytest
from service_testkit import Env, auth, start_env

from scheduler.service.routes import ALERTS_PATH

ENDPOINTS = [(ALERTS_PATH, "alertmanager"), ("/api/v1/jobs", "operator")]
BODIES = {
    "nested arrays, 200 kB": b"[" * 100_000 + b"]" * 100_000,
    "nested objects": b'{"a":' * 30_000 + b"1" + b"}" * 30_000,
    "nested under a valid key": b'{"version":"4","alerts":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    "not UTF-8": b'{"id":"\xff\xfe"}',
    "a lone surrogate escape": b'{"id":"\\ud800"}',
    "an integer beyond the digit limit": b'{"gpus":' + b"9" * 5000 + b"}",
    "NaN": b'{"gpus":NaN}',
    "empty": b"",
}


@pytest.mark.parametrize("what", list(BODIES))
@pytest.mark.parametrize(("path", "role"), ENDPOINTS, ids=["webhook", "api"])
async def test_unparseable_body_is_400(env: Env, path: str, role: str, what: str) -> None:
    r = await env.client.post(path, data=BODIES[what], headers=auth(role))
    assert r.status == 400, (what, await r.text())
    assert (await r.json())["error"] == "invalid request"


@pytest.mark.parametrize(("path", "role"), ENDPOINTS, ids=["webhook", "api"])
async def test_a_body_that_cannot_be_decoded_is_400(tmp_path, path: str, role: str) -> None:  # type: ignore[no-untyped-def]
    env = await start_env(tmp_path)
    try:
        headers = {**auth(role), "Content-Encoding": "gzip"}
        r = await env.client.post(path, data=b"\x1f\x8bnot gzip at all", headers=headers)
        assert r.status == 400
        assert "cannot be read" in (await r.json())["reason"]
    finally:
        await env.client.close()
