"""Notification templates for on-call, generated for Alertmanager 0.25, in Chinese and English.

``template_files(stack)`` returns file name -> Go template text, written to
``deploy/generated/templates/`` and loaded through ``templates:`` in
``alertmanager.yml``. Each language gets the same defines:

* ``novabrain.email.subject.<lang>`` and ``novabrain.email.html.<lang>``;
* ``novabrain.wechat.<lang>``: WeCom markdown (at most ``WECHAT_MAX_ALERTS``
  alerts per status, WeCom caps a markdown message at 4096 bytes).

Every notification says firing or resolved, the severity, how many alerts the
group holds, and per alert: the model or GPU and its pool, the current value
(the ``value`` annotation the rules fill), summary and description (the
``*_zh`` annotations in Chinese), start (and end) time, and links: the runbook,
the dashboard panel over the alert's time range (from an hour before it
started to now, or ten minutes past its end), a silence in Alertmanager
prefilled with the alert's labels, and Prometheus' graph of its expression.
An alert the scheduler acts on gets no silence link: a silence would stop the
scheduler acting too (``novabrain silence`` refuses it for the same reason).

Alertmanager 0.25 has no ``tz`` template function (it came in 0.26), so times
are shown in the stack's timezone by adding its UTC offset when that offset is
fixed (Asia/Shanghai is UTC+8 all year), and in UTC otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from deploy.stack import LANGUAGES, Stack

WECHAT_MAX_ALERTS = 5
# The dashboard's time range around an alert (Grafana takes epoch milliseconds).
BEFORE_START = timedelta(hours=1)
AFTER_END = timedelta(minutes=10)
NS = 1_000_000_000


@dataclass(frozen=True)
class Words:
    firing: str
    resolved: str
    severities: tuple[tuple[str, str], ...]  # (label value, shown as)
    group: str  # "{firing} firing, {resolved} resolved" with Go template actions
    model: str
    gpu: str
    target: str
    pool: str
    value: str
    summary: str
    description: str
    started: str
    ended: str
    runbook: str
    dashboard: str
    silence: str
    prometheus: str
    no_silence: str
    more: str
    links: str


WORDS = {
    "en": Words(
        firing="FIRING",
        resolved="RESOLVED",
        severities=(("critical", "CRITICAL"), ("warning", "WARNING"), ("info", "INFO")),
        group="{{ len .Alerts.Firing }} firing, {{ len .Alerts.Resolved }} resolved",
        model="Model",
        gpu="GPU",
        target="Target",
        pool="Pool",
        value="Current value",
        summary="Summary",
        description="Description",
        started="Started",
        ended="Ended",
        runbook="Runbook",
        dashboard="Dashboard",
        silence="Silence",
        prometheus="Prometheus",
        no_silence="no silence: it would also stop the scheduler's automatic action",
        more="more alerts in this group",
        links="Links",
    ),
    "zh": Words(
        firing="告警",
        resolved="已恢复",
        severities=(("critical", "严重"), ("warning", "警告"), ("info", "提示")),
        group="触发中 {{ len .Alerts.Firing }} 条，已恢复 {{ len .Alerts.Resolved }} 条",
        model="模型",
        gpu="GPU",
        target="采集目标",
        pool="资源池",
        value="当前值",
        summary="摘要",
        description="详情",
        started="开始时间",
        ended="结束时间",
        runbook="运行手册",
        dashboard="监控看板",
        silence="静默",
        prometheus="Prometheus",
        no_silence="不提供静默：静默会同时停止调度器的自动处置",
        more="条告警未列出",
        links="链接",
    ),
}


def fixed_offset(tz: str) -> timedelta | None:
    """The zone's UTC offset if it never changes (checked over 2000-2040), else None."""
    zone = ZoneInfo(tz)
    offsets = {
        datetime(year, month, 1, tzinfo=zone).utcoffset()
        for year in range(2000, 2041)
        for month in (1, 4, 7, 10)
    }
    return offsets.pop() if len(offsets) == 1 else None


