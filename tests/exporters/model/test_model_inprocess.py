"""The in-process store's lock-free request path: exact under threads, bounded, folded per scrape.

A request begins with a lock-free count and, when it ends well, appends its
duration to a journal that a fold moves into the values. These tests hold the
store to what the lock-based store promised: every request counted once, the
in-flight gauge back to zero, the journal never larger than ``FOLD_AT``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from deploy.stack import Stack
from exporters.catalog.model import MODEL_IN_FLIGHT, MODEL_REQUEST_DURATION, MODEL_REQUESTS
from exporters.instrument import ErrorReason, ModelInstruments, Outcome
from exporters.instrument.inprocess import FOLD_AT, InProcessRecorder

RISK = {"model": "risk-scorer", "version": "v3", "pool": "p0-risk"}


@pytest.fixture
def reg() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def rec(stack: Stack, reg: CollectorRegistry) -> Iterator[InProcessRecorder]:
    r = ModelInstruments(stack, reg).recorder("risk-scorer")
    assert isinstance(r, InProcessRecorder)
    yield r


def value(reg: CollectorRegistry, name: str, **labels: str) -> float:
    v = reg.get_sample_value(name, {**RISK, **labels})
    assert v is not None, (name, labels)
    return v


def test_requests_in_the_journal_are_counted_at_the_next_scrape(
    rec: InProcessRecorder, reg: CollectorRegistry
) -> None:
    for _ in range(5):
        rec.begin()
    assert value(reg, MODEL_IN_FLIGHT.series) == 5
    for _ in range(3):
        rec.finish_ok(0.004)
    # Reading the in-flight count (which costs a tick of its counter) does not change it.
    assert [value(reg, MODEL_IN_FLIGHT.series) for _ in range(3)] == [2, 2, 2]
    assert value(reg, MODEL_REQUESTS.series, outcome="ok") == 3
    assert value(reg, MODEL_REQUEST_DURATION.count) == 3
    assert value(reg, MODEL_REQUEST_DURATION.sum) == pytest.approx(0.012)


def test_the_journal_is_folded_before_it_outgrows_its_bound(rec: InProcessRecorder) -> None:
    for i in range(3 * FOLD_AT + 7):
        rec.begin()
        rec.finish_ok(0.001)
        assert len(rec._journal) < FOLD_AT, i


def test_threads_count_every_request_once(rec: InProcessRecorder, reg: CollectorRegistry) -> None:
    """Eight threads record while a ninth scrapes: nothing lost, nothing counted twice."""
    threads, per_thread = 8, 3000
    go = threading.Event()

    def serve() -> None:
        go.wait()
        for i in range(per_thread):
            rec.begin()
            if i % 10 == 0:
                rec.in_flight.dec()
                rec.observe(0.02, Outcome.ERROR, ErrorReason.TIMEOUT)
            else:
                rec.finish_ok(0.003)

    stop = threading.Event()
    scrapes = []

    def scrape() -> None:
        go.wait()
        while not stop.is_set():
            scrapes.append(value(reg, MODEL_REQUESTS.series, outcome="ok"))

    workers = [threading.Thread(target=serve) for _ in range(threads)]
    scraper = threading.Thread(target=scrape)
    for t in [*workers, scraper]:
        t.start()
    go.set()
    for t in workers:
        t.join(60)
    stop.set()
    scraper.join(60)
    errors = threads * per_thread // 10
    assert value(reg, MODEL_REQUESTS.series, outcome="ok") == threads * per_thread - errors
    assert value(reg, MODEL_REQUESTS.series, outcome="error") == errors
    assert value(reg, MODEL_REQUEST_DURATION.count) == threads * per_thread
    assert value(reg, MODEL_IN_FLIGHT.series) == 0
    assert scrapes == sorted(scrapes)  # a counter never goes back, even mid-fold
