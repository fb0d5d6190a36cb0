"""Silences: matcher semantics as Alertmanager's, and the scheduler's alerts never silenced.

The refusal is checked against the real Alertmanager: matchers that ``novabrain silence``
refuses do silence the P0 action alert there, and matchers it accepts do not. The audit
calls go to the real scheduler in tests/e2e/test_oncall_cli.py.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from alerts.alertmanager import alertmanager_config
from alerts.generate import templates
from alerts.silence import (
    Auditor,
    Matcher,
    SilenceError,
    action_alerts,
    add,
    expire,
    parse_duration,
    parse_matchers,
    refuse_if_action,
)
from deploy.procs import AlertmanagerProcess
from deploy.stack import Stack
from scheduler.service.reports import MAX_AUTHOR, MAX_COMMENT, MAX_MATCHER, MAX_MATCHERS

REFUSED = [
    ['alertname="NovabrainModelLatencyHigh"'],
    ['pool="p0-risk"'],
    ['team="risk"'],
    ['severity="critical"'],
    ['alertname=~"Novabrain.*"'],
    ['model="risk-scorer"', 'alertname!="NovabrainGpuDown"'],
]
ACCEPTED = [
    ['node="gpu-node-3"'],
    ['alertname="NovabrainGpuTemperatureHigh"'],
    ['pool="p1-train"'],
    ['alertname=~"NovabrainGpu.*"', 'pool="p0-risk"'],
    ['model="risk-scorer"', 'action!~".+"'],
]


@pytest.mark.parametrize("texts", REFUSED, ids=" ".join)
def test_matchers_over_the_scheduler_route_are_refused(stack: Stack, texts: list[str]) -> None:
    with pytest.raises(SilenceError, match=r"refused: .*NovabrainModelLatencyHigh") as e:
        refuse_if_action(stack, parse_matchers(texts))
    assert e.value.exit_code == 2


@pytest.mark.parametrize("texts", ACCEPTED, ids=" ".join)
def test_other_matchers_are_accepted(stack: Stack, texts: list[str]) -> None:
    refuse_if_action(stack, parse_matchers(texts))


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        (["node=gpu-node-3"], "bad matcher"),
        (['node=~"("'], "bad regular expression"),
        (['node=~".*"'], "must not match the empty string"),
        ([], "at least one matcher"),
    ],
)
def test_bad_matchers_are_user_errors(texts: list[str], message: str) -> None:
    with pytest.raises(SilenceError, match=message) as e:
        parse_matchers(texts)
    assert e.value.exit_code == 2


def test_durations() -> None:
    assert parse_duration("90m") == timedelta(minutes=90)
    for bad in ("2", "0h", "31d", "2 h"):
        with pytest.raises(SilenceError):
            parse_duration(bad)


def test_matchers_treat_a_missing_label_as_empty() -> None:
    assert Matcher("node", "!=", "a").matches({})
    assert not Matcher("node", "=~", "a|b").matches({"node": "ab"})  # anchored
    assert Matcher("node", "!~", "a|b").matches({"node": "c"})


def _post(url: str, body: Any) -> Any:
    req = urllib.request.Request(  # noqa: S310 (loopback)
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310
        return json.loads(r.read() or b"null")


@pytest.mark.skipif(shutil.which("prometheus-alertmanager") is None, reason="no alertmanager")
def test_the_refusal_agrees_with_alertmanager(stack: Stack, tmp_path: Path) -> None:
    """Each refused set, created directly in Alertmanager, silences the P0 alert; each
    accepted set does not."""
    (p0,) = action_alerts(stack)
    with AlertmanagerProcess(alertmanager_config(stack), tmp_path, files=templates(stack)) as am:
        _post(am.url + "/api/v2/alerts", [{"labels": p0}])
        for texts, silenced in [*((t, True) for t in REFUSED), *((t, False) for t in ACCEPTED)]:
            matchers = parse_matchers(texts)
            sid = _post(
                am.url + "/api/v2/silences",
                {
                    "matchers": [m.api() for m in matchers],
                    "startsAt": "2020-01-01T00:00:00Z",
                    "endsAt": "2099-01-01T00:00:00Z",
                    "createdBy": "test",
                    "comment": "agreement",
                },
            )["silenceID"]
            deadline = time.monotonic() + 20
            while True:
                (alert,) = am.alerts()
                if (sid in alert["status"]["silencedBy"]) == silenced:
                    break
                assert time.monotonic() < deadline, (texts, alert["status"])
                time.sleep(0.2)
            req = urllib.request.Request(am.url + f"/api/v2/silence/{sid}", method="DELETE")  # noqa: S310
            urllib.request.urlopen(req, timeout=10).close()  # noqa: S310


# Nothing listens here: a check that fell through to the network would fail differently.
UNREACHABLE = Auditor("http://127.0.0.1:9", None)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("author", "x" * (MAX_AUTHOR + 1)),
        ("comment", "x" * (MAX_COMMENT + 1)),
        ("matchers", [f'node="n{i}"' for i in range(MAX_MATCHERS + 1)]),
        ("matchers", ['node="' + "x" * MAX_MATCHER + '"']),
    ],
    ids=["author", "comment", "matcher count", "matcher length"],
)
def test_what_the_scheduler_would_refuse_is_a_user_mistake(
    stack: Stack, field: str, value: Any
) -> None:
    """The audit endpoint's limits, checked before any call: exit 2, not a refused audit."""
    args: dict[str, Any] = {
        "author": "li.wei",
        "comment": "CHG-1234",
        "matchers": ['node="gpu-node-3"'],
        field: value,
    }
    with pytest.raises(SilenceError) as e:
        add(
            stack,
            "http://127.0.0.1:9",
            parse_matchers(args["matchers"]),
            author=args["author"],
            comment=args["comment"],
            duration=timedelta(hours=1),
            auditor=UNREACHABLE,
        )
    assert e.value.exit_code == 2, e.value
    with pytest.raises(SilenceError) as e:
        expire("http://127.0.0.1:9", "0" * 8, author="x" * (MAX_AUTHOR + 1), auditor=UNREACHABLE)
    assert e.value.exit_code == 2
