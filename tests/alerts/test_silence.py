"""Silences: matcher semantics as Alertmanager's, and the scheduler's alerts never silenced.

The refusal is checked against the real Alertmanager: matchers that ``novabrain silence``
refuses do silence the P0 action alert there, and matchers it accepts do not.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
import urllib.request
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from alerts.alertmanager import alertmanager_config
from alerts.generate import templates
from alerts.silence import (
    AUDIT_PATH,
    Auditor,
    Matcher,
    SilenceError,
    action_alerts,
    add,
    parse_duration,
    parse_matchers,
    refuse_if_action,
)
from deploy.procs import AlertmanagerProcess
from deploy.stack import Stack

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


class _AuditStub(BaseHTTPRequestHandler):
    """The scheduler's side of the audit call as ``alerts.silence`` sends it (see the report:
    the endpoint is proposed for scheduler/service)."""

    records: list[tuple[str, str, dict[str, Any]]] = []
    status = 200

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.records.append((self.path, self.headers.get("Authorization", ""), body))
        self.send_response(self.status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.skipif(shutil.which("prometheus-alertmanager") is None, reason="no alertmanager")
def test_add_is_audited_before_and_after_and_not_done_when_it_cannot_be(
    stack: Stack, tmp_path: Path
) -> None:
    token = tmp_path / "token"
    token.write_text("operator-token\n")
    server = HTTPServer(("127.0.0.1", 0), _AuditStub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    scheduler = f"http://127.0.0.1:{server.server_port}"
    matchers = parse_matchers(['node="gpu-node-3"'])
    try:
        with AlertmanagerProcess(
            alertmanager_config(stack), tmp_path / "am", files=templates(stack)
        ) as am:
            auditor = Auditor(scheduler, token)
            sid = add(
                stack,
                am.url,
                matchers,
                author="li.wei",
                comment="CHG-1234",
                duration=timedelta(hours=2),
                auditor=auditor,
            )
            (requested, done) = _AuditStub.records
            assert [r[0] for r in (requested, done)] == [AUDIT_PATH, AUDIT_PATH]
            assert requested[1] == "Bearer operator-token"
            assert requested[2]["operation"] == "silence.add"
            assert requested[2]["result"] == "requested"
            assert requested[2]["params"]["matchers"] == ['node="gpu-node-3"']
            assert (requested[2]["params"]["author"], requested[2]["params"]["comment"]) == (
                "li.wei",
                "CHG-1234",
            )
            assert (done[2]["object"], done[2]["result"]) == (sid, "ok")
            (silence,) = am.get_json("/api/v2/silences")
            assert (silence["createdBy"], silence["comment"]) == ("li.wei", "CHG-1234")

            # The audit log refuses: nothing is done.
            _AuditStub.status = 503
            with pytest.raises(SilenceError, match="not audited, so not done"):
                add(
                    stack,
                    am.url,
                    matchers,
                    author="li.wei",
                    comment="again",
                    duration=timedelta(hours=1),
                    auditor=auditor,
                )
            assert len(am.get_json("/api/v2/silences")) == 1
    finally:
        server.shutdown()
        _AuditStub.status = 200
        _AuditStub.records.clear()
