"""Cluster state: which GPUs of which node are free, indexed so that placing
and releasing a job costs bounded work instead of a scan of the cluster.

A pool is a run of nodes numbered 0..n-1 grouped by nested topology
levels: NVLink domain, leaf group, scalable unit, spine pod, and the whole
pool on top. The groups come from hardware/topology.py (``Topology``'s
``node_domain``, ``node_group``, ``node_su``, ``node_pod`` and
``pool_levels``), the one description of the cluster's structure
(``topology_levels``); each group is a contiguous range of node numbers.

The indexes:

* ``free[node]``: free GPUs of each node (0 for down and spare nodes);
* partly free nodes in sets by free count (``partial[f]``) with a bit mask
  of the non-empty ones, so the best-fitting node for a small job is a bit
  trick and a set pop away;
* wholly free nodes of every group of the lowest level (the *base* groups:
  NVLink domains of an NVL72 pool, leaf groups of a DGX pool) as a sorted
  list (a gang takes its lowest-numbered k as one slice), and the base
  groups in sets by that count with a bit mask: the base group that best
  fits a gang of k nodes (the fullest that still has k free) is O(1);
* the count of wholly free nodes of every group of each higher level, kept
  per base group touched; a gang larger than any base group's free room
  scans the groups of one level (a few hundred at most) for the best fit.

Allocating or releasing a job costs O(1) for a job within a node and
O(nodes of the job + base groups touched x levels) for a gang (list
inserts and slices within a base group are memory moves of a few dozen
entries). Sets of ints iterate and pop in an order that depends only on
the operations done, so runs are deterministic.
"""
from __future__ import annotations

from bisect import bisect_left, insort
from itertools import chain
from dataclasses import dataclass
from typing import Final, Optional, Sequence

UP: Final = 0
SPARE: Final = 1
DOWN: Final = 2

Nodes = tuple[int, ...]
"""The nodes a job holds, sorted."""
Allocation = tuple[Nodes, int, int]
"""What PoolState.allocate gives: (nodes, GPUs used per node, tiers spanned)."""


def _fill(free: list[int], nodes: Sequence[int], value: int) -> None:
    """free[node] = value for sorted nodes: one slice assignment when they
    are consecutive (a gang's nodes of one group usually are)."""
    k = len(nodes)
    a = nodes[0]
    if nodes[-1] + 1 - a == k:
        free[a:a + k] = [value] * k
    else:
        for node in nodes:
            free[node] = value


def _merge(w: list[int], nodes: Sequence[int]) -> None:
    """Put sorted nodes back into a group's sorted list of free nodes."""
    if not w or w[-1] < nodes[0]:
        w.extend(nodes)
    else:
        w.extend(nodes)
        w.sort()


def _packing(sizes: list[int], k: int) -> list[tuple[int, int]]:
    """How a gang of k nodes takes free nodes from groups whose free counts
    are `sizes` (fullest first, ties lowest-numbered first): all of the
    fullest while none holds what is left, then the emptiest that does
    (lowest-numbered of equals). [(index into sizes, nodes taken)]."""
    plan: list[tuple[int, int]] = []
    n = len(sizes)
    remaining = k
    i = 0
    while remaining:
        e = i
        while e < n and sizes[e] >= remaining:
            e += 1
        if e > i:
            m = e - 1
            c = sizes[m]
            while m > i and sizes[m - 1] == c:
                m -= 1
            plan.append((m, remaining))
            return plan
        plan.append((i, sizes[i]))
        remaining -= sizes[i]
        i += 1
    return plan


class IndexedSet:
    """A set of ints with O(1) add, remove, membership and pick (the last
    added), iterating in a deterministic order."""
    __slots__ = ("items", "pos")

    def __init__(self) -> None:
        self.items: list[int] = []
        self.pos: dict[int, int] = {}

    def add(self, x: int) -> None:
        self.pos[x] = len(self.items)
        self.items.append(x)

    def remove(self, x: int) -> None:
        i = self.pos.pop(x)
        last = self.items.pop()
        if last != x:
            self.items[i] = last
            self.pos[last] = i

    def __len__(self) -> int:
        return len(self.items)

    def __contains__(self, x: int) -> bool:
        return x in self.pos

    def last(self) -> int:
        return self.items[-1]


