"""The intent queue's writes: dedupe within and across batches, row ids, big batches."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from scheduler.service import intents as intents_mod
from scheduler.service.intents import LATE_FIRING, IntentQueue, Outcome
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


def _state(pair: str, firing: bool, sender: str) -> Intent:
    """One alert state as a sender delivers it: the key is the state's, the pair the alert's."""
    key = f"{pair}-{'firing' if firing else 'resolved'}"
    return Intent(key, "am-" + key, "RiskScorerLatencyHigh", "p0-risk", "rebalance", firing,
                  "", pair)  # fmt: skip


ORDERS = sorted(set(itertools.permutations("FFRR"))) + sorted(set(itertools.permutations("FFFR")))


def _expected(order: tuple[str, ...]) -> list[bool]:
    """What may be acted on: the firing only if it came before any resolved, then the resolved."""
    return ([True] if order[0] == "F" else []) + ([False] if "R" in order else [])


@pytest.mark.parametrize("order", ORDERS, ids="".join)
@pytest.mark.parametrize("batching", ["one notification each", "one commit"])
def test_a_firing_after_its_resolved_is_recorded_and_ignored(
    tmp_path: Path, order: tuple[str, ...], batching: str
) -> None:
    """Two senders (HA peers, retries) deliver the same alert's states in any order."""
    q = IntentQueue(tmp_path / "q.db")
    states = [_state("a1", s == "F", "AB"[i % 2]) for i, s in enumerate(order)]
    if batching == "one commit":
        results = q.record_many([([s], float(i)) for i, s in enumerate(states)])
    else:
        results = [q.record([s], float(i)) for i, s in enumerate(states)]
    new = [i for r in results for _, i in r]
    acted = [i.firing for i in new if i.action]
    assert acted == _expected(order)
    ignored = [i for i in new if not i.action]
    assert all(i.firing and i.reason == LATE_FIRING for i in ignored)
    assert len(new) == len(set(order))  # every state recorded once, duplicates not at all
    pending, _ = q.pending_snapshot()
    assert [p.firing for p in pending] == acted  # what the worker will act on, in order
    q.close()


def test_other_alerts_are_not_affected_by_a_resolved_one(tmp_path: Path) -> None:
    q = IntentQueue(tmp_path / "q.db")
    q.record([_state("a1", False, "A")], 0.0)
    new = q.record([_state("a2", True, "A"), _state("a1", True, "B")], 1.0)
    assert [(i.pair, bool(i.action)) for _, i in new] == [("a2", True), ("a1", False)]
    q.close()


def test_the_model_and_rate_an_alert_carried_survive_a_restart(tmp_path: Path) -> None:
    import dataclasses

    q = IntentQueue(tmp_path / "q.db")
    sized = dataclasses.replace(intent("r"), model="risk-scorer", rate_rps=350.5)
    q.record_many([([sized, intent("s")], 1.0)])
    q.close()
    again = IntentQueue(tmp_path / "q.db")  # the worker's startup read after a crash
    pending = {p.key: p for p in again.fetch_pending()}
    assert (pending["r"].model, pending["r"].rate_rps) == ("risk-scorer", 350.5)
    assert (pending["s"].model, pending["s"].rate_rps) == ("", None)
    again.close()