def _clock(stack: Stack) -> tuple[str, str]:
    """(nanoseconds to add to a UTC time, the zone's name to show after it)."""
    offset = fixed_offset(stack.alerting.timezone)
    if offset is None:
        return "0", "UTC"
    return str(int(offset.total_seconds()) * NS), stack.alerting.timezone


def _when(field: str, stack: Stack) -> str:
    add, name = _clock(stack)
    return "{{ (." + field + ".Add " + add + ').Format "2006-01-02 15:04:05" }} (' + name + ")"


def _severity(w: Words, ref: str) -> str:
    out = ""
    for i, (value, shown) in enumerate(w.severities):
        out += ("{{ if " if i == 0 else "{{ else if ") + f'eq {ref} "{value}" }}}}{shown}'
    return out + "{{ else }}" + "{{ " + ref + " }}{{ end }}"


def _text(key: str, lang: str) -> str:
    """An annotation in the language, falling back to English when a rule has no translation."""
    if lang == "en":
        return "{{ .Annotations." + key + " }}"
    return (
        "{{ if .Annotations."
        + key
        + "_"
        + lang
        + " }}{{ .Annotations."
        + key
        + "_"
        + lang
        + " }}{{ else }}{{ .Annotations."
        + key
        + " }}{{ end }}"
    )


def _object(w: Words) -> str:
    """What the alert is about: its model, GPU or scrape target."""
    return (
        "{{ if .Labels.model }}" + w.model + " {{ .Labels.model }}"
        "{{ else if .Labels.uuid }}"
        + w.gpu
        + " {{ .Labels.node }}/{{ .Labels.gpu }} ({{ .Labels.uuid }})"
        "{{ else if .Labels.instance }}" + w.target + " {{ .Labels.job }} {{ .Labels.instance }}"
        "{{ else }}-{{ end }}"
    )


def _dashboard(amp: str = "&") -> str:
    """The alert's dashboard panel from an hour before it started to now, or to ten minutes
    past its end (``amp`` is ``&amp;`` in HTML: template text is not escaped)."""
    before, after = int(BEFORE_START.total_seconds()) * NS, int(AFTER_END.total_seconds()) * NS
    return (
        "{{ .Annotations.dashboard_url }}"
        + amp
        + "from={{ (.StartsAt.Add -"
        + str(before)
        + ").Unix }}000"
        + amp
        + 'to={{ if eq .Status "resolved" }}{{ (.EndsAt.Add '
        + str(after)
        + ").Unix }}000{{ else }}now{{ end }}"
    )


# Inside ``range``: ``$`` is the notification, ``.`` the alert.
SILENCE = (
    '{{ $.ExternalURL }}/#/silences/new?filter={{ urlquery "{" }}'
    '{{ range $i, $p := .Labels.SortedPairs }}{{ if $i }}{{ urlquery "," }}{{ end }}'
    '{{ urlquery $p.Name }}{{ urlquery "=\\"" }}{{ urlquery $p.Value }}{{ urlquery "\\"" }}'
    '{{ end }}{{ urlquery "}" }}'
)


def _status(w: Words) -> str:
    return (
        '{{ if eq .Status "firing" }}[' + w.firing + ":{{ len .Alerts.Firing }}]"
        "{{ else }}[" + w.resolved + "]{{ end }}"
    )


def _subject(w: Words, lang: str) -> str:
    where = (
        "{{ if .GroupLabels.model }} {{ .GroupLabels.model }}{{ end }}"
        "{{ if .GroupLabels.pool }} @ {{ .GroupLabels.pool }}{{ end }}"
    )
    summary = "{{ with index .Alerts 0 }}" + _text("summary", lang) + "{{ end }}"
    return (
        _status(w)
        + " "
        + _severity(w, ".CommonLabels.severity")
        + " {{ .GroupLabels.alertname }}"
        + where
        + ": "
        + summary
    )


