"""Pods and nodes: a job's pod shape, and each pool's idle GPUs by node.

A job asks for ``pods x gpus_per_pod``; on Kubernetes a pod's GPUs are always on
one node. ``shape`` turns a request into its pods' sizes, largest first: pods of
``gpus_per_pod`` when the request names it; otherwise one pod up to the size of
the largest node, split into node-sized pods (and the remainder) above that, as
a trace without a ``gpus_per_pod`` column asks.

``NodeIdle`` is one pool's idle home GPUs, by node and by how many each node has,
so that placement finds the fullest node a pod still fits on (best fit) by
looking at the counts from the pod's size up, not at every node. The cluster
keeps one per pool in step with ``Pool.free``.

Owns: nothing of the core's state (values and a small index the cluster owns).
May call: nothing in the core.
"""

from __future__ import annotations

from collections.abc import Iterator


def shape(gpus: int, gpus_per_pod: int | None, node_size: int) -> tuple[int, ...]:
    """The sizes of a job's pods, largest first (they add up to ``gpus``)."""
    per = gpus_per_pod if gpus_per_pod is not None else max(1, min(gpus, node_size))
    whole, rest = divmod(gpus, per)
    return (per,) * whole + ((rest,) if rest else ())


def covers(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Whether pods ``a`` need at least what pods ``b`` need: if ``b`` fits nowhere, nor does ``a``.

    Both largest first: ``a`` has as many pods, each at least as large as ``b``'s at
    its place (a placement of ``a`` would give every pod of ``b`` a node).
    """
    if len(b) == 1:  # the common case, hot in a pass over a queue
        return a[0] >= b[0]
    return len(a) >= len(b) and all(x >= y for x, y in zip(a, b, strict=False))


def fits_on(pods: tuple[int, ...], capacity: dict[str, int]) -> dict[str, list[int]] | None:
    """Which node each pod goes on (largest pod first, onto the node with most room) in
    ``capacity`` (node -> GPUs); None: no fit. A cheap check on node sizes alone
    (whether a shape could ever fit a pool's own nodes), not a placement.
    """
    left = dict(capacity)
    out: dict[str, list[int]] = {}
    for p in sorted(pods, reverse=True):
        node = max(
            (n for n, c in left.items() if c >= p), key=lambda n: (-left[n], n), default=None
        )
        if node is None:
            return None
        left[node] -= p
        out.setdefault(node, []).append(p)
    return out


class NodeIdle:
    """A pool's idle GPUs by node, and its nodes by how many idle GPUs each has."""

    __slots__ = ("by_count", "on")

    def __init__(self) -> None:
        self.on: dict[str, dict[str, None]] = {}  # node -> idle GPU uuids, in order
        self.by_count: dict[int, dict[str, None]] = {}  # n -> nodes with exactly n idle

    def add(self, node: str, uuid: str) -> None:
        gpus = self.on.setdefault(node, {})
        if uuid in gpus:
            return
        self._move(node, len(gpus), len(gpus) + 1)
        gpus[uuid] = None

    def remove(self, node: str, uuid: str) -> None:
        gpus = self.on.get(node)
        if gpus is None or uuid not in gpus:
            return
        del gpus[uuid]
        self._move(node, len(gpus) + 1, len(gpus))
        if not gpus:
            del self.on[node]

    def count(self, node: str) -> int:
        return len(self.on.get(node, ()))

    def best_fit(self, need: int, largest: int) -> str | None:
        """The node with the fewest idle GPUs that are still ``need`` or more (None: none).

        ``largest``: no node has more idle GPUs than this (the largest node's size).
        """
        for n in range(need, largest + 1):
            nodes = self.by_count.get(n)
            if nodes:
                return next(iter(nodes))
        return None

    def fullest_first(self, largest: int) -> Iterator[str]:
        """Nodes with idle GPUs, most idle first."""
        for n in range(largest, 0, -1):
            yield from list(self.by_count.get(n, ()))

    def _move(self, node: str, old: int, new: int) -> None:
        if old:
            nodes = self.by_count[old]
            del nodes[node]
            if not nodes:
                del self.by_count[old]
        if new:
            self.by_count.setdefault(new, {})[node] = None