@dataclass(frozen=True)
class Level:
    """One topology level: groups of up to `nodes` nodes; a job inside one
    group spans `tier` switch tiers (0 = NVLink only, 1 = one leaf, 2 =
    spine, 3 = core). `groups`: the group number of each node of the pool
    (contiguous runs, from hardware.topology); None: node // nodes."""
    name: str
    nodes: int
    tier: int
    groups: Optional[tuple] = None


_TOPOLOGY_ARRAYS = {"nvlink_domain": ("node_domain", "first_domain"), "leaf_group": ("node_group", "first_group"),
                    "su": ("node_su", "first_su"), "pod": ("node_pod", "first_pod")}


def topology_levels(topo, pool: int = 0) -> list[Level]:
    """The nested node groups of pool `pool` of a hardware.topology.Topology,
    smallest first, with each node's group number (pool-local)."""
    from hardware.topology import pool_levels

    lay = topo.pools[pool]
    lo, hi = lay.first_node, lay.first_node + lay.nodes
    out = []
    for name, nodes, tier in pool_levels(topo, pool):
        groups = None
        if name in _TOPOLOGY_ARRAYS:
            arr, first = _TOPOLOGY_ARRAYS[name]
            groups = tuple((getattr(topo, arr)[lo:hi] - getattr(lay, first)).tolist())
        out.append(Level(name, nodes, tier, groups))
    return out


def levels_for(catalog, system: str, nodes: int, fabric: str | None = None, oversubscription=1.0) -> list[Level]:
    """Levels of one pool of `nodes` nodes of a catalog system, laid out by
    hardware.topology (for engines built without a scenario)."""
    from hardware.topology import PoolSpec, build_topology

    topo = build_topology([PoolSpec(system=system, nodes=nodes, fabric=fabric, oversubscription=oversubscription)],
                          catalog)
    return topology_levels(topo, 0)


