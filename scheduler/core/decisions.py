"""Decisions as they are taken: numbered, stamped and collected by the cycle of one public call.

A public call of the core reads the clock once and opens a ``Cycle``: the instant
the whole call happens at (``now``) and the decisions it takes, in order (``out``).
Every step of the call gets the cycle, so that two steps of one call never see two
different "nows", and a decision is stamped with the instant of the call that took it.

Owns: the decision numbering (``Numbering``: ids ``d-`` and ten digits, never reused,
carried across restarts by persistence).
May call: ``model`` (the values) only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scheduler.core.model import Action, Decision, Result


class Numbering:
    """The next decision's number, and each pool's priority class (stamped on its decisions)."""

    __slots__ = ("next", "priority_classes")

    def __init__(self, first: int, priority_classes: Mapping[str, str]) -> None:
        self.next = first
        self.priority_classes = dict(priority_classes)


class Cycle:
    """One public call: its instant and the decisions it takes."""

    __slots__ = ("_numbering", "dry_run", "now", "out")

    def __init__(self, now: float, numbering: Numbering, *, dry_run: bool) -> None:
        self.now = now
        self.dry_run = dry_run  # stamped on every decision: the policy's, as the call decides
        self.out: list[Decision] = []
        self._numbering = numbering

    @property
    def next_decision(self) -> int:
        """The number the next decision will get (names things it creates, e.g. a burst)."""
        return self._numbering.next

    def decide(self, action: Action, pool: str, result: Result, reason: str, **kw: Any) -> Decision:
        numbering = self._numbering
        d = Decision(
            id=f"d-{numbering.next:010d}",
            at=self.now,
            action=action,
            pool=pool,
            result=result,
            reason=reason,
            dry_run=self.dry_run,
            priority=numbering.priority_classes.get(pool, ""),
            **kw,
        )
        numbering.next += 1
        self.out.append(d)
        return d
