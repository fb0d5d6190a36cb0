"""Which GPUs a job gets: the one place that chooses GPUs for a claim, pod by pod, on nodes.

A job is pods (``Job.pods``, largest first); each pod gets all its GPUs on one node,
as Kubernetes runs it. ``fit`` chooses, for a pool, GPUs that hold every pod or
nothing:

- a job's pods go on as few nodes as possible: all on the node that holds them with
  the fewest GPUs to spare, else the node that can take the most GPUs first;
- bin-packing: of the nodes a pod fits on, the one with the fewest usable GPUs
  (the fullest), so that whole nodes stay free for big jobs and for scale-down;
- on a node, GPUs already claimed for the job first (held for it), then the pool's
  own idle GPUs, then (unless ``own_only``) borrowed idle GPUs, lowest-priority
  lender first, within the pool's borrowing limit and each lender's lending limit
  (the stack's, or for a job that may run on a lending window's loans, for the
  lenders it may take them from, ``loans``, the limit in force);
- a preemption plan adds its victims' GPUs (``extra``, with what claiming each
  costs against the limits), and prefers holes that take the fewest of them.

The common case, a pool's own idle GPUs, looks at node counts only
(``pods.NodeIdle``), not at every node. With the policy's ``node_aware`` off, the
pool's GPUs are one bag (a pod may span nodes): the baseline the simulator compares.
``seed_room`` checks a batch of seeds the same way before any is placed.

Owns: nothing (a pure choice over the cluster's records).
May call: ``cluster``, ``pods``.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from itertools import islice

from scheduler.core.cluster import Cluster, Gpu, Pool
from scheduler.core.pods import NodeIdle, fits_on

# What claiming a GPU costs against the limits.
FREE = 0  # the pool's own, or already claimed for the job
BORROW = 1  # a foreign GPU already lent (its borrower is preempted): the borrowing limit
LEND = 2  # a foreign GPU not yet lent: the borrowing limit and its home's lending limit

Candidate = tuple[Gpu, int]  # a GPU and its cost
BAG = ""  # the one "node" of a pool blind to nodes


class Scratch:
    """Claims counted but not made (a batch of seeds checked before any is placed).

    Each pool's idle GPUs by node are copied the first time a seed of it is fitted
    (``idle_of``), so that own-pool seeds fit by node counts, as on the live cluster.
    """

    __slots__ = ("borrowed", "idle", "lent", "taken")

    def __init__(self) -> None:
        self.taken: set[str] = set()
        self.borrowed: dict[str, int] = {}
        self.lent: dict[str, int] = {}
        self.idle: dict[str, tuple[NodeIdle, list[int]]] = {}  # pool -> (copy, [idle GPUs])

    def idle_of(self, pool: Pool) -> tuple[NodeIdle, list[int]]:
        got = self.idle.get(pool.name)
        if got is None:
            copy = NodeIdle()
            n = 0
            for node, uuids in pool.idle.on.items():
                for u in uuids:
                    if u not in self.taken:
                        copy.add(node, u)
                        n += 1
            got = self.idle[pool.name] = (copy, [n])
        return got

    def take(self, pool: Pool, gpus: Iterable[Gpu]) -> None:
        for g in gpus:
            self.taken.add(g.uuid)
            copy = self.idle.get(g.home)
            if copy is not None and g.uuid in copy[0].on.get(g.node, ()):
                copy[0].remove(g.node, g.uuid)
                copy[1][0] -= 1
            if g.home != pool.name:
                self.borrowed[pool.name] = self.borrowed.get(pool.name, 0) + 1
                self.lent[g.home] = self.lent.get(g.home, 0) + 1


def fit(
    cluster: Cluster,
    pool: Pool,
    pods: Sequence[int],
    *,
    own_only: bool,
    loans: Collection[Pool] = (),
    ready: Sequence[Gpu] = (),
    extra: Mapping[str, Sequence[Candidate]] | None = None,
    scratch: Scratch | None = None,
    counted: bool = False,
) -> list[Gpu] | None:
    """GPUs for every pod of ``pods`` (listed pod by pod, in order), or None if they do not fit.

    ``ready``: GPUs already claimed for the job. ``extra``: more GPUs by node, with
    their cost (a plan's victims'). ``counted``: the caller checked that enough GPUs
    are idle in all. Read-only.
    """
    if not pods:
        return []
    # Fewer GPUs to be had than the pods need, wherever they are: the common miss.
    if (
        not counted
        and not extra
        and scratch is None
        and sum(pods) > len(ready) + idle_total(cluster, pool, own_only=own_only, loans=loans)
    ):
        return None
    aware = cluster.policy.node_aware
    if aware and not ready and not extra:
        if scratch is None:
            got = _own_fast(cluster, pool, pods, pool.idle, len(pool.free))
        else:
            idle, count = scratch.idle_of(pool)
            got = _own_fast(cluster, pool, pods, idle, count[0])
        if got is not None or own_only:
            return got
        if scratch is None and len(pods) == 1 and pods[0] == 1:
            # One GPU, borrowed: the fullest lender node, lowest-priority lender first.
            return _one_borrowed(cluster, pool, loans)
    elif not aware and not extra and scratch is None:
        return _bag(cluster, pool, sum(pods), own_only=own_only, loans=loans, ready=ready)
    return _general(cluster, pool, pods, own_only, loans, ready, extra or {}, scratch)


def idle_total(
    cluster: Cluster, pool: Pool, *, own_only: bool, loans: Collection[Pool] = ()
) -> int:
    """How many idle GPUs ``pool`` may claim now, wherever they are."""
    n = len(pool.free)
    room = pool.spec.borrowing_limit - pool.borrowed
    if own_only or room <= 0:
        return n
    lendable = 0
    for p in cluster.by_priority:
        if p is not pool and p.free:
            limit = p.lending_limit if p in loans else p.spec.lending_limit
            lendable += max(0, min(len(p.free), limit - p.lent))
    return n + max(0, min(room, lendable))


def ever_fits(cluster: Cluster, pool: Pool, pods: Sequence[int], *, own_only: bool) -> bool:
    """Whether ``pods`` fit ``pool`` on an empty cluster, within the limits (the most each
    lender ever lends; ``own_only``: on its own GPUs): a job that never could is refused,
    not queued for ever."""
    # On the pool's own nodes alone, by their sizes (cheap): most jobs fit there.
    sizes = [len(uuids) for uuids in pool.nodes.values()]
    if len(set(pods)) == 1:
        if sum(n // pods[0] for n in sizes) >= len(pods):
            return True
    elif len(pods) <= 32 and fits_on(tuple(pods), {str(i): n for i, n in enumerate(sizes)}):
        return True
    got = _general(cluster, pool, pods, own_only, (), (), {}, None, everything=True)
    return got is not None


def seed_room(cluster: Cluster, demands: Sequence[tuple[Pool, Sequence[int]]]) -> int | None:
    """The first demand (pool, pods) idle GPUs cannot meet when all are met in order, as
    ``fit`` would meet them; None if all are met."""
    scratch = Scratch()
    for i, (pool, pods) in enumerate(demands):
        got = fit(cluster, pool, pods, own_only=False, scratch=scratch)
        if got is None:
            return i
        scratch.take(pool, got)
    return None


def _own_fast(
    cluster: Cluster, pool: Pool, pods: Sequence[int], idle: NodeIdle, count: int
) -> list[Gpu] | None:
    """The pods on the pool's own idle GPUs (``idle``, ``count`` of them), by node counts
    alone; None if they do not fit."""
    if sum(pods) > count:
        return None
    largest = cluster.largest_node
    gpus = cluster.gpus
    out: list[Gpu] = []
    left = list(pods)
    used: set[str] = set()
    while left:
        node = _best_fit(idle, sum(left), largest, used)
        if node is not None:
            on = idle.on[node]
            out.extend(gpus[u] for u in islice(on, sum(left)))
            return out
        placed = False
        for node in idle.fullest_first(largest):
            if node in used:
                continue
            room = idle.count(node)
            took = _pack(left, room)
            if not took:
                return None  # the fullest node left holds no pod: nor does any other
            it = iter(idle.on[node])
            for p in took:
                out.extend(gpus[u] for u in islice(it, p))
            used.add(node)
            placed = True
            break
        if not placed:
            return None
    return out


def _one_borrowed(cluster: Cluster, pool: Pool, loans: Collection[Pool]) -> list[Gpu] | None:
    """One idle GPU of another pool, within the limits (the pool has none of its own)."""
    if pool.spec.borrowing_limit - pool.borrowed < 1:
        return None
    for lender in cluster.by_priority:
        if lender is pool or not lender.free:
            continue
        limit = lender.lending_limit if lender in loans else lender.spec.lending_limit
        if limit - lender.lent < 1:
            continue
        node = lender.idle.best_fit(1, cluster.largest_node)
        if node is not None:
            return [cluster.gpus[next(iter(lender.idle.on[node]))]]
    return None


def _best_fit(idle: NodeIdle, need: int, largest: int, used: set[str]) -> str | None:
    """The fullest node not ``used`` with ``need`` idle GPUs or more."""
    if not used:
        return idle.best_fit(need, largest)
    for n in range(need, largest + 1):
        for node in idle.by_count.get(n, ()):
            if node not in used:
                return node
    return None


def _pack(left: list[int], room: int) -> list[int]:
    """Pods of ``left`` (largest first) that fit in ``room`` GPUs, first fit; removed from ``left``."""
    took = []
    for p in list(left):
        if p <= room:
            took.append(p)
            room -= p
            left.remove(p)
    return took


def _bag(
    cluster: Cluster,
    pool: Pool,
    want: int,
    *,
    own_only: bool,
    loans: Collection[Pool],
    ready: Sequence[Gpu],
) -> list[Gpu] | None:
    """Blind to nodes: any ``want`` GPUs, the ready ones, then own, then borrowed."""
    out = list(ready[:want])
    more = idle_gpus(cluster, pool, want - len(out), own_only=own_only, loans=loans)
    return out + more if len(out) + len(more) >= want else None


def idle_gpus(
    cluster: Cluster, pool: Pool, want: int, *, own_only: bool, loans: Collection[Pool] = ()
) -> list[Gpu]:
    """Up to ``want`` idle GPUs ``pool`` may claim now, blind to nodes: its own, then borrowed."""
    gpus = cluster.gpus
    out = [gpus[u] for u in islice(pool.free, want)]
    if len(out) >= want or own_only:
        return out
    borrow_room = pool.spec.borrowing_limit - pool.borrowed
    for lender in cluster.by_priority:
        if borrow_room <= 0 or len(out) >= want:
            break
        if lender is pool or not lender.free:
            continue
        limit = lender.lending_limit if lender in loans else lender.spec.lending_limit
        room = min(limit - lender.lent, borrow_room, want - len(out))
        if room <= 0:
            continue
        got = [gpus[u] for u in islice(lender.free, room)]
        out.extend(got)
        borrow_room -= len(got)
    return out


class _Tally:
    """How many candidates a node has: of cost FREE, and costly by lender ("" for BORROW)."""

    __slots__ = ("costly", "free")

    def __init__(self) -> None:
        self.free = 0
        self.costly: dict[str, int] = {}

    def add(self, g: Gpu, cost: int) -> None:
        if cost == FREE:
            self.free += 1
        else:
            key = "" if cost == BORROW else g.home
            self.costly[key] = self.costly.get(key, 0) + 1

    def usable(self, borrow_room: int, lend_room: Mapping[str, int]) -> int:
        costly = 0
        for key, n in self.costly.items():
            costly += n if key == "" else min(n, max(0, lend_room.get(key, 0)))
        return self.free + min(max(0, borrow_room), costly)


class _Node:
    """One node's candidates for a job, cheapest first; tallied in all and idle only."""

    __slots__ = ("all", "cands", "idle")

    def __init__(self) -> None:
        self.cands: list[tuple[int, bool, int, Gpu, int]] = []  # (sort key..., GPU, cost)
        self.all = _Tally()
        self.idle = _Tally()  # not a victim's: a hole of these preempts nobody


