"""Audit log alerts: tampering found, and the off-box copy falling behind.

* ``NovabrainAuditChainTampered`` (critical): the scheduler's background
  verifier found a record changed, deleted or out of place
  (``AUDIT_CHAIN_VERIFIED`` is 0). It pages at once: evidence is
  being destroyed, and the log line ``audit log TAMPERED at record N`` says
  where.
* ``NovabrainAuditForwardingBehind`` (warning): records published as the
  head have not been forwarded off the box for a while (the collector is down
  or refusing): the copy an attacker cannot reach is not being made.
"""

from __future__ import annotations

from alerts.promql import dur, sel
from alerts.rules.case import Builder, Text, Value, eval_seconds
from alerts.rules.common import CRITICAL, PLATFORM_TEAM, WARNING, dashboard_url
from exporters.catalog.service import AUDIT_CHAIN_VERIFIED, AUDIT_FORWARDED_SEQ, AUDIT_HEAD_SEQ

AUDIT_FILE = "audit.rules.yml"
GROUP = "novabrain-audit"
# The forwarder sends within a second; this long behind, it is failing.
FORWARD_BEHIND_SCRAPES = 40
# The scheduler's target labels in the fixtures.
_TARGET = {"instance": "scheduler:9470", "job": "novabrain-scheduler"}


def generate(b: Builder) -> None:
    stack = b.stack
    labels = {"team": PLATFORM_TEAM}
    verified = AUDIT_CHAIN_VERIFIED.series
    b.alert(
        file=AUDIT_FILE,
        group=GROUP,
        name="NovabrainAuditChainTampered",
        expr=f"{verified} == 0",
        signal=verified,
        for_seconds=0,
        severity=CRITICAL,
        labels=labels,
        text=Text(
            "The audit log has been tampered with",
            "审计日志已被篡改",
            "The scheduler on {{ $labels.instance }} found a record of its audit log changed, "
            "deleted or out of place. Its log says where ('audit log TAMPERED at record N'); "
            "check with `novabrain audit verify --expect-head` and the off-box copy.",
            "{{ $labels.instance }} 上的调度器发现其审计日志中的记录被修改、删除或顺序错乱。"
            "其日志指明位置（'audit log TAMPERED at record N'）；请用 "
            "`novabrain audit verify --expect-head` 与异地副本核对。",
        ),
        value=Value("text", "the chain no longer verifies"),
        fired=0.0,
        dashboard=dashboard_url(stack, "audit_chain"),
        firing=((sel(verified, **_TARGET), "1x{late} 0x{n}"),),
        quiet=((sel(verified, **_TARGET), "1x{n}"),),
        out=(_TARGET,),
    )
    behind_for = FORWARD_BEHIND_SCRAPES * stack.prometheus.scrape_interval_seconds
    head, forwarded = AUDIT_HEAD_SEQ.series, AUDIT_FORWARDED_SEQ.series
    lag = f"{head} - {forwarded}"

    def pair(h: str, f: str) -> tuple[tuple[str, str], ...]:
        return ((sel(head, **_TARGET), h), (sel(forwarded, **_TARGET), f))

    b.alert(
        file=AUDIT_FILE,
        group=GROUP,
        name="NovabrainAuditForwardingBehind",
        expr=f"{lag} > 0",
        signal=lag,
        for_seconds=behind_for,
        severity=WARNING,
        labels=labels,
        text=Text(
            "Audit records are not being copied off the box",
            "审计记录未被复制到异地",
            "The scheduler on {{ $labels.instance }} has published audit records that it has "
            f"not forwarded for {dur(behind_for)}: the off-box collector is down or refusing.",
            "{{ $labels.instance }} 上的调度器已发布的审计记录超过 "
            f"{dur(behind_for)} 未转发：异地日志收集端宕机或拒收。",
        ),
        value=Value("number", suffix=" records behind"),
        # The head grows ten a scrape in the fixture, the copy not at all.
        fired=10.0 * eval_seconds(stack, behind_for) / stack.prometheus.scrape_interval_seconds,
        dashboard=dashboard_url(stack, "audit_forwarding"),
        firing=pair("100+10x{n}", "100x{n}"),
        quiet=pair("100+10x{n}", "100+10x{n}"),
        out=(_TARGET,),
    )
