"""Cluster state: which GPUs of which node are free, indexed so that placing
and releasing a job costs bounded work instead of a scan of the cluster.

A pool is a run of nodes numbered 0..n-1, grouped by nested topology levels
(NVLink domain, leaf switch, scalable unit, ..., and the whole pool on top),
each level's group a contiguous range of node numbers. The indexes:

* ``free[node]``: free GPUs of each node (0 for down and spare nodes);
* partly free nodes in buckets by free count (``partial[f]``) with a bit
  mask of the non-empty buckets, so the best-fitting node for a small job is
  a bit trick away;
* per level, the count of wholly free nodes of every group and the groups in
  buckets by that count, again with a bit mask: the group that best fits a
  gang of k whole nodes (the fullest group that still has k free) is found
  in O(1), and a gang spread over several groups takes the emptiest groups
  first, touching only the groups it uses;
* wholly free nodes of every lowest-level group, as an indexed set.

Allocating or releasing k nodes costs O(k x levels). Everything is
deterministic: sets are lists with a position index, never hashed sets.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

UP, SPARE, DOWN = 0, 1, 2


class IndexedSet:
    """A set of ints with O(1) add, remove, membership and pick (the last
    added), iterating in a deterministic order."""
    __slots__ = ("items", "pos")

    def __init__(self):
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
    """One topology level: groups of `nodes` nodes; a job inside one group
    spans `tier` switch tiers (0 = NVLink only, 1 = one leaf, 2 = spine,
    3 = core)."""
    name: str
    nodes: int
    tier: int


def default_levels(system, fabric, nodes: int) -> list[Level]:
    """Topology levels of a pool from its system and fabric when
    hardware.topology gives none: the NVLink domain; a rail-optimized leaf
    group (radix/2 nodes, one NIC per node per leaf, capped at the scalable
    unit); the scalable unit; the two-tier (leaf-spine) reach of radix^2/2
    ports over the node's NICs; beyond that the core tier."""
    out = []
    if system.nodes_per_domain > 1:
        out.append(Level("nvlink_domain", system.nodes_per_domain, 0))
    leaf = max(1, min(system.su_nodes, fabric.radix // 2))
    out.append(Level("leaf", leaf, 1))
    out.append(Level("su", system.su_nodes, 1 if system.su_nodes <= leaf else 2))
    out.append(Level("spine", max(1, fabric.radix * fabric.radix // 2 // system.nics_per_node), 2))
    out.append(Level("core", max(nodes, 1), 3))
    return out


def _lowbit(m: int) -> int:
    return (m & -m).bit_length() - 1


class PoolState:
    """Free capacity of one pool of identical nodes."""

    def __init__(self, index: int, name: str, gpus_per_node: int, active_nodes: int, spare_nodes: int,
                 levels: list[Level]):
        self.index = index
        self.name = name
        self.gpn = gpus_per_node
        self.n = active_nodes + spare_nodes
        self.active_nodes = active_nodes
        # nested levels, each a multiple of the one below, topped by the pool
        lv: list[Level] = []
        size = 1
        top_tier = None
        for level in levels:
            s = max(level.nodes, size)
            s = -(-s // size) * size
            if s >= self.n:
                top_tier = level.tier
                break
            if s > size:
                if lv and lv[-1].tier == level.tier:
                    lv.pop()  # same tier: the larger group is what counts
                lv.append(Level(level.name, s, level.tier))
                size = s
        if top_tier is None:
            top_tier = (lv[-1].tier + 1) if lv else 1
        lv.append(Level("pool", -(-max(self.n, 1) // size) * size, top_tier))
        self.levels = lv
        self.sizes = [x.nodes for x in lv]
        self.free = [0] * self.n
        self.status = bytearray([SPARE]) * self.n
        self.free_gpus = 0
        self.whole_free = 0
        self.partial = [set() for _ in range(self.gpn + 1)]
        self.partial_mask = 0
        ngroups = [-(-self.n // s) for s in self.sizes]
        self.wf = [[0] * g for g in ngroups]
        self.buckets = [[set() for _ in range(s + 1)] for s in self.sizes]
        self.masks = [0] * len(self.sizes)
        # the top level is one group whose count is whole_free: no buckets kept
        self.ntrack = len(self.sizes) - 1
        self.base = [set() for _ in range(ngroups[0])]
        self.spares = IndexedSet()
        self.up_nodes = active_nodes
        self.down_nodes = 0
        # spares sit at the end of the pool
        for node in range(active_nodes):
            self.status[node] = UP
            self.free[node] = self.gpn
        self.free_gpus = active_nodes * self.gpn
        self._whole_many(range(active_nodes), 1)
        for node in range(active_nodes, self.n):
            self.spares.add(node)

    # -------------------------------------------------------------- indexes
    def _set_free(self, node: int, new: int) -> None:
        old = self.free[node]
        if old == new:
            return
        gpn = self.gpn
        if 0 < old < gpn:
            b = self.partial[old]
            b.discard(node)
            if not b:
                self.partial_mask &= ~(1 << old)
        elif old == gpn:
            self._whole(node, -1)
        if 0 < new < gpn:
            self.partial[new].add(node)
            self.partial_mask |= 1 << new
        elif new == gpn:
            self._whole(node, 1)
        self.free[node] = new
        self.free_gpus += new - old

    def _move(self, li: int, g: int, d: int) -> None:
        """Group g of level li gains d wholly free nodes."""
        wf = self.wf[li]
        c = wf[g]
        buckets = self.buckets[li]
        if c:
            b = buckets[c]
            b.discard(g)
            if not b:
                self.masks[li] &= ~(1 << c)
        c += d
        wf[g] = c
        if c:
            b = buckets[c]
            if not b:
                self.masks[li] |= 1 << c
            b.add(g)

    def _whole(self, node: int, d: int) -> None:
        self.whole_free += d
        sizes = self.sizes
        if d > 0:
            self.base[node // sizes[0]].add(node)
        else:
            self.base[node // sizes[0]].discard(node)
        move = self._move
        for li in range(self.ntrack):
            move(li, node // sizes[li], d)

    def _whole_many(self, nodes, d: int) -> None:
        """Nodes become wholly free (d = 1) or stop being so (d = -1), with
        one set update and one bucket move per group touched. `nodes` must
        be sorted (groups are contiguous ranges). The caller sets free[]."""
        sizes = self.sizes
        s0 = sizes[0]
        base = self.base
        move = self._move
        counts = Counter(map(s0.__rfloordiv__, nodes))
        nodes = list(nodes)
        track = self.ntrack
        pos = 0
        for g, c in counts.items():
            chunk = nodes[pos:pos + c]
            pos += c
            if d > 0:
                base[g].update(chunk)
            else:
                base[g].difference_update(chunk)
            if track:
                move(0, g, d * c)
        self.whole_free += d * len(nodes)
        for li in range(1, track):
            r = sizes[li] // s0
            up: dict[int, int] = {}
            for g, c in counts.items():
                h = g // r
                up[h] = up.get(h, 0) + c
            for h, c in up.items():
                move(li, h, d * c)

    # -------------------------------------------------------------- queries
    def nodes_for(self, gpus: int) -> int:
        """Nodes a job of `gpus` GPUs occupies (whole nodes above one node)."""
        return 1 if gpus <= self.gpn else -(-gpus // self.gpn)

    def fits(self, gpus: int) -> bool:
        """Could a job of `gpus` GPUs start now (O(1))?"""
        if gpus <= self.gpn:
            return self.whole_free > 0 or (self.partial_mask >> gpus) != 0
        return self.whole_free >= -(-gpus // self.gpn)

    def capacity_gpus(self) -> int:
        return self.active_nodes * self.gpn

    # ------------------------------------------------------------ placement
    def allocate(self, gpus: int, topology: bool = True):
        """Place a gang of `gpus` GPUs: (nodes, gpus_per_node_used) or None.
        Small jobs take the partly free node that fits best (else a whole
        node from the fullest group); jobs above one node take whole nodes
        packed into the fewest groups (topology) or the lowest-numbered free
        groups (first-fit)."""
        gpn = self.gpn
        if gpus < gpn:
            m = self.partial_mask >> gpus
            if m:
                f = gpus + _lowbit(m)
                node = next(iter(self.partial[f]))
                self._set_free(node, f - gpus)
                return (node,), gpus
            if not self.whole_free:
                return None
            node = self._take_whole(1, topology)[0]
            self._set_free(node, gpn - gpus)
            return (node,), gpus
        k = -(-gpus // gpn)
        if self.whole_free < k:
            return None
        nodes = sorted(self._take_whole(k, topology))
        free = self.free
        for node in nodes:
            free[node] = 0
        self.free_gpus -= gpn * len(nodes)
        self._whole_many(nodes, -1)
        return tuple(nodes), gpn

    def _take_whole(self, k: int, topology: bool) -> list[int]:
        """k wholly free nodes (the caller marks them used)."""
        if not topology:
            return self._first_fit(k)
        sizes = self.sizes
        for li in range(self.ntrack):
            if k <= sizes[li]:
                m = self.masks[li] >> k
                if m:
                    g = min(self.buckets[li][k + _lowbit(m)])
                    return self._take_in(li, g, k)
        if self.whole_free >= k:
            return self._take_in(self.ntrack, 0, k)
        raise AssertionError("whole_free said the nodes exist")  # pragma: no cover

    def _take_in(self, li: int, g: int, k: int) -> list[int]:
        """k free nodes inside group g of level li, packed: the best-fitting
        child group if one holds k, else the fullest children first."""
        if li == 0:
            b = self.base[g]
            return sorted(b)[:k] if len(b) > k else sorted(b)
        out: list[int] = []
        wf = self.wf[li - 1]
        if li == len(self.sizes) - 1:
            # the pool: every child is in the level's global buckets
            masks, buckets = self.masks, self.buckets[li - 1]
            chosen: list[tuple[int, int]] = []
            remaining = k
            m0 = masks[li - 1]
            taken: dict[int, int] = {}
            while remaining:
                m = m0 >> remaining
                if m:
                    c = remaining + _lowbit(m)
                else:
                    c = m0.bit_length() - 1
                # the lowest-numbered bucket entry not already chosen
                child = None
                for x in sorted(buckets[c]):
                    if x not in taken:
                        child = x
                        break
                if child is None:
                    m0 &= ~(1 << c)
                    continue
                n = min(c, remaining)
                taken[child] = n
                chosen.append((child, n))
                remaining -= n
            for child, n in chosen:
                out.extend(self._take_in(li - 1, child, n))
            return out
        ratio = self.sizes[li] // self.sizes[li - 1]
        lo = g * ratio
        children = [(wf[c], c) for c in range(lo, min(lo + ratio, len(wf))) if wf[c]]
        fit = [x for x in children if x[0] >= k]
        if fit:
            c, child = min(fit)
            return self._take_in(li - 1, child, k)
        children.sort(key=lambda x: (-x[0], x[1]))
        remaining = k
        for c, child in children:
            n = min(c, remaining)
            out.extend(self._take_in(li - 1, child, n))
            remaining -= n
            if not remaining:
                break
        return out

    def _first_fit(self, k: int) -> list[int]:
        """The lowest-numbered wholly free nodes (O(groups))."""
        out: list[int] = []
        for base in self.base:
            if base:
                for node in sorted(base):
                    out.append(node)
                    if len(out) == k:
                        return out
        raise AssertionError("whole_free said the nodes exist")  # pragma: no cover

    def release(self, nodes, per_node: int) -> None:
        free, status = self.free, self.status
        gpn = self.gpn
        if per_node == gpn and len(nodes) > 1:
            up = [node for node in nodes if status[node] == UP]
            for node in up:
                free[node] = gpn
            self.free_gpus += gpn * len(up)
            self._whole_many(up, 1)
            return
        for node in nodes:
            if status[node] == UP:
                self._set_free(node, free[node] + per_node)

    # ------------------------------------------------------------ topology
    def tiers(self, nodes) -> int:
        """Switch tiers a placement spans: 0 inside one node (or NVLink
        domain), else the tier of the smallest level holding all nodes."""
        if len(nodes) == 1:
            return 0
        lo, hi = min(nodes), max(nodes)
        for level in self.levels:
            s = level.nodes
            if lo // s == hi // s:
                return level.tier
        return self.levels[-1].tier

    def groups_spanned(self, nodes) -> dict[str, int]:
        return {lv.name: len({n // lv.nodes for n in nodes}) for lv in self.levels}

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
        for li, s in enumerate(self.sizes[:self.ntrack]):
            for g, c in enumerate(self.wf[li]):
                assert c == sum(1 for n in range(g * s, min((g + 1) * s, self.n)) if self.free[n] == gpn), (li, g)
                if c:
                    assert g in self.buckets[li][c]
