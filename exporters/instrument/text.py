"""The in-process store's families in the Prometheus text format (0.0.4), written directly.

Same families, label values and ``le`` spellings as the store's ``collect``
(the tests parse both and compare), but each recorder's label string and each
bucket's line prefix are built once, with the recorder, so a scrape is string
joins and number formatting only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from prometheus_client.utils import floatToGoString

from exporters.catalog import model as cat
from exporters.catalog._metric import Metric as CatalogMetric
from exporters.catalog._metric import MetricKind

if TYPE_CHECKING:
    from exporters.instrument.core import ModelKey, _InProcessStore

_go = cast(Callable[[float], str], floatToGoString)

# (part of a recorder, catalog family, extra label) in the order collect() yields them.
COUNTERS = (("requests", cat.MODEL_REQUESTS, "outcome"), ("errors", cat.MODEL_ERRORS, "reason"))
HISTOGRAMS = (
    ("duration", cat.MODEL_REQUEST_DURATION),
    ("queue_wait", cat.MODEL_QUEUE_WAIT),
    ("batch_size", cat.MODEL_BATCH_SIZE),
    ("time_to_first_token", cat.MODEL_TIME_TO_FIRST_TOKEN),
    ("inter_token_latency", cat.MODEL_INTER_TOKEN_LATENCY),
)
GAUGES = (
    ("in_flight", cat.MODEL_IN_FLIGHT),
    ("running", cat.MODEL_REQUESTS_RUNNING),
    ("waiting", cat.MODEL_REQUESTS_WAITING),
)
LLM_COUNTERS = (
    ("prompt_tokens", cat.MODEL_PROMPT_TOKENS),
    ("generation_tokens", cat.MODEL_GENERATION_TOKENS),
)
LLM_ONLY = {"time_to_first_token", "inter_token_latency", "running", "waiting"}


def _num(v: float) -> str:
    # repr is the shortest round-tripping spelling; Go's parser reads it. Only
    # the non-finite values need Go's own words.
    return repr(v) if math.isfinite(v) else _go(v)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _header(m: CatalogMetric) -> str:
    name = m.series if m.kind is MetricKind.COUNTER else m.name
    help_ = m.help.replace("\\", "\\\\").replace("\n", "\\n")
    return f"# HELP {name} {help_}\n# TYPE {name} {m.kind.value}\n"


class Prefixes:
    """The line prefixes of one recorder, everything up to the value: built once, when the recorder is."""

    def __init__(self, key: ModelKey, parts: dict[str, Any]) -> None:
        lv = ",".join(
            f'{n}="{_escape(v)}"' for n, v in zip(cat.MODEL_LABELS, key.labels, strict=True)
        )
        self.plain = {m.name: f"{m.name}{{{lv}}} " for _, m in GAUGES}
        self.plain |= {m.series: f"{m.series}{{{lv}}} " for _, m in LLM_COUNTERS}
        self.labelled = {
            part: [f'{m.series}{{{lv},{extra}="{k.value}"}} ' for k in parts[part]]
            for part, m, extra in COUNTERS
        }
        self.buckets = {
            part: [f'{m.bucket}{{{lv},le="{_go(b)}"}} ' for b in (*parts[part].bounds, math.inf)]
            for part, m in HISTOGRAMS
        }
        self.sum = {part: f"{m.sum}{{{lv}}} " for part, m in HISTOGRAMS}
        self.count = {part: f"{m.count}{{{lv}}} " for part, m in HISTOGRAMS}


def render(store: _InProcessStore) -> str:
    out: list[str] = []
    w = out.append
    recs = [
        (key, parts, pre) for (key, parts), pre in zip(store.recorders, store.prefixes, strict=True)
    ]
    for part, m, _ in COUNTERS:
        w(_header(m))
        for _, parts, pre in recs:
            for prefix, child in zip(pre.labelled[part], parts[part].values(), strict=True):
                w(f"{prefix}{_num(child.value)}\n")
    for part, m in HISTOGRAMS:
        w(_header(m))
        for key, parts, pre in recs:
            if part in LLM_ONLY and not key.llm:
                continue
            counts, total = parts[part].snapshot()
            cumulative = 0
            for prefix, n in zip(pre.buckets[part], counts, strict=True):
                cumulative += n
                w(f"{prefix}{cumulative}\n")
            w(f"{pre.count[part]}{cumulative}\n{pre.sum[part]}{_num(total)}\n")
    for part, m in GAUGES:
        w(_header(m))
        for key, parts, pre in recs:
            if part in LLM_ONLY and not key.llm:
                continue
            w(f"{pre.plain[m.name]}{_num(parts[part].value)}\n")
    for part, m in LLM_COUNTERS:
        w(_header(m))
        for key, parts, pre in recs:
            if key.llm:
                w(f"{pre.plain[m.series]}{_num(parts[part].value)}\n")
    unknown = cat.MODEL_UNKNOWN_REQUESTS
    w(_header(unknown))
    w(f"{unknown.series} {_num(store.unknown.value)}\n")
    return "".join(out)