def _nest(levels: list[Level], n: int) -> tuple[list[Level], list[list[int]]]:
    """Levels a pool of n nodes keeps (each strictly larger than the one
    below, the last the whole pool) and each kept level's node -> group
    list (all but the pool)."""
    out: list[Level] = []
    gofs: list[list[int]] = []
    size = 1
    top_tier = None
    for level in levels:
        if level.groups is not None and len(level.groups) >= n:
            groups = list(level.groups[:n])
            first = groups[0] if n else 0
            groups = [g - first for g in groups]
            counts: dict[int, int] = {}
            for g in groups:
                counts[g] = counts.get(g, 0) + 1
            s = max(counts.values(), default=1)
            whole = len(counts) <= 1
        else:
            s = max(level.nodes, size)
            s = -(-s // size) * size
            groups = None
            whole = s >= n
        if whole:
            top_tier = level.tier
            break
        if s <= size:
            continue
        if groups is None:
            groups = [i // s for i in range(n)]
        if out and out[-1].tier == level.tier:
            out.pop()        # same tier: the larger group is what counts
            gofs.pop()
        if gofs:
            below = gofs[-1]
            parent: dict[int, int] = {}
            for node in range(n):
                if parent.setdefault(below[node], groups[node]) != groups[node]:
                    raise ValueError(f"topology level {level.name!r} does not nest the level below")
        out.append(Level(level.name, s, level.tier, None))
        gofs.append(groups)
        size = s
    if top_tier is None:
        top_tier = min(3, out[-1].tier + 1) if out else 1
    out.append(Level("pool", max(n, 1), top_tier))
    return out, gofs


class PoolState:
    """Free capacity of one pool of identical nodes."""

    def __init__(self, index: int, name: str, gpus_per_node: int, active_nodes: int, spare_nodes: int,
                 levels: list[Level]):
        self.index = index
        self.name = name
        self.gpn = gpn = gpus_per_node
        self.n = n = active_nodes + spare_nodes
        self.active_nodes = active_nodes
        self.levels, gofs = _nest(list(levels), n)
        self.top_tier = self.levels[-1].tier
        if not gofs:
            # one level: the pool is the only group
            gofs = [[0] * n]
            self.tier = [self.top_tier]
        else:
            self.tier = [lv.tier for lv in self.levels[:-1]]
        self.gof: list[list[int]] = gofs
        self.g0: list[int] = gofs[0]
        g0 = self.g0
        nb = (max(g0) + 1) if n else 1
        # base groups: wholly free nodes (sorted lists), and the groups in sets by that count
        self.W: list[list[int]] = [[] for _ in range(nb)]
        sizes: dict[int, int] = {}
        for g in g0:
            sizes[g] = sizes.get(g, 0) + 1
        size0 = max(sizes.values(), default=1)
        self.B0: list[set[int]] = [set() for _ in range(size0 + 1)]
        self.m0 = 0
        # each base group is a contiguous run of nodes: its end bounds it
        self.g_end = [0] * nb
        for node in range(n):
            self.g_end[g0[node]] = node + 1
        if any(g0[node] < g0[node - 1] for node in range(1, n)) or \
                any(self.g_end[g0[node]] - node > sizes[g0[node]] for node in range(n)):
            raise ValueError("base topology groups must be contiguous runs of nodes")
        # higher tracked levels j = 1..T-1: base group -> group, counts,
        # children (groups of level j-1) of each group; then the pool's children
        T = len(gofs)
        self.T = T
        self.par: list[list[int]] = [[]]
        self.cnt: list[list[int]] = [[]]
        self.kids: list[list[list[int]]] = [[]]
        first_node = {}
        for node in range(n - 1, -1, -1):
            first_node[g0[node]] = node
        for j in range(1, T):
            gj = gofs[j]
            self.par.append([gj[first_node[g]] for g in range(nb)])
            ng = max(gj) + 1
            self.cnt.append([0] * ng)
            kids: list[list[int]] = [[] for _ in range(ng)]
            below = gofs[j - 1]
            seen = set()
            for node in range(n):
                c = below[node]
                if c not in seen:
                    seen.add(c)
                    kids[gj[node]].append(c)
            self.kids.append(kids)
        self.top_kids: list[int] = sorted(set(gofs[T - 1]))
        # (counts, base group -> group) per level; the largest group per level
        self.ups: list[tuple[list[int], list[int]]] = [(self.cnt[j], self.par[j]) for j in range(1, T)]
        self.size: list[int] = [size0] * T
        for j in range(1, T):
            counts: dict[int, int] = {}
            for G in gofs[j]:
                counts[G] = counts.get(G, 0) + 1
            self.size[j] = max(counts.values())
        # gangs placed across base groups: their nodes by group, under their first node
        self.gangs: dict[int, list[tuple[int, list[int]]]] = {}
        # partly free nodes
        self.partial: list[set[int]] = [set() for _ in range(gpn + 1)]
        self.pmask = 0
        self.free: list[int] = [0] * n
        self.status = bytearray([SPARE]) * n
        self.free_gpus = 0
        self.whole_free = 0
        self.spares = IndexedSet()
        self.up_nodes = active_nodes
        self.down_nodes = 0
        # spares sit at the end of the pool
        free, status = self.free, self.status
        for node in range(active_nodes):
            status[node] = UP
            free[node] = gpn
        self.free_gpus = active_nodes * gpn
        self._gain_many(range(active_nodes))
        for node in range(active_nodes, n):
            self.spares.add(node)

    # ------------------------------------------------------------- indexes
    @property
    def partial_mask(self) -> int:
        return self.pmask

    def _gain(self, g: int, d: int) -> None:
        """Base group g gained d wholly free nodes (already in W[g])."""
        c = len(self.W[g])
        old = c - d
        B0 = self.B0
        if old:
            b = B0[old]
            b.discard(g)
            if not b:
                self.m0 &= ~(1 << old)
        b = B0[c]
        if not b:
            self.m0 |= 1 << c
        b.add(g)
        for cnt, par in self.ups:
            cnt[par[g]] += d
        self.whole_free += d

    def _lose(self, g: int, d: int) -> None:
        """Base group g lost d wholly free nodes (already out of W[g])."""
        c = len(self.W[g])
        old = c + d
        B0 = self.B0
        b = B0[old]
        b.discard(g)
        if not b:
            self.m0 &= ~(1 << old)
        if c:
            b = B0[c]
            if not b:
                self.m0 |= 1 << c
            b.add(g)
        for cnt, par in self.ups:
            cnt[par[g]] -= d
        self.whole_free -= d

    def _gain_many(self, nodes) -> None:
        """Nodes (sorted) became wholly free; the caller set free[]."""
        g0, W = self.g0, self.W
        prev, c = -1, 0
        for node in nodes:
            g = g0[node]
            if g != prev:
                if c:
                    self._gain(prev, c)
                prev, c = g, 0
            insort(W[g], node)
            c += 1
        if c:
            self._gain(prev, c)

    def _set_free(self, node: int, new: int) -> None:
        """Generic update of one node's free GPUs (failures, repairs)."""
        old = self.free[node]
        if old == new:
            return
        gpn = self.gpn
        if 0 < old < gpn:
            b = self.partial[old]
            b.discard(node)
            if not b:
                self.pmask &= ~(1 << old)
        elif old == gpn:
            g = self.g0[node]
            self.W[g].remove(node)
            self._lose(g, 1)
        if 0 < new < gpn:
            b = self.partial[new]
            if not b:
                self.pmask |= 1 << new
            b.add(node)
        elif new == gpn:
            g = self.g0[node]
            insort(self.W[g], node)
            self._gain(g, 1)
        self.free[node] = new
        self.free_gpus += new - old

    # -------------------------------------------------------------- queries
    def nodes_for(self, gpus: int) -> int:
        """Nodes a job of `gpus` GPUs occupies (whole nodes above one node)."""
        return 1 if gpus <= self.gpn else -(-gpus // self.gpn)

    def max_fit(self) -> int:
        """The largest job (GPUs) that could start now: a job fits iff its
        size is at most this (whole nodes above one node)."""
        if self.whole_free:
            return self.whole_free * self.gpn
        return self.pmask.bit_length() - 1 if self.pmask else 0

    def fits(self, gpus: int) -> bool:
        """Could a job of `gpus` GPUs start now (O(1))?"""
        if gpus <= self.gpn:
            return self.whole_free > 0 or (self.pmask >> gpus) != 0
        return self.whole_free * self.gpn >= gpus

    def capacity_gpus(self) -> int:
        return self.active_nodes * self.gpn

    # ------------------------------------------------------------ placement
    def allocate(self, gpus: int, topology: bool = True) -> Optional[Allocation]:
        """Place a gang of `gpus` GPUs: (nodes, GPUs used per node, tiers
        spanned) or None. A job within a node takes the partly free node
        that fits best, else a whole node of the fullest base group; jobs
        above one node take whole nodes packed into the smallest group that
        holds them, the fullest such (topology), or the lowest-numbered
        free nodes (first-fit)."""
        gpn = self.gpn
        if gpus < gpn:
            m = self.pmask >> gpus
            if m:
                f = gpus + ((m & -m).bit_length() - 1)
                b = self.partial[f]
                node = b.pop()
                if not b:
                    self.pmask ^= 1 << f
            elif self.whole_free:
                node = self._take1() if topology else self._first_fit(1)[0]
                f = gpn
            else:
                return None
            nf = f - gpus
            if nf:
                b = self.partial[nf]
                if not b:
                    self.pmask |= 1 << nf
                b.add(node)
            self.free[node] = nf
            self.free_gpus -= gpus
            return (node,), gpus, 0
        k = -(-gpus // gpn)
        if self.whole_free < k:
            return None
        if k == 1:
            node = self._take1() if topology else self._first_fit(1)[0]
            self.free[node] = 0
            self.free_gpus -= gpn
            return (node,), gpn, 0
        if topology:
            m = self.m0 >> k
            if m:
                # the fullest base group that holds the gang (the common gang)
                got = self._take_base(next(iter(self.B0[k + ((m & -m).bit_length() - 1)])), k)
                self.free_gpus -= gpn * k
                return tuple(got), gpn, self.tier[0]
            chunks, tiers = self._take(k)
            chunks.sort()          # in node order (a group is in chunks once)
            nodes: Nodes = tuple(chain.from_iterable([c for _, c in chunks]))
            # release() gives them back a base group at a time
            self.gangs[nodes[0]] = chunks
        else:
            nodes = tuple(self._first_fit(k))
            tiers = self.tiers(nodes)
        self.free_gpus -= gpn * k
        return nodes, gpn, tiers

    def _take1(self) -> int:
        """One wholly free node (its highest-numbered) of the fullest base group."""
        m0 = self.m0
        c = (m0 & -m0).bit_length() - 1
        b = self.B0[c]
        g = b.pop()
        if not b:
            self.m0 = m0 ^ (1 << c)
        node = self.W[g].pop()
        if c > 1:
            b = self.B0[c - 1]
            if not b:
                self.m0 |= 1 << (c - 1)
            b.add(g)
        for cnt, par in self.ups:
            cnt[par[g]] -= 1
        self.whole_free -= 1
        return node

    def _take_base(self, g: int, k: int) -> list[int]:
        """The k lowest-numbered wholly free nodes of base group g, marked
        used."""
        w = self.W[g]
        chosen = w[:k]
        del w[:k]
        _fill(self.free, chosen, 0)
        self._lose(g, k)
        return chosen

    def _take_all_base(self, kids: list[int], chunks: list[tuple[int, list[int]]]) -> None:
        """Every wholly free node of base groups `kids`, all children of one
        group (so they share their parent at every level above), added to
        chunks as (group, nodes)."""
        W, B0, free = self.W, self.B0, self.free
        m0 = self.m0
        total = 0
        first = -1
        for c in kids:
            w = W[c]
            if not w:
                continue
            k = len(w)
            _fill(free, w, 0)
            chunks.append((c, w))
            W[c] = []
            bucket = B0[k]
            bucket.discard(c)
            if not bucket:
                m0 &= ~(1 << k)
            total += k
            first = c
        self.m0 = m0
        if total:
            for cnt, par in self.ups:
                cnt[par[first]] -= total
            self.whole_free -= total

    def _take(self, k: int) -> tuple[list[tuple[int, list[int]]], int]:
        """k > 1 wholly free nodes, topology-packed, when no base group
        holds them all (allocate takes that case): (the nodes by base group
        as (group, nodes), tiers)."""
        chunks: list[tuple[int, list[int]]] = []
        for j in range(1, self.T):
            if k > self.size[j]:
                continue
            cnt = self.cnt[j]
            # the group that fits best: the fewest free nodes of k or more,
            # the lowest-numbered of those
            s = sorted(cnt)
            i = bisect_left(s, k)
            if i == len(s):
                continue
            self._take_in(j, cnt.index(s[i]), k, chunks)
            return chunks, self.tier[j]
        self._take_in(self.T, 0, k, chunks)
        return chunks, self.top_tier

    def _take_in(self, j: int, G: int, k: int, chunks: list[tuple[int, list[int]]]) -> None:
        """k free nodes inside group G of level j (j = T: the pool),
        packed: the best-fitting child group if one holds what is left,
        else all of the fullest child, and again; added to chunks as
        (base group, nodes)."""
        if j == 0:
            chunks.append((G, self._take_base(G, k)))
            return
        kids = self.top_kids if j == self.T else self.kids[j][G]
        if j < self.T and k == self.cnt[j][G]:
            # every free node of the group: no choice to make
            if j == 1:
                self._take_all_base(kids, chunks)
            else:
                cl = self.cnt[j - 1]
                for c in kids:
                    if cl[c]:
                        self._take_in(j - 1, c, cl[c], chunks)
            return
        if j == 1:
            self._take_from_base(kids, k, chunks)
            return
        # children fullest first, then lowest-numbered (kids are in order and
        # the sort is stable); those with nothing free come last, never reached
        cl = self.cnt[j - 1]
        order = sorted(kids, key=cl.__getitem__, reverse=True)
        for i, take in _packing(list(map(cl.__getitem__, order)), k):
            self._take_in(j - 1, order[i], take, chunks)

    def _take_from_base(self, kids: list[int], k: int, chunks: list[tuple[int, list[int]]]) -> None:
        """k wholly free nodes from base groups `kids`, children of one group
        (or of the pool), packed as _packing says, in one loop with one
        update of the counts above (the groups share every parent)."""
        W, B0, free = self.W, self.B0, self.free
        order = sorted(kids, key=lambda c: len(W[c]), reverse=True)
        m0 = self.m0
        for i, take in _packing([len(W[c]) for c in order], k):
            g = order[i]
            w = W[g]
            old = len(w)
            chosen = w[:take]
            del w[:take]
            _fill(free, chosen, 0)
            chunks.append((g, chosen))
            # the group's bucket moves as _lose moves it
            bucket = B0[old]
            bucket.discard(g)
            if not bucket:
                m0 &= ~(1 << old)
            left = old - take
            if left:
                bucket = B0[left]
                if not bucket:
                    m0 |= 1 << left
                bucket.add(g)
        self.m0 = m0
        for cnt, par in self.ups:
            cnt[par[g]] -= k
        self.whole_free -= k

    def _first_fit(self, k: int) -> list[int]:
        """The k lowest-numbered wholly free nodes (O(groups))."""
        out: list[int] = []
        W = self.W
        for g in range(len(W)):
            w = W[g]
            if w:
                out += self._take_base(g, min(k - len(out), len(w)))
                if len(out) == k:
                    return out
        raise AssertionError("whole_free said the nodes exist")  # pragma: no cover

    def release(self, nodes: Nodes, per_node: int) -> None:
        """Give back what allocate() gave (nodes sorted, as it returned
        them; a gang it placed across base groups goes back by the groups
        it noted in `gangs`, without finding them again; a node is never
        taken out of service while a job holds it)."""
        gpn = self.gpn
        free = self.free
        if per_node < gpn:
            node = nodes[0]
            f = free[node]
            nf = f + per_node
            if f:
                b = self.partial[f]
                b.discard(node)
                if not b:
                    self.pmask ^= 1 << f
            if nf < gpn:
                b = self.partial[nf]
                if not b:
                    self.pmask |= 1 << nf
                b.add(node)
            else:
                g = self.g0[node]
                insort(self.W[g], node)
                self._gain(g, 1)
            free[node] = nf
            self.free_gpus += per_node
            return
        self.free_gpus += gpn * len(nodes)
        g0, W, g_end = self.g0, self.W, self.g_end
        if len(nodes) == 1:
            node = nodes[0]
            free[node] = gpn
            g = g0[node]
            insort(W[g], node)
            self._gain(g, 1)
            return
        n = len(nodes)
        chunks = self.gangs.pop(nodes[0], None)
        if chunks is None:
            a, z = nodes[0], nodes[-1]
            g = g0[a]
            if g == g0[z]:
                # within one base group (sorted, as _take_base took them)
                _fill(free, nodes, gpn)
                _merge(W[g], nodes)
                self._gain(g, n)
                return
            # sorted across groups (first-fit): one chunk per base group
            # (groups are contiguous runs of nodes)
            chunks = []
            i = 0
            while i < n:
                g = g0[nodes[i]]
                e = bisect_left(nodes, g_end[g], i)
                chunks.append((g, list(nodes[i:e])))
                i = e
        # the bucket moves of _gain inline
        B0, ups = self.B0, self.ups
        m0 = self.m0
        for g, chunk in chunks:
            c = len(chunk)
            _fill(free, chunk, gpn)
            w = W[g]
            old = len(w)
            _merge(w, chunk)
            if old:
                bucket = B0[old]
                bucket.discard(g)
                if not bucket:
                    m0 &= ~(1 << old)
            bucket = B0[old + c]
            if not bucket:
                m0 |= 1 << (old + c)
            bucket.add(g)
            for cnt, par in ups:
                cnt[par[g]] += c
        self.m0 = m0
        self.whole_free += n

    # ------------------------------------------------------------ topology
    def tiers(self, nodes) -> int:
        """Switch tiers a placement spans: 0 inside one node, else the tier
        of the smallest group holding all its nodes."""
        if len(nodes) == 1:
            return 0
        lo, hi = min(nodes), max(nodes)
        for gof, tier in zip(self.gof, self.tier):
            if gof[lo] == gof[hi]:
                return tier
        return self.top_tier

    def groups_spanned(self, nodes) -> dict[str, int]:
        out = {lv.name: len({gof[n] for n in nodes}) for lv, gof in zip(self.levels, self.gof)}
        out[self.levels[-1].name] = 1
        return out

    # ------------------------------------------------------------- failures
    def node_down(self, node: int) -> None:
        """Take a node out of service (its jobs were released already)."""
        if self.status[node] == DOWN:
            return
        if self.status[node] == SPARE:
            self.spares.remove(node)
        else:
            self._set_free(node, 0)
            self.up_nodes -= 1
        self.status[node] = DOWN
        self.down_nodes += 1

    def node_repaired(self, node: int, as_spare: bool) -> None:
        if self.status[node] != DOWN:
            return
        self.down_nodes -= 1
        self.status[node] = SPARE if as_spare else UP
        if as_spare:
            self.spares.add(node)
        else:
            self.up_nodes += 1
            self.free[node] = 0
            self._set_free(node, self.gpn)

    def activate_spare(self) -> int | None:
        """Bring a spare node into service; None if there is none."""
        if not self.spares.items:
            return None
        node = self.spares.last()
        self.spares.remove(node)
        self.status[node] = UP
        self.up_nodes += 1
        self.free[node] = 0
        self._set_free(node, self.gpn)
        return node

    # ------------------------------------------------------------- metrics
    def fragmentation(self) -> float:
        """Share of free GPUs that are not on wholly free nodes (0..1):
        capacity stranded for multi-node jobs."""
        if not self.free_gpus:
            return 0.0
        return 1.0 - self.whole_free * self.gpn / self.free_gpus

    def check(self) -> None:
        """Verify every index against a full recount (tests only)."""
        gpn = self.gpn
        assert self.free_gpus == sum(self.free), "free_gpus"
        assert self.whole_free == sum(1 for f in self.free if f == gpn), "whole_free"
        for node, f in enumerate(self.free):
            assert 0 <= f <= gpn
            if self.status[node] != UP:
                assert f == 0
            if 0 < f < gpn:
                assert node in self.partial[f]
            for ff in range(1, gpn):
                if ff != f:
                    assert node not in self.partial[ff]
            assert (node in self.W[self.g0[node]]) == (f == gpn), node
        for f in range(1, gpn):
            assert bool(self.partial[f]) == bool(self.pmask >> f & 1), ("pmask", f)
        for g, w in enumerate(self.W):
            assert w == sorted(set(w)), ("W sorted", g)
            c = len(w)
            for cc in range(1, len(self.B0)):
                assert (g in self.B0[cc]) == (cc == c), ("B0", g, c)
        for c in range(1, len(self.B0)):
            assert bool(self.B0[c]) == bool(self.m0 >> c & 1), ("m0", c)
        for first, chunks in self.gangs.items():
            assert chunks == sorted(chunks) and chunks[0][1][0] == first, ("gang", first)
            for g, chunk in chunks:
                assert all(self.g0[node] == g and self.free[node] == 0 for node in chunk), ("gang", first, g)
        for j in range(1, self.T):
            counts = [0] * len(self.cnt[j])
            for node, f in enumerate(self.free):
                if f == gpn:
                    counts[self.gof[j][node]] += 1
            assert counts == self.cnt[j], ("level", j)
