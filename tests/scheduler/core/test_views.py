"""The core's read views are typed, frozen values; the dict forms are built from them."""

from __future__ import annotations

import dataclasses

import pytest
from core_testkit import T0, World, bank

from scheduler.core import (
    JobKind,
    JobRequest,
    PoolView,
    ReservationSpec,
    ReservationView,
)


def test_pool_view_is_a_frozen_value(world: World) -> None:
    core = world.make()
    core.submit(JobRequest("b1", "p2", 4, JobKind.BATCH))
    core.submit(JobRequest("b2", "p2", 2, JobKind.BATCH))  # borrows idle P1 GPUs
    view = core.pool_view("p2")
    assert isinstance(view, PoolView)
    assert (view.owned, view.borrowed, view.lent, view.idle) == (4, 2, 0, 0)
    assert view.serving_gpus == 6 and view.waiting == 0
    assert core.pool_view("p1").lent == 2
    assert list(view.to_dict()) == [f.name for f in dataclasses.fields(PoolView)]
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.idle = 3  # type: ignore[misc]


def test_reservation_views_are_frozen_values(world: World) -> None:
    spec = ReservationSpec("open", "p0", 4, "UTC", tuple(range(7)), ((0, 23 * 60 + 59),), 0.0)
    core = world.make(bank((spec,)))
    core.tick()
    (view,) = core.reservation_views()
    assert isinstance(view, ReservationView)
    assert view.active and view.open and view.pool == "p0"
    assert view.next_start is not None and view.next_start <= T0
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.open = False  # type: ignore[misc]