def _general(
    cluster: Cluster,
    pool: Pool,
    pods: Sequence[int],
    own_only: bool,
    loans: Collection[Pool],
    ready: Sequence[Gpu],
    extra: Mapping[str, Sequence[Candidate]],
    scratch: Scratch | None,
    *,
    everything: bool = False,
) -> list[Gpu] | None:
    aware = cluster.policy.node_aware
    taken = scratch.taken if scratch is not None else set()
    sb = scratch.borrowed if scratch is not None else {}
    sl = scratch.lent if scratch is not None else {}
    borrow_room = pool.spec.borrowing_limit - pool.borrowed - sb.get(pool.name, 0)
    if own_only:
        borrow_room = 0
    lend_room: dict[str, int] = {}
    rank = {p.name: i for i, p in enumerate(cluster.by_priority)}
    nodes: dict[str, _Node] = {}

    def add(g: Gpu, cost: int, victim: int) -> None:
        key = g.node if aware else BAG
        node = nodes.get(key)
        if node is None:
            node = nodes[key] = _Node()
        # Idle before a victim's (earlier victims in victim order first), free before
        # costly, lowest-priority lender first.
        node.cands.append((victim, cost != FREE, rank.get(g.home, 0) if cost else 0, g, cost))
        node.all.add(g, cost)
        if not victim:
            node.idle.add(g, cost)

    if everything:
        borrow_room = 0 if own_only else pool.spec.borrowing_limit
        for lender in cluster.by_priority:
            lend_room[lender.name] = lender.most_lent
        for g in cluster.gpus.values():
            if g.home == pool.name or not own_only:
                add(g, FREE if g.home == pool.name else LEND, 0)
    for g in ready:
        add(g, FREE, 0)
    for u in () if everything else pool.free:
        if u not in taken:
            add(cluster.gpus[u], FREE, 0)
    if borrow_room > 0 and not everything:
        for lender in cluster.by_priority:
            if lender is pool or not lender.free:
                continue
            limit = lender.lending_limit if lender in loans else lender.spec.lending_limit
            room = lend_room[lender.name] = limit - lender.lent - sl.get(lender.name, 0)
            if room <= 0:
                continue
            for u in lender.free:
                if u not in taken:
                    add(cluster.gpus[u], LEND, 0)
    for i, cands in enumerate(extra.values(), start=1):
        for g, cost in cands:
            if cost != FREE and borrow_room <= 0:
                continue
            if cost == LEND and g.home not in lend_room:
                home = cluster.pools[g.home]
                lend_room[g.home] = home.spec.lending_limit - home.lent
            add(g, cost, i)
    for node in nodes.values():
        node.cands.sort(key=lambda c: c[:3])

    by_pod: dict[int, list[list[Gpu]]] = {}
    left = sorted(pods, reverse=True)

    def measure() -> tuple[dict[str, int], list[str]]:
        """Each node's usable GPUs, and the nodes by them, most first (ties: name, last first)."""
        sizes = {name: n.all.usable(borrow_room, lend_room) for name, n in nodes.items()}
        return sizes, sorted(sizes, key=lambda n: (sizes[n], n), reverse=True)

    sizes, order = measure()
    # No placement can exist: too few GPUs, or too few nodes with room for a pod.
    smallest = left[-1]
    if sum(sizes.values()) < sum(left) or sum(u // smallest for u in sizes.values()) < len(left):
        return None
    at = 0  # ``order`` before it is used up
    while left:
        if not sizes:
            return None
        total = sum(left)
        while order[at] not in sizes:
            at += 1
        if sizes[order[at]] >= total:
            # The hole that takes the fewest victims' GPUs, then borrows the fewest,
            # then the fullest node.
            name = min(
                (n for n, u in sizes.items() if u >= total),
                key=lambda n: (
                    max(0, total - nodes[n].idle.usable(borrow_room, lend_room)),
                    max(0, total - nodes[n].all.free),
                    sizes[n],
                    n,
                ),
            )
            took = list(left)
            left.clear()
        else:
            # As few nodes as possible: the node that takes the most first.
            name = order[at]
            took = _pack(left, sizes[name])
            if not took:
                return None
        node = nodes.pop(name)
        del sizes[name]
        borrowed_here = 0
        for p in took:
            pod, borrowed = _take(node, p, lend_room, borrow_room)
            borrow_room -= borrowed
            borrowed_here += borrowed
            by_pod.setdefault(p, []).append(pod)
        if borrowed_here and left:
            sizes, order = measure()  # the limits moved: every node's room may have
            at = 0
    out: list[Gpu] = []
    for p in pods:
        out.extend(by_pod[p].pop(0))
    return out


def _take(
    node: _Node, p: int, lend_room: dict[str, int], borrow_room: int
) -> tuple[list[Gpu], int]:
    """``p`` GPUs of ``node``, cheapest first, within the limits; the node keeps the rest."""
    out: list[Gpu] = []
    rest = []
    borrowed = 0
    for c in node.cands:
        g, cost = c[3], c[4]
        if len(out) < p and (
            cost == FREE
            or (borrowed < borrow_room and (cost == BORROW or lend_room.get(g.home, 0) > 0))
        ):
            if cost == LEND:
                lend_room[g.home] -= 1
            if cost != FREE:
                borrowed += 1
            out.append(g)
        else:
            rest.append(c)
    node.cands = rest
    assert len(out) == p, "the node's tally said the pod fits"
    return out, borrowed
