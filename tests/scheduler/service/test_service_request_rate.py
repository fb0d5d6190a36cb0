"""P0's latency alert carries its model's request rate: the webhook reads it, the worker
passes it on (through the durable queue), and a missing or broken one is no error.
The load poller's parsing of Prometheus's answer, too."""

from __future__ import annotations

import json

import pytest
from service_testkit import Env, am_alert, auth, notification, settle

from scheduler.core.alerts import REQUEST_RATE_ANNOTATION
from scheduler.service.load_poll import parse_rate
from scheduler.service.payload import intent_for, parse_notification, rate_of
from scheduler.service.routes import ALERTS_PATH


def with_rate(value: str | None, **kw: str) -> dict[str, object]:
    a = am_alert(labels={"model": "risk-scorer"}, **kw)
    if value is not None:
        a["annotations"] = {**a["annotations"], REQUEST_RATE_ANNOTATION: value}  # type: ignore[dict-item]
    return a


@pytest.mark.parametrize(
    ("text", "rate"),
    [
        ("350.125", 350.125),
        (" 12 ", 12.0),
        ("0", 0.0),
        ("", None),  # the query found no series: the template renders nothing
        ("NaN", None),
        ("+Inf", None),
        ("-3", None),
        ("1e12", None),  # past MAX_RATE_RPS: a broken template, not a load
        ("<no value>", None),
        (None, None),  # an older rule without the annotation
    ],
)
def test_the_rate_annotation_parses_or_falls_back(text: str | None, rate: float | None) -> None:
    body = json.dumps(notification(with_rate(text))).encode()
    (alert,) = parse_notification(body).alerts
    assert rate_of(alert) == rate
    it = intent_for(alert, frozenset({("p0-risk", "rebalance")}))
    assert (it.model, it.rate_rps, it.action) == ("risk-scorer", rate, "rebalance")


def test_a_resolved_alert_carries_no_rate() -> None:
    body = json.dumps(notification(with_rate("350", status="resolved"), status="resolved"))
    (alert,) = parse_notification(body.encode()).alerts
    assert intent_for(alert, frozenset({("p0-risk", "rebalance")})).rate_rps is None


async def test_the_webhook_passes_the_rate_on_and_accepts_a_bad_one(env: Env) -> None:
    good = with_rate("350.5", fingerprint="00000000000000a1")
    bad = with_rate("lots", fingerprint="00000000000000a2")
    missing = with_rate(None, fingerprint="00000000000000a3")
    for a in (good, bad, missing):
        r = await env.client.post(ALERTS_PATH, json=notification(a), headers=auth("alertmanager"))
        assert r.status == 200, await r.text()  # never a 4xx for the annotation
    await settle(env)
    assert env.runtime.rates == [
        ("risk-scorer", 350.5),
        ("risk-scorer", None),
        ("risk-scorer", None),
    ]


@pytest.mark.parametrize(
    ("body", "rate"),
    [
        (
            b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"42.5"]}]}}',
            42.5,
        ),
        (b'{"status":"success","data":{"resultType":"vector","result":[]}}', None),
        (
            b'{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"NaN"]}]}}',
            None,
        ),
        (b'{"status":"error","errorType":"bad_data","error":"parse error"}', None),
        (b"<html>proxy error</html>", None),
        (
            b'{"status":"success","data":{"resultType":"vector","result":[{"value":[1,"1"]},{"value":[1,"2"]}]}}',
            None,
        ),
    ],
)
def test_the_load_poller_reads_one_value_or_reports_unknown(
    body: bytes, rate: float | None
) -> None:
    assert parse_rate(body) == rate
