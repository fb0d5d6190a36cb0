"""Ad-hoc silences through Alertmanager's v2 API, audited, never over the scheduler's route.

``add`` parses Alertmanager matchers, refuses any set that would silence an alert
the scheduler acts on (a silence suppresses every notification of an alert, the
scheduler's webhook included), and creates the silence with its author and
comment. ``list`` shows active and pending silences; ``expire`` ends one.

When the scheduler is configured (a scheduler URL and a token file), each call
is written to its audit log before it is carried out, and its outcome after:
a call that cannot be audited is not carried out. The audit record goes through
the scheduler's REST API (``AUDIT_PATH``), authenticated with the token; what it
takes (``scheduler.service.reports``) is checked here first, so that an over-long
comment is a user mistake (exit 2), not a refused audit call.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from alerts.alertmanager import action_pools
from alerts.errors import AlertsError
from alerts.rules import build
from deploy.stack import MATCHER, Stack
from scheduler.service import reports

AUDIT_PATH = reports.AUDIT_RECORDS_PATH
_DURATION = re.compile(r"^(\d+)(s|m|h|d)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_DURATION = timedelta(days=30)
TIMEOUT = 10.0


class SilenceError(AlertsError):
    """A silence that cannot be added, listed or expired; ``exit_code`` 2 for a user mistake."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class Matcher:
    name: str
    op: str  # =, !=, =~, !~
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Alertmanager's semantics: a missing label is the empty string; regexes are anchored."""
        v = labels.get(self.name, "")
        if self.op in ("=", "!="):
            return (v == self.value) == (self.op == "=")
        return (re.fullmatch(self.value, v) is not None) == (self.op == "=~")

    def api(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "isRegex": self.op in ("=~", "!~"),
            "isEqual": self.op in ("=", "=~"),
        }

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


def parse_matchers(texts: Sequence[str]) -> tuple[Matcher, ...]:
    if not texts:
        raise SilenceError('name at least one matcher, e.g. node="gpu-node-3"', 2)
    if len(texts) > reports.MAX_MATCHERS:
        raise SilenceError(f"at most {reports.MAX_MATCHERS} matchers", 2)
    out = []
    for t in texts:
        if len(t) > reports.MAX_MATCHER:
            raise SilenceError(f"a matcher has at most {reports.MAX_MATCHER} characters", 2)
        m = MATCHER.match(t)
        if m is None:
            raise SilenceError(f'bad matcher {t!r}: want label="value" (or !=, =~, !~)', 2)
        if m[2] in ("=~", "!~"):
            try:
                re.compile(m[3])
            except re.error as e:
                raise SilenceError(f"bad regular expression in {t!r}: {e}", 2) from None
        out.append(Matcher(m[1], m[2], m[3].replace('\\"', '"')))
    if all(m.matches({}) for m in out):
        # Alertmanager refuses these too: they would silence every alert without those labels.
        raise SilenceError("at least one matcher must not match the empty string", 2)
    return tuple(out)


def parse_duration(text: str) -> timedelta:
    m = _DURATION.match(text)
    if m is None or int(m[1]) == 0:
        raise SilenceError(f"bad duration {text!r}: want e.g. 90m, 2h or 1d", 2)
    d = timedelta(seconds=int(m[1]) * _UNITS[m[2]])
    if d > MAX_DURATION:
        raise SilenceError("a silence lasts at most 30 days: use a maintenance window", 2)
    return d


def action_alerts(stack: Stack) -> list[dict[str, str]]:
    """The label sets of the alerts the scheduler acts on, as Alertmanager receives them."""
    pools = set(action_pools(stack))
    out = []
    for case in build(stack)[0]:
        for e in case.expected:
            if "action" in e.labels and e.labels.get("pool") in pools:
                out.append({**e.labels, "stack": stack.name})
    return out


def refuse_if_action(stack: Stack, matchers: Sequence[Matcher]) -> None:
    for labels in action_alerts(stack):
        if all(m.matches(labels) for m in matchers):
            raise SilenceError(
                f"refused: these matchers would silence {labels['alertname']} "
                f"(model {labels.get('model', '-')}, pool {labels.get('pool', '-')}), which "
                "the scheduler acts on; a silence would stop the rebalance too",
                2,
            )


