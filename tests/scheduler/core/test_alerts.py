"""Alert actions and deliveries, as the core receives them."""

from __future__ import annotations

import pytest

from deploy.stack import ACTIONS
from scheduler.core import InvalidRequest
from scheduler.core.alerts import SEEN_ALERTS_KEPT, AlertAction, Deliveries


def test_the_core_acts_on_exactly_the_actions_the_stack_accepts() -> None:
    # deploy.stack lies below the scheduler and cannot import the enum: keep both in step.
    assert {a.value for a in AlertAction} == set(ACTIONS)


def test_an_unknown_action_is_a_bad_request() -> None:
    assert AlertAction.parse("scale") is AlertAction.SCALE
    with pytest.raises(InvalidRequest, match="unknown action 'drain'"):
        AlertAction.parse("drain")


def test_a_delivery_is_decided_once_and_forgotten_after_the_newest_thousand() -> None:
    seen = Deliveries()
    assert seen.first("g1", AlertAction.REBALANCE, "p0", True)
    assert not seen.first("g1", AlertAction.REBALANCE, "p0", True)  # Alertmanager's retry
    assert seen.first("g1", AlertAction.REBALANCE, "p0", False)  # the resolve is news
    assert seen.first("", AlertAction.REBALANCE, "p0", True)  # no id: never a duplicate
    assert seen.first("", AlertAction.REBALANCE, "p0", True)
    for i in range(SEEN_ALERTS_KEPT):
        seen.first(f"n{i}", AlertAction.SCALE, "p2", True)
    assert seen.first("g1", AlertAction.REBALANCE, "p0", True)  # long forgotten
