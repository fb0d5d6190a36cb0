"""Alertmanager v4 parsing (pure): the idempotency key, time normalisation, errors by field."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from service_testkit import am_alert, make_stack, notification

from scheduler.service.errors import PayloadError
from scheduler.service.payload import (
    actionable_pairs,
    intent_for,
    parse_notification,
    parse_time_ns,
)
from scheduler.service.routes import _POOL
from scheduler.service.validation import validate


def parse(doc: object) -> object:
    return parse_notification(json.dumps(doc).encode())


def test_valid_notification() -> None:
    n = parse_notification(json.dumps(notification()).encode())
    (a,) = n.alerts
    assert a.status == "firing" and a.labels["pool"] == "p0-risk"
    assert a.starts_at_ns % 1_000_000_000 == 123_456_789  # nanoseconds kept
    it = intent_for(a, actionable_pairs(make_stack()))
    assert (it.pool, it.action, it.firing, it.reason) == ("p0-risk", "rebalance", True, "")
    assert it.correlation_id == "am-" + a.key[:24]


def test_key_depends_on_fingerprint_start_and_status_only() -> None:
    base = parse_notification(json.dumps(notification()).encode()).alerts[0]
    other_annotations = am_alert()
    other_annotations["annotations"] = {"summary": "changed"}
    same = parse_notification(json.dumps(notification(other_annotations)).encode()).alerts[0]
    assert same.key == base.key
    for change in ({"status": "resolved"}, {"fingerprint": "ff"},
                   {"starts_at": "2026-11-28T09:15:00.123456788Z"}):  # fmt: skip
        a = am_alert(**change)  # type: ignore[arg-type]
        assert parse_notification(json.dumps(notification(a)).encode()).alerts[0].key != base.key


@settings(max_examples=100, deadline=None)
@given(
    when=st.datetimes(
        min_value=datetime(1970, 1, 2), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    ),
    offset_minutes=st.integers(-12 * 60, 14 * 60),
)
def test_same_instant_in_any_offset_is_the_same_time(when: datetime, offset_minutes: int) -> None:
    tz = timezone(timedelta(minutes=offset_minutes))
    local = when.astimezone(tz)
    sign = "-" if offset_minutes < 0 else "+"
    hh, mm = divmod(abs(offset_minutes), 60)
    frac = f".{when.microsecond:06d}" if when.microsecond else ""
    as_z = when.strftime("%Y-%m-%dT%H:%M:%S") + frac + "Z"
    as_off = local.strftime("%Y-%m-%dT%H:%M:%S") + frac + f"{sign}{hh:02d}:{mm:02d}"
    assert parse_time_ns(as_z, "t") == parse_time_ns(as_off, "t")
    assert parse_time_ns(as_z, "t") == int(when.timestamp()) * 10**9 + when.microsecond * 1000


@pytest.mark.parametrize(
    "doc",
    [[], "x", None, 3, {"version": "4"}],
)
def test_not_a_notification(doc: object) -> None:
    with pytest.raises(PayloadError):
        parse(doc)


def test_limits() -> None:
    doc = notification(*[am_alert(fingerprint=f"{i:x}") for i in range(1001)])
    with pytest.raises(PayloadError, match="more than 1000 alerts"):
        parse(doc)
    # Any label name is taken (Alertmanager 0.27 allows UTF-8 names): refusing one drops an
    # alert; only action, pool and alertname are read.
    doc = notification(am_alert(labels={"bad-label": "x", "\u00e9t\u00e9": "y"}))
    assert parse(doc).alerts[0].labels["bad-label"] == "x"
    doc = notification(am_alert(labels={"pool": "x" * 8193}))
    with pytest.raises(PayloadError, match=r"alerts\[0\].labels.pool: longer than 8192"):
        parse(doc)
    doc = notification()
    doc["truncatedAlerts"] = True
    with pytest.raises(PayloadError, match="truncatedAlerts: must be an integer, got a boolean"):
        parse(doc)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=6),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(sorted(notification())), value=_json, alert_key=st.sampled_from(sorted(am_alert())), alert_value=_json)  # fmt: skip
def test_any_field_replaced_by_junk_is_a_payload_error_or_valid(
    key: str, value: object, alert_key: str, alert_value: object
) -> None:
    doc = notification()
    doc[key] = value
    with contextlib.suppress(PayloadError):
        parse(doc)
    doc = notification()
    doc["alerts"][0][alert_key] = alert_value
    try:
        parse(doc)
    except PayloadError as e:
        assert str(e).startswith(("alerts[0].", "alerts[0]:")), str(e)


@pytest.mark.parametrize("value", ["p0-risk\n", "p0-risk\n\n", "\np0-risk"])
def test_a_pattern_matches_the_whole_value_not_up_to_a_final_newline(value: str) -> None:
    # JSON Schema patterns are ECMA-262: ``$`` ends the string. Python's ``$`` also
    # matches before a final newline, which let "p0-risk\n" pass as a pool name.
    validate("p0-risk", _POOL)
    with pytest.raises(PayloadError, match="must match"):
        validate(value, _POOL)
