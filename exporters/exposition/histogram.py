"""A histogram's counts as a collector accumulates them between scrapes.

Not locked: the owner (the scheduler's accumulator, the GPU exporter's health
state) already holds a lock around its updates and its reads.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from itertools import accumulate


class Buckets:
    """Per-bucket counts (the last one is +Inf) and a sum; ``cumulative`` is what is exposed."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bucket (le is "<=").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def cumulative(self) -> tuple[int, ...]:
        return cumulative(self.counts)


def cumulative(counts: Sequence[int]) -> tuple[int, ...]:
    """Per-bucket counts -> the cumulative counts of ``le`` buckets (the last is the total)."""
    return tuple(accumulate(counts))
