"""The intent queue's writes: dedupe within and across batches, row ids, big batches."""

from __future__ import annotations

from pathlib import Path

import pytest

from scheduler.service import intents as intents_mod
from scheduler.service.intents import IntentQueue, Outcome
from scheduler.service.payload import Intent


def intent(key: str, action: str = "rebalance") -> Intent:
    return Intent(key, "am-" + key, "RiskScorerLatencyHigh", "p0-risk", action, True, "")


def test_a_key_is_new_once_within_and_across_batches(tmp_path: Path) -> None:
    q = IntentQueue(tmp_path / "q.db")
    first = q.record_many([([intent("a"), intent("b")], 1.0), ([intent("a"), intent("c")], 2.0)])
    assert [[i.key for _, i in new] for new in first] == [["a", "b"], ["c"]]
    ids = [row_id for new in first for row_id, _ in new]
    assert ids == sorted(ids) and len(set(ids)) == 3
    again = q.record_many([([intent("b"), intent("d", action="")], 3.0)])
    assert [[i.key for _, i in new] for new in again] == [["d"]]
    assert q.states() == {"pending": 3, "ignored": 1}
    pending, last = q.pending_snapshot()
    assert [p.key for p in pending] == ["a", "b", "c"] and last == again[0][0][0]
    q.finish_many([([Outcome(ids[0], "done", "d1")], 4.0)])
    assert q.states() == {"pending": 2, "done": 1, "ignored": 1}
    q.close()


def test_a_batch_over_the_statement_limit_commits_as_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(intents_mod, "_MAX_ROWS", 3)
    q = IntentQueue(tmp_path / "q.db")
    batches = [([intent(f"k{i}"), intent(f"k{i + 1}")], float(i)) for i in range(0, 8, 2)]
    batches.append(([intent("k0")], 9.0))
    new = q.record_many(batches)
    assert [len(n) for n in new] == [2, 2, 2, 2, 0]
    assert q.pending() == 8
    q.close()
