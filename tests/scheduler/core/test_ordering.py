"""The one victim-ordering function, on its own."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.core.ordering import (
    Candidate,
    boosted,
    effective_priority,
    order_victims,
    victim_key,
    work_lost,
)


def c(
    job: str,
    *,
    borrower: bool = False,
    prio: int = 100,
    lost: float = 0.0,
    gpus: int = 1,
    started: float = 0.0,
    class_first: bool = False,
) -> Candidate:
    return Candidate(job, borrower, prio, lost, gpus, started, prio if class_first else 0.0)


def ids(cands: list[Candidate], need: int = 1) -> list[str]:
    return [x.job_id for x in order_victims(cands, need)]


def test_borrowers_go_before_owners_even_of_lower_priority() -> None:
    assert ids([c("owner-p2", prio=100), c("borrower-p1", borrower=True, prio=500)]) == [
        "borrower-p1",
        "owner-p2",
    ]


def test_lower_priority_first_among_equal_cost() -> None:
    assert ids([c("p1", prio=500), c("p2", prio=100)]) == ["p2", "p1"]
    assert ids([c("p1", prio=500, lost=10), c("p2", prio=100, lost=10)]) == ["p2", "p1"]


def test_least_work_lost_since_checkpoint_first() -> None:
    assert ids([c("lose-much", lost=5000), c("lose-little", lost=10)]) == [
        "lose-little",
        "lose-much",
    ]


def test_fewest_victims_prefers_a_job_that_covers_the_need() -> None:
    small, big = c("small", gpus=1), c("big", gpus=4)
    assert ids([small, big], need=4) == ["big", "small"]
    # Beyond the need, size no longer matters: the next key decides.
    assert ids([c("a8", gpus=8, started=1), c("b4", gpus=4, started=2)], need=4) == ["b4", "a8"]


def test_most_recently_started_first_then_id() -> None:
    assert ids([c("old", started=100), c("new", started=200)]) == ["new", "old"]
    assert ids([c("b"), c("a")]) == ["a", "b"]


def test_keys_apply_in_order() -> None:
    # Work lost beats class (cost before class, the default); work lost beats recency.
    assert ids([c("p2-expensive", prio=100, lost=9999), c("p1-cheap", prio=500, lost=1)]) == [
        "p1-cheap",
        "p2-expensive",
    ]
    assert ids([c("new-costly", lost=50, started=9), c("old-cheap", lost=5, started=1)]) == [
        "old-cheap",
        "new-costly",
    ]
    # Borrowers still go first, however much they would lose.
    assert ids([c("owner", lost=1), c("borrower", borrower=True, lost=9999)]) == [
        "borrower",
        "owner",
    ]


def test_class_before_cost_when_the_tier_is_the_priority() -> None:
    """``cost_before_class: false``: lower classes first, work lost within a class."""
    cands = [
        c("p2-expensive", prio=100, lost=9999, class_first=True),
        c("p1-cheap", prio=500, lost=1, class_first=True),
        c("p2-cheap", prio=100, lost=5, class_first=True),
    ]
    assert ids(cands) == ["p2-cheap", "p2-expensive", "p1-cheap"]


def test_each_preemption_boosts_the_priority() -> None:
    assert boosted(100, 0, 50.0) == 100
    assert boosted(100, 3, 50.0) == 250
    # Among equally cheap victims, the one preempted before goes last.
    fresh = c("fresh", prio=int(boosted(100, 0, 50.0)))
    again = c("again", prio=int(boosted(100, 2, 50.0)))
    assert ids([again, fresh]) == ["fresh", "again"]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.builds(
            Candidate,
            job_id=st.text("abcdef", min_size=1, max_size=4),
            borrower=st.booleans(),
            priority=st.sampled_from([100, 500]),
            work_lost=st.floats(0, 1e6),
            gpus=st.integers(1, 8),
            started_at=st.floats(0, 1e6),
            tier=st.sampled_from([0.0, 100.0, 500.0]),
        ),
        max_size=12,
        unique_by=lambda x: x.job_id,
    ),
    st.integers(1, 8),
)
def test_order_is_total_and_independent_of_input_order(cands: list[Candidate], need: int) -> None:
    forward = order_victims(cands, need)
    backward = order_victims(list(reversed(cands)), need)
    assert forward == backward
    keys = [victim_key(x, need) for x in forward]
    assert keys == sorted(keys)


def test_work_lost_counts_from_the_last_checkpoint_of_this_run() -> None:
    assert work_lost(gpus=4, stateless=False, started_at=100, last_checkpoint=None, now=200) == 400
    assert work_lost(gpus=4, stateless=False, started_at=100, last_checkpoint=180, now=200) == 80
    # A checkpoint from before this run started does not help.
    assert work_lost(gpus=4, stateless=False, started_at=100, last_checkpoint=50, now=200) == 400
    assert work_lost(gpus=4, stateless=True, started_at=100, last_checkpoint=None, now=200) == 0


def test_effective_priority_ages_and_is_capped() -> None:
    assert effective_priority(100, 0, 100, 400) == 100
    assert effective_priority(100, 3600, 100, 400) == 200
    assert effective_priority(100, 100 * 3600, 100, 400) == 500