def _request(url: str, method: str, body: Any = None, token: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 (operator's URL)
    req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as r:  # noqa: S310
            raw = r.read()
    except urllib.error.HTTPError as e:
        detail = e.read()[:300].decode(errors="replace").strip()
        raise SilenceError(f"{method} {url}: HTTP {e.code} {detail}") from None
    except (urllib.error.URLError, OSError) as e:
        reason = getattr(e, "reason", e)
        # The user's to fix (a wrong URL, a service down): exit 2, as every command.
        raise SilenceError(f"cannot reach {url}: {reason}", 2) from None
    return json.loads(raw) if raw.strip() else None


class Auditor:
    """Writes a call to the scheduler's audit log; with no scheduler configured, does nothing."""

    def __init__(self, scheduler_url: str | None, token_file: Path | None) -> None:
        self.url = None if scheduler_url is None else scheduler_url.rstrip("/") + AUDIT_PATH
        self.token: str | None = None
        if token_file is not None:
            try:
                self.token = token_file.read_text(encoding="utf-8").strip()
            except OSError as e:
                raise SilenceError(
                    f"cannot read token file {token_file}: {e.strerror}", 2
                ) from None

    @property
    def enabled(self) -> bool:
        return self.url is not None and self.token is not None

    def record(self, operation: str, obj: str, result: str, **params: Any) -> None:
        if not self.enabled:
            return
        assert self.url is not None
        body = {"operation": operation, "object": obj, "result": result, "params": params}
        try:
            _request(self.url, "POST", body, self.token)
        except SilenceError as e:
            raise SilenceError(f"not audited, so not done: {e}", e.exit_code) from None


def add(
    stack: Stack,
    alertmanager_url: str,
    matchers: Sequence[Matcher],
    *,
    author: str,
    comment: str,
    duration: timedelta,
    auditor: Auditor,
    now: datetime | None = None,
) -> str:
    """Create the silence; its id. Refused before anything is written if it would
    silence an alert the scheduler acts on."""
    if not author.strip() or not comment.strip():
        raise SilenceError("a silence needs an --author and a --comment saying why", 2)
    check_author(author)
    if len(comment) > reports.MAX_COMMENT:
        raise SilenceError(f"--comment has at most {reports.MAX_COMMENT} characters", 2)
    refuse_if_action(stack, matchers)
    start = now or datetime.now(UTC)
    end = start + duration
    params = {
        "matchers": [str(m) for m in matchers],
        "startsAt": start.isoformat(),
        "endsAt": end.isoformat(),
        "author": author,
        "comment": comment,
    }
    auditor.record("silence.add", "", "requested", **params)
    body = {
        "matchers": [m.api() for m in matchers],
        "startsAt": start.isoformat(),
        "endsAt": end.isoformat(),
        "createdBy": author,
        "comment": comment,
    }
    created = _request(alertmanager_url.rstrip("/") + "/api/v2/silences", "POST", body)
    silence_id = str(created["silenceID"])
    auditor.record("silence.add", silence_id, "ok", **params)
    return silence_id


def list_silences(alertmanager_url: str, *, everything: bool = False) -> list[dict[str, Any]]:
    """Active and pending silences (``everything``: expired ones too), newest end last."""
    got = _request(alertmanager_url.rstrip("/") + "/api/v2/silences", "GET")
    keep = [s for s in got if everything or s["status"]["state"] != "expired"]
    return sorted(keep, key=lambda s: (s["endsAt"], s["id"]))


def check_author(author: str) -> None:
    if not author.strip() or len(author) > reports.MAX_AUTHOR:
        raise SilenceError(f"--author: a name of 1 to {reports.MAX_AUTHOR} characters", 2)


def expire(alertmanager_url: str, silence_id: str, *, author: str, auditor: Auditor) -> None:
    if not re.fullmatch(reports.SILENCE_ID, silence_id):
        raise SilenceError(f"bad silence id {silence_id!r}", 2)
    check_author(author)
    auditor.record("silence.expire", silence_id, "requested", author=author)
    _request(alertmanager_url.rstrip("/") + f"/api/v2/silence/{silence_id}", "DELETE")
    auditor.record("silence.expire", silence_id, "ok", author=author)


def _op(m: Mapping[str, Any]) -> str:
    equal = m.get("isEqual", True)
    return ("=~" if equal else "!~") if m["isRegex"] else ("=" if equal else "!=")


def describe(s: Mapping[str, Any]) -> str:
    """One line per silence: id, state, end, matchers, author: comment."""
    ms = ",".join(f'{m["name"]}{_op(m)}"{m["value"]}"' for m in s["matchers"])
    return (
        f"{s['id']}  {s['status']['state']:<8} until {s['endsAt']}  {{{ms}}}  "
        f"{s['createdBy']}: {s['comment']}"
    )
