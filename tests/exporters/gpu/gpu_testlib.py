"""Helpers shared by the GPU exporter tests (a uniquely named module: conftest is not importable)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

Series = dict[str, list[tuple[dict[str, str], float]]]

STACK_FILE = Path(__file__).resolve().parents[3] / "deploy" / "stack.yaml"


class FakeClock:
    """A clock the test moves by hand, so backoff, energy and timestamps are exact."""

    def __init__(self, t: float = 1_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


def parse(text: str) -> Series:
    out: Series = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def scrape(registry: CollectorRegistry) -> Series:
    """What a Prometheus scrape of the registry would see, parsed back."""
    return parse(generate_latest(registry).decode())


def samples(registry: CollectorRegistry) -> Series:
    """The registry's samples without the text round trip (cheaper, for tight loops)."""
    out: Series = {}
    for fam in registry.collect():
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def value_of(series: Series, name: str, **labels: str) -> float | None:
    """The value of the one sample of ``name`` whose labels include ``labels`` (None if absent)."""
    hits = [v for lab, v in series.get(name, []) if all(lab.get(k) == x for k, x in labels.items())]
    assert len(hits) <= 1, f"{name}{labels} matched {len(hits)} samples"
    return hits[0] if hits else None
