"""The one victim-ordering function, on its own."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.core.ordering import (
    Candidate,
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
) -> Candidate:
    return Candidate(job, borrower, prio, lost, gpus, started)


def ids(cands: list[Candidate], need: int = 1) -> list[str]:
    return [x.job_id for x in order_victims(cands, need)]


def test_borrowers_go_before_owners_even_of_lower_priority() -> None:
    assert ids([c("owner-p2", prio=100), c("borrower-p1", borrower=True, prio=500)]) == [
        "borrower-p1",
        "owner-p2",
    ]


def test_lower_priority_first() -> None:
    assert ids([c("p1", prio=500), c("p2", prio=100)]) == ["p2", "p1"]


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
    # Priority beats work lost; work lost beats recency.
    assert ids([c("p2-expensive", prio=100, lost=9999), c("p1-free", prio=500, lost=0)]) == [
        "p2-expensive",
        "p1-free",
    ]
    assert ids([c("new-costly", lost=50, started=9), c("old-cheap", lost=5, started=1)]) == [
        "old-cheap",
        "new-costly",
    ]


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