def _html(w: Words, lang: str, stack: Stack) -> str:
    row = '<tr><th align="left">{k}</th><td>{v}</td></tr>\n'
    links = (
        '<a href="{{ .Annotations.runbook_url }}">' + w.runbook + "</a> | "
        '<a href="' + _dashboard("&amp;") + '">' + w.dashboard + "</a> | "
        "{{ if .Labels.action }}"
        + w.silence
        + ": "
        + w.no_silence
        + '{{ else }}<a href="'
        + SILENCE
        + '">'
        + w.silence
        + "</a>{{ end }} | "
        '<a href="{{ .GeneratorURL }}">' + w.prometheus + "</a>"
    )
    alert = (
        '<table border="1" cellpadding="4" cellspacing="0" style="border-collapse:collapse;margin-bottom:12px">\n'
        + row.format(
            k=w.summary,
            v='<b>{{ if eq .Status "firing" }}'
            + w.firing
            + "{{ else }}"
            + w.resolved
            + "{{ end }}</b> "
            + _severity(w, ".Labels.severity")
            + " "
            + _text("summary", lang),
        )
        + row.format(k=w.model + " / " + w.gpu, v=_object(w))
        + row.format(k=w.pool, v='{{ or .Labels.pool "-" }}')
        + row.format(k=w.value, v='{{ or .Annotations.value "-" }}')
        + row.format(k=w.description, v=_text("description", lang))
        + row.format(k=w.started, v=_when("StartsAt", stack))
        + '{{ if eq .Status "resolved" }}'
        + row.format(k=w.ended, v=_when("EndsAt", stack))
        + "{{ end }}"
        + row.format(k=w.links, v=links)
        + "</table>\n"
    )
    return (
        "<!DOCTYPE html>\n<html><body>\n"
        "<h3>" + _subject(w, lang) + "</h3>\n"
        "<p>" + w.group + "</p>\n"
        "{{ range .Alerts.Firing }}" + alert + "{{ end }}"
        "{{ range .Alerts.Resolved }}" + alert + "{{ end }}"
        "</body></html>\n"
    )


def _wechat(w: Words, lang: str, stack: Stack) -> str:
    alert = (
        '\n> **{{ if eq .Status "firing" }}<font color="warning">' + w.firing + "</font>"
        '{{ else }}<font color="info">'
        + w.resolved
        + "</font>{{ end }}** "
        + _text("summary", lang)
        + "\n"
        "> " + _object(w) + " · " + w.pool + ' {{ or .Labels.pool "-" }}\n'
        "> " + w.value + ': **{{ or .Annotations.value "-" }}**\n'
        "> " + w.started + ": " + _when("StartsAt", stack) + "\n"
        "> " + _text("description", lang) + "\n"
        "> ["
        + w.runbook
        + "]({{ .Annotations.runbook_url }}) · ["
        + w.dashboard
        + "]("
        + _dashboard()
        + ")"
        "{{ if not .Labels.action }} · [" + w.silence + "](" + SILENCE + "){{ end }}\n"
    )
    limit = str(WECHAT_MAX_ALERTS)
    block = (
        "{{ range $i, $a := .Alerts.@S@ }}{{ if lt $i "
        + limit
        + " }}{{ with $a }}"
        + alert
        + "{{ end }}{{ end }}{{ end }}"
        "{{ if gt (len .Alerts.@S@) "
        + limit
        + " }}\n> … {{ len (slice .Alerts.@S@ "
        + limit
        + ") }} "
        + w.more
        + "\n{{ end }}"
    )
    return (
        "### "
        + _subject(w, lang)
        + "\n"
        + w.group
        + "\n"
        + block.replace("@S@", "Firing")
        + block.replace("@S@", "Resolved")
    )


def _define(name: str, body: str) -> str:
    return '{{ define "' + name + '" }}' + body + "{{ end }}\n"


HEADER = "{{/* Generated by `novabrain generate` from the stack file. Do not edit. */}}\n"


def template_files(stack: Stack) -> dict[str, str]:
    """File name -> template text: ``email.tmpl`` and ``wechat.tmpl``, both languages each."""
    email, wechat = HEADER, HEADER
    for lang in LANGUAGES:
        w = WORDS[lang]
        email += _define(f"novabrain.email.subject.{lang}", _subject(w, lang))
        email += _define(f"novabrain.email.html.{lang}", _html(w, lang, stack))
        wechat += _define(f"novabrain.wechat.{lang}", _wechat(w, lang, stack))
    return {"email.tmpl": email, "wechat.tmpl": wechat}
