"""The cluster as a network: GPUs in NVLink domains, rail-optimized NICs,
and a leaf / spine / core fat tree laid out like NVIDIA's DGX SuperPOD.

Two views of the same structure:
- a *structural index* (``Topology``): plain numpy arrays, node index ->
  pool, NVLink domain, leaf group, scalable unit (SU) and spine pod, plus the
  switch counts per tier. It builds in milliseconds for 100,000 GPUs and
  answers the queries a scheduler makes many times (``span``,
  ``levels_for_placement``, ``path``);
- a networkx graph (``Topology.graph()``), built on first request, with one
  vertex per GPU, NIC, NVSwitch domain and switch and per-direction link
  capacities, for inspection and graph algorithms.

Layout rules (DGX SuperPOD reference architectures, H100 / B200 / B300 /
GB200):
- A *rail* is a NIC position inside an NVLink domain (8 per DGX, 72 per
  NVL72 rack). Leaf switches are rail-aligned: all NICs of one rail of an SU
  go to the same leaf, and a leaf takes as many whole rails as its downlink
  ports hold (H100: one rail of 32 nodes per 64-port leaf, 8 leaves per SU;
  GB200: 4 rails x 8 racks per leaf, 18 leaves per SU). An SU too wide for
  one leaf is split into leaf groups. Every SU gets its full set of leaves,
  even when partly populated (SuperPOD practice).
- A *leaf group* is the set of NVLink domains that share their leaves: any
  two GPUs in it reach each other through one leaf switch (GPUs on
  different rails first cross NVLink to the matching rail, as NCCL's PXN
  does).
- Two tiers while the leaves fit one spine layer (leaves <= switch radix),
  each leaf linked to every spine; spines = smallest divisor of the leaf
  uplinks that gives enough ports (4 SU of H100: 32 leaf, 16 spine; 4 SU of
  B300/XDR: 32 leaf, 18 spine). Beyond, three tiers: pods of whole SUs
  behind their own spines, and a core layer (16 SU of B200: 128 leaf,
  128 spine, 64 core). Beyond radix^3/4 endpoints the core counts
  port-equivalent radix-k switches (large modular chassis).
- Oversubscription per tier (``leaf``, ``spine``, ``core``) is that tier's
  downlink:uplink bandwidth ratio: a leaf with ratio 2 has half as many
  uplinks as hosts. Traffic that climbs to a tier sees the product of the
  ratios below it. Pools (several systems in one cluster) each have their
  own fabric; their top tiers join in a cluster interconnect, through that
  top tier's ratio.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from hardware.catalog import Catalog, Fabric, GPU, System
from hardware.collectives import Level, network_level, nvlink_level
from workloads.errors import InputError

TIERS = ("leaf", "spine", "core")
SPAN_TIERS = ("gpu", "nvlink", "leaf", "spine", "core", "interconnect")
"""What a placement's traffic climbs to, lowest first."""


# ---------------------------------------------------------------- inputs
@dataclass(frozen=True)
class PoolSpec:
    """One pool of identical nodes. fabric: a fabric name, or None for the
    system's default. oversubscription: one ratio for every tier, or per
    tier {leaf, spine, core}; 1 = non-blocking."""
    system: str
    nodes: int
    fabric: str | None = None
    oversubscription: float | Mapping[str, float] = 1.0
    name: str | None = None


def tier_ratios(oversubscription, where: str = "oversubscription") -> dict[str, float]:
    """{leaf, spine, core} ratios from one number or a partial mapping."""
    if isinstance(oversubscription, Mapping):
        unknown = [k for k in oversubscription if k not in TIERS]
        if unknown:
            from workloads.errors import unknown_name
            raise unknown_name("tier", unknown[0], TIERS, where)
        ratios = {t: oversubscription.get(t, 1.0) for t in TIERS}
    else:
        ratios = {t: oversubscription for t in TIERS}
    for tier, r in ratios.items():
        if isinstance(r, bool) or not isinstance(r, (int, float)) or not math.isfinite(r) or r < 1:
            raise InputError(f"oversubscription {r!r} for the {tier} tier must be a number >= 1",
                             where, "use 1 for non-blocking, 2 for 2:1")
    return {t: float(r) for t, r in ratios.items()}


# -------------------------------------------------------------- structure
@dataclass
class PoolLayout:
    """The fabric of one pool. Counts are per pool; ``first_*`` are the
    offsets of its ids in the cluster-wide numbering."""
    index: int
    name: str
    system: System
    gpu: GPU
    fabric: Fabric
    nodes: int
    ratios: dict[str, float]
    first_node: int
    first_gpu: int
    first_domain: int
    first_group: int
    first_su: int
    first_pod: int
    first_leaf: int
    first_spine: int
    first_core: int
    domains: int
    rails: int                 # NIC positions per NVLink domain
    sus: int
    domains_per_su: int
    groups_per_su: int         # leaf groups per SU
    domains_per_group: int
    rails_per_leaf: int
    leaves_per_group: int
    leaf_down: int             # host ports per leaf (for a full SU)
    leaf_up: int               # uplinks per leaf
    tiers: int                 # 1 leaf only, 2 leaf+spine, 3 leaf+spine+core
    sus_per_pod: int
    pods: int
    pod_spines: list[int]      # spines in each pod
    spine_up: int              # uplinks per spine (3 tiers)
    cores: int
    top_up_links: int = 0      # links from the top tier to the cluster interconnect

    @property
    def gpus(self) -> int:
        return self.nodes * self.system.gpus_per_node

    @property
    def nodes_per_domain(self) -> int:
        return self.system.nodes_per_domain

    @property
    def groups(self) -> int:
        return self.sus * self.groups_per_su

    @property
    def leaves(self) -> int:
        return self.groups * self.leaves_per_group

    @property
    def spines(self) -> int:
        return sum(self.pod_spines)

    @property
    def nic_bw_per_gpu_Bps(self) -> float:
        return self.system.nics_per_node * self.system.nic_bw_Bps / self.system.gpus_per_node

    @property
    def nic_bw_total_Bps(self) -> float:
        return self.nodes * self.system.nics_per_node * self.system.nic_bw_Bps

    def oversubscription_to(self, tier: str) -> float:
        """Bandwidth reduction for traffic that climbs to `tier`."""
        if tier in ("gpu", "nvlink", "leaf"):
            return 1.0
        if tier == "spine":
            return self.ratios["leaf"]
        if tier == "core":
            return self.ratios["leaf"] * self.ratios["spine"]
        # interconnect: through every tier of the pool, the top one included
        r = 1.0
        for t in TIERS[:self.tiers]:
            r *= self.ratios[t]
        return r

    @property
    def top_tier(self) -> str:
        return TIERS[self.tiers - 1]

    def bisection_Bps(self) -> float:
        """Line-rate bandwidth across a balanced cut of the pool's nodes."""
        half = self.nic_bw_total_Bps / 2
        if self.groups <= 1:
            return half
        if self.tiers == 3 and self.pods > 1:
            return half / self.oversubscription_to("core")
        return half / self.oversubscription_to("spine")


@dataclass(frozen=True)
class Path:
    """How two GPUs reach each other. tier: the highest tier the path climbs
    to (nvlink, leaf, spine, core, interconnect); hops: network switches
    traversed (NVLink not counted); bw_Bps: line-rate bottleneck, one
    direction; latency_s: switch traversal latency."""
    tier: str
    hops: int
    bw_Bps: float
    latency_s: float


@dataclass(frozen=True)
class Span:
    """What a placement touches and what its traffic crosses.

    tier: the highest tier two of its GPUs communicate through ("gpu" for a
    single GPU); hops: switch traversals at that tier; oversubscription: the
    bandwidth reduction of the tiers crossed."""
    gpus: int
    nodes: int
    domains: int
    leaf_groups: int
    sus: int
    pods: int
    pools: int
    gpus_per_domain_min: int
    gpus_per_domain_max: int
    tier: str
    hops: int
    oversubscription: float


@dataclass
class Topology:
    """The structural index of a cluster (see module doc). Node and GPU
    indices run over the pools in order; ``node_*`` arrays give each node's
    pool, NVLink domain, leaf group, SU and pod (cluster-wide ids)."""
    pools: list[PoolLayout]
    node_pool: np.ndarray
    node_domain: np.ndarray
    node_group: np.ndarray
    node_su: np.ndarray
    node_pod: np.ndarray
    pool_first_gpu: np.ndarray
    interconnect_switches: int = 0
    _graph: object = field(default=None, repr=False)

    # ---- sizes
    @property
    def nodes(self) -> int:
        return int(self.node_pool.size)

    @property
    def gpus(self) -> int:
        return sum(p.gpus for p in self.pools)

    @property
    def domains(self) -> int:
        return sum(p.domains for p in self.pools)

    def switches(self) -> dict[str, int]:
        """Switch count per tier (interconnect: the layer joining pools)."""
        return {"leaf": sum(p.leaves for p in self.pools), "spine": sum(p.spines for p in self.pools),
                "core": sum(p.cores for p in self.pools), "interconnect": self.interconnect_switches}

    def bisection_Bps(self) -> float:
        """Line-rate bandwidth across a balanced cut (estimate for several
        pools: the cheaper of halving every pool and splitting pools apart)."""
        inside = sum(p.bisection_Bps() for p in self.pools)
        if len(self.pools) == 1:
            return inside
        uplinks = sum(p.nic_bw_total_Bps / p.oversubscription_to("interconnect") for p in self.pools)
        return min(inside, uplinks / 2)

    # ---- lookups
    def gpu_node(self, gpus) -> np.ndarray:
        """Node index of each GPU index."""
        g = np.asarray(gpus, dtype=np.int64)
        self._check_index(g, self.gpus, "GPU")
        pool = np.searchsorted(self.pool_first_gpu, g, side="right") - 1
        per_node = np.array([p.system.gpus_per_node for p in self.pools])
        first_node = np.array([p.first_node for p in self.pools])
        return first_node[pool] + (g - self.pool_first_gpu[pool]) // per_node[pool]

    def node_gpus(self, node: int) -> range:
        """GPU indices of one node."""
        self._check_index(np.asarray([node]), self.nodes, "node")
        p = self.pools[int(self.node_pool[node])]
        start = p.first_gpu + (node - p.first_node) * p.system.gpus_per_node
        return range(start, start + p.system.gpus_per_node)

    def pool_of_node(self, node: int) -> PoolLayout:
        return self.pools[int(self.node_pool[node])]

    @staticmethod
    def _check_index(idx: np.ndarray, size: int, kind: str) -> None:
        if idx.size and (idx.min() < 0 or idx.max() >= size):
            bad = int(idx[(idx < 0) | (idx >= size)][0])
            raise InputError(f"{kind} index {bad} is outside the cluster", kind.lower(),
                             f"use 0 to {size - 1}")

    def graph(self):
        """The networkx graph (built on first call, then cached)."""
        if self._graph is None:
            self._graph = _build_graph(self)
        return self._graph


# ---------------------------------------------------------------- building
def _smallest_divisor_at_least(n: int, low: int) -> int:
    """Smallest divisor of n that is >= low (low itself when none is):
    spine counts that split every leaf's uplinks evenly."""
    for d in range(max(1, low), n + 1):
        if n % d == 0:
            return d
    return max(1, low)


def _down_ports(radix: int, ratio: float) -> int:
    """Host-facing ports of a switch whose down:up ratio is `ratio`."""
    return max(1, int(math.floor(radix * ratio / (1.0 + ratio) + 1e-9)))


def _layout(index: int, spec: PoolSpec, catalog: Catalog, offsets: dict, where: str) -> PoolLayout:
    system = catalog.system(spec.system, f"{where}.system")
    gpu = catalog.system_gpu(system)
    fabric = catalog.fabric(spec.fabric or system.fabric, f"{where}.fabric")
    ratios = tier_ratios(spec.oversubscription, f"{where}.oversubscription")
    if isinstance(spec.nodes, bool) or not isinstance(spec.nodes, (int, np.integer)) or spec.nodes < 1:
        raise InputError(f"node count {spec.nodes!r} must be a whole number >= 1", f"{where}.nodes",
                         "give the number of nodes")
    nodes = int(spec.nodes)
    npd = system.nodes_per_domain
    if nodes % npd:
        raise InputError(f"{system.name} nodes come in NVLink domains of {npd} "
                         f"({system.nvlink_domain_gpus} GPUs); {nodes} is not a multiple",
                         f"{where}.nodes", f"use a multiple of {npd}, e.g. {max(npd, nodes // npd * npd)}")
    k = fabric.radix
    rails = npd * system.nics_per_node
    domains = nodes // npd
    domains_per_su = system.su_nodes // npd
    sus = math.ceil(nodes / system.su_nodes)

    d_cap = _down_ports(k, ratios["leaf"])
    groups_per_su = math.ceil(domains_per_su / d_cap)
    dpg = math.ceil(domains_per_su / groups_per_su)
    rails_per_leaf = max(1, d_cap // dpg)
    leaves_per_group = math.ceil(rails / rails_per_leaf)
    leaf_down = min(rails, rails_per_leaf) * dpg
    leaf_up = math.ceil(leaf_down / ratios["leaf"])
    leaves = sus * groups_per_su * leaves_per_group
    leaves_per_su = groups_per_su * leaves_per_group

    spine_up, cores = 0, 0
    if leaves <= 1:
        tiers, sus_per_pod, pods, pod_spines = 1, sus, 1, [0]
    elif leaves <= k:
        tiers, sus_per_pod, pods = 2, sus, 1
        pod_spines = [_smallest_divisor_at_least(leaf_up, math.ceil(leaves * leaf_up / k))]
    else:
        tiers = 3
        d_s = _down_ports(k, ratios["spine"])
        sus_per_pod = max(1, d_s // leaves_per_su)
        pods = math.ceil(sus / sus_per_pod)
        pod_spines = []
        for p in range(pods):
            lp = (min(sus, (p + 1) * sus_per_pod) - p * sus_per_pod) * leaves_per_su
            pod_spines.append(_smallest_divisor_at_least(leaf_up, math.ceil(lp * leaf_up / d_s)))
        full_lp = min(sus, sus_per_pod) * leaves_per_su
        spine_down = math.ceil(full_lp * leaf_up / pod_spines[0])
        spine_up = math.ceil(spine_down / ratios["spine"])
        cores = math.ceil(sum(pod_spines) * spine_up / k)

    return PoolLayout(
        index=index, name=spec.name or spec.system, system=system, gpu=gpu, fabric=fabric, nodes=nodes,
        ratios=ratios, first_node=offsets["node"], first_gpu=offsets["gpu"], first_domain=offsets["domain"],
        first_group=offsets["group"], first_su=offsets["su"], first_pod=offsets["pod"],
        first_leaf=offsets["leaf"], first_spine=offsets["spine"], first_core=offsets["core"],
        domains=domains, rails=rails, sus=sus, domains_per_su=domains_per_su, groups_per_su=groups_per_su,
        domains_per_group=dpg, rails_per_leaf=rails_per_leaf, leaves_per_group=leaves_per_group,
        leaf_down=leaf_down, leaf_up=leaf_up, tiers=tiers, sus_per_pod=sus_per_pod, pods=pods,
        pod_spines=pod_spines, spine_up=spine_up, cores=cores)


def build_topology(pools: Sequence[PoolSpec], catalog: Catalog) -> Topology:
    """The structural index of a cluster of `pools` (the graph is built on
    demand by ``Topology.graph()``)."""
    if not pools:
        raise InputError("the cluster has no pools", "cluster", "give at least one pool of nodes")
    names = [p.name or p.system for p in pools]
    if len(set(names)) != len(names):
        raise InputError("pool names must be unique", "cluster.pools", "name each pool")
    offsets = dict(node=0, gpu=0, domain=0, group=0, su=0, pod=0, leaf=0, spine=0, core=0)
    layouts, arrays = [], {k: [] for k in ("pool", "domain", "group", "su", "pod")}
    for i, spec in enumerate(pools):
        where = f"cluster.pools[{i}]" if len(pools) > 1 else "cluster"
        lay = _layout(i, spec, catalog, offsets, where)
        layouts.append(lay)
        local = np.arange(lay.nodes, dtype=np.int64)
        dom = local // lay.nodes_per_domain
        su = local // lay.system.su_nodes
        dom_in_su = dom % lay.domains_per_su
        group = su * lay.groups_per_su + dom_in_su // lay.domains_per_group
        arrays["pool"].append(np.full(lay.nodes, i, dtype=np.int32))
        arrays["domain"].append((lay.first_domain + dom).astype(np.int32))
        arrays["group"].append((lay.first_group + group).astype(np.int32))
        arrays["su"].append((lay.first_su + su).astype(np.int32))
        arrays["pod"].append((lay.first_pod + su // lay.sus_per_pod).astype(np.int32))
        offsets["node"] += lay.nodes
        offsets["gpu"] += lay.gpus
        offsets["domain"] += lay.domains
        offsets["group"] += lay.groups
        offsets["su"] += lay.sus
        offsets["pod"] += lay.pods
        offsets["leaf"] += lay.leaves
        offsets["spine"] += lay.spines
        offsets["core"] += lay.cores
    interconnect = 0
    if len(layouts) > 1:
        radix = max(p.fabric.radix for p in layouts)
        for p in layouts:
            # the top tier's hosts-side bandwidth, in links, divided by its ratio
            p.top_up_links = math.ceil(p.nodes * p.system.nics_per_node / p.oversubscription_to("interconnect"))
        interconnect = math.ceil(sum(p.top_up_links for p in layouts) / radix)
    return Topology(
        pools=layouts,
        node_pool=np.concatenate(arrays["pool"]), node_domain=np.concatenate(arrays["domain"]),
        node_group=np.concatenate(arrays["group"]), node_su=np.concatenate(arrays["su"]),
        node_pod=np.concatenate(arrays["pod"]),
        pool_first_gpu=np.array([p.first_gpu for p in layouts], dtype=np.int64),
        interconnect_switches=interconnect)


# ----------------------------------------------------------------- queries
def _tier_of(topo: Topology, nodes: np.ndarray) -> tuple[str, int]:
    """Highest tier among `nodes` (distinct domains or not) and its hops."""
    pools = np.unique(topo.node_pool[nodes])
    if pools.size > 1:
        # up through one pool, across the interconnect, down the other
        # (the two pools with the most tiers for a placement over several)
        tiers = sorted((topo.pools[p].tiers for p in pools), reverse=True)
        return "interconnect", tiers[0] + tiers[1] + 1
    if np.unique(topo.node_domain[nodes]).size == 1:
        return "nvlink", 0
    if np.unique(topo.node_group[nodes]).size == 1:
        return "leaf", 1
    if np.unique(topo.node_pod[nodes]).size == 1:
        return "spine", 3
    return "core", 5


def path(topo: Topology, gpu_a: int, gpu_b: int) -> Path:
    """Bottleneck bandwidth, hops and latency between two GPUs."""
    if gpu_a == gpu_b:
        raise InputError(f"GPU {gpu_a} is both ends of the path", "gpus", "give two different GPUs")
    na, nb = (int(x) for x in topo.gpu_node([gpu_a, gpu_b]))
    pa, pb = topo.pool_of_node(na), topo.pool_of_node(nb)
    tier, hops = _tier_of(topo, np.array([na, nb]))
    if tier == "nvlink":
        return Path("nvlink", 0, min(pa.gpu.nvlink_bw_Bps, pb.gpu.nvlink_bw_Bps), 0.0)
    bw = min(pa.system.nic_bw_Bps, pb.system.nic_bw_Bps, pa.fabric.link_bw_Bps, pb.fabric.link_bw_Bps)
    latency = hops * max(pa.fabric.hop_latency_s, pb.fabric.hop_latency_s)
    return Path(tier, hops, bw, latency)


def _placement_nodes(topo: Topology, nodes, gpus) -> np.ndarray:
    """The node of each GPU of a placement given by nodes or by GPUs."""
    if (nodes is None) == (gpus is None):
        raise InputError("give a placement as nodes or as GPUs, not both", "placement",
                         "pass nodes=[...] or gpus=[...]")
    if gpus is not None:
        g = np.unique(np.asarray(list(gpus) if not isinstance(gpus, np.ndarray) else gpus, dtype=np.int64))
        return topo.gpu_node(g)
    n = np.unique(np.asarray(list(nodes) if not isinstance(nodes, np.ndarray) else nodes, dtype=np.int64))
    topo._check_index(n, topo.nodes, "node")
    per_node = np.array([p.system.gpus_per_node for p in topo.pools])[topo.node_pool[n]]
    return np.repeat(n, per_node)


def span(topo: Topology, nodes=None, gpus=None) -> Span:
    """What a placement (node indices, or GPU indices) spans, the tier its
    traffic climbs to, the hops and the oversubscription it sees there."""
    gpu_nodes = _placement_nodes(topo, nodes, gpus)
    if gpu_nodes.size == 0:
        raise InputError("the placement is empty", "placement", "give at least one node or GPU")
    doms, per_dom = np.unique(topo.node_domain[gpu_nodes], return_counts=True)
    uniq_nodes = np.unique(gpu_nodes)
    pools = np.unique(topo.node_pool[uniq_nodes])
    if gpu_nodes.size == 1:
        tier, hops = "gpu", 0
    else:
        tier, hops = _tier_of(topo, uniq_nodes)
    over = max(topo.pools[p].oversubscription_to(tier) for p in pools)
    return Span(gpus=int(gpu_nodes.size), nodes=int(uniq_nodes.size), domains=int(doms.size),
                leaf_groups=int(np.unique(topo.node_group[uniq_nodes]).size),
                sus=int(np.unique(topo.node_su[uniq_nodes]).size),
                pods=int(np.unique(topo.node_pod[uniq_nodes]).size), pools=int(pools.size),
                gpus_per_domain_min=int(per_dom.min()), gpus_per_domain_max=int(per_dom.max()),
                tier=tier, hops=hops, oversubscription=over)


def levels_for_placement(topo: Topology, nodes=None, gpus=None) -> list[Level]:
    """The levels a collective over the placement's GPUs sees (for
    ``hardware.collectives.collective_time``): NVLink inside each domain,
    then the network across domains with the NIC rails of the fewest GPUs
    any domain holds, the hops and oversubscription of the tier crossed."""
    s = span(topo, nodes, gpus)
    if s.gpus <= 1:
        return []
    gpu_nodes = _placement_nodes(topo, nodes, gpus)
    used = [topo.pools[p] for p in np.unique(topo.node_pool[np.unique(gpu_nodes)])]
    per_domain = max(1, round(s.gpus / s.domains))
    levels = []
    if per_domain > 1:
        levels.append(nvlink_level(min(p.gpu.nvlink_bw_Bps for p in used), per_domain,
                                   all(p.gpu.nvlink_sharp for p in used)))
    if s.domains > 1:
        levels.append(network_level(
            s.domains, s.gpus_per_domain_min, min(p.nic_bw_per_gpu_Bps for p in used),
            min(p.fabric.nic_efficiency for p in used), s.oversubscription, s.hops,
            max(p.fabric.hop_latency_s for p in used), all(p.fabric.in_network_reduction for p in used)))
    return levels


def pool_levels(topo: Topology, pool: int = 0) -> list[tuple[str, int, int]]:
    """The pool's nested node groups, smallest first, as (name, nodes per
    group, tier): a job inside one group climbs no higher than `tier`
    (0 NVLink only, 1 one leaf, 2 spine, 3 core). Groups are contiguous
    runs of the pool's local node numbers, each a multiple of the one
    below, ending with the whole pool; for schedulers that pack jobs."""
    p = topo.pools[pool]
    group_nodes = p.domains_per_group * p.nodes_per_domain
    su_tier = 1 if p.groups_per_su == 1 else 2
    out = []
    if p.nodes_per_domain > 1:
        out.append(("nvlink_domain", p.nodes_per_domain, 0))
    out.append(("leaf_group", group_nodes, 1))
    out.append(("su", p.system.su_nodes, su_tier))
    if p.tiers == 3:
        out.append(("pod", p.sus_per_pod * p.system.su_nodes, 2))
    pool_tier = {1: 1, 2: 2 if p.groups > 1 else 1, 3: 3 if p.pods > 1 else 2}[p.tiers]
    out.append(("pool", p.nodes, pool_tier))
    levels = []
    for name, nodes, tier in out:
        if nodes >= p.nodes:
            # the first group that holds the whole pool sets the pool's tier
            levels.append(("pool", p.nodes, tier))
            break
        if levels and nodes <= levels[-1][1]:
            continue          # the same nodes: the lower tier already holds them
        levels.append((name, nodes, tier))
    return levels


def summary(topo: Topology) -> dict:
    """Plain numbers for reports: totals, switches per tier, bisection, and
    one entry per pool."""
    pools = []
    for p in topo.pools:
        pools.append({
            "name": p.name, "system": p.system.name, "gpu": p.gpu.name, "fabric": p.fabric.name,
            "nodes": p.nodes, "gpus": p.gpus, "nvlink_domains": p.domains,
            "nvlink_domain_gpus": p.system.nvlink_domain_gpus, "scalable_units": p.sus,
            "leaf_groups": p.groups, "tiers": p.tiers, "pods": p.pods if p.tiers == 3 else 1,
            "switches": {"leaf": p.leaves, "spine": p.spines, "core": p.cores},
            "leaf_ports": {"down": p.leaf_down, "up": p.leaf_up},
            "oversubscription": dict(p.ratios),
            "nic_bw_per_gpu_Bps": p.nic_bw_per_gpu_Bps,
            "bisection_Bps": p.bisection_Bps(),
        })
    return {"gpus": topo.gpus, "nodes": topo.nodes, "nvlink_domains": topo.domains,
            "switches": topo.switches(), "bisection_Bps": topo.bisection_Bps(), "pools": pools}


# ------------------------------------------------------------------- graph
def _build_graph(topo: Topology):
    """networkx graph: vertices ("gpu", g), ("nic", node, k), ("nvswitch", d),
    ("leaf", i), ("spine", i), ("core", i), ("interconnect", 0); vertex
    attribute ``kind``; edge attributes ``kind``, ``links`` and
    ``capacity_Bps`` (per direction)."""
    import networkx as nx

    g = nx.Graph()
    for p in topo.pools:
        s, gpn, nics = p.system, p.system.gpus_per_node, p.system.nics_per_node
        nic_bw, link_bw = s.nic_bw_Bps, p.fabric.link_bw_Bps
        nodes = np.arange(p.nodes)
        gpus = p.first_gpu + np.arange(p.gpus)
        g.add_nodes_from((("gpu", int(x)) for x in gpus), kind="gpu", pool=p.name)
        g.add_nodes_from((("nvswitch", p.first_domain + d) for d in range(p.domains)), kind="nvswitch", pool=p.name)
        g.add_nodes_from((("leaf", p.first_leaf + i) for i in range(p.leaves)), kind="leaf", pool=p.name)
        g.add_nodes_from((("spine", p.first_spine + i) for i in range(p.spines)), kind="spine", pool=p.name)
        g.add_nodes_from((("core", p.first_core + i) for i in range(p.cores)), kind="core", pool=p.name)
        # NVLink: every GPU to its domain's NVSwitch fabric
        dom_of_gpu = p.first_domain + (gpus - p.first_gpu) // s.nvlink_domain_gpus
        g.add_edges_from(((("gpu", int(a)), ("nvswitch", int(d))) for a, d in zip(gpus, dom_of_gpu)),
                         kind="nvlink", links=1, capacity_Bps=p.gpu.nvlink_bw_Bps)
        # NICs: GPU -> NIC (PCIe, at NIC rate) and NIC -> its rail's leaf
        nic_node = np.repeat(nodes, nics)
        nic_k = np.tile(np.arange(nics), p.nodes)
        g.add_nodes_from(((("nic", p.first_node + int(n), int(k)) for n, k in zip(nic_node, nic_k))),
                         kind="nic", pool=p.name)
        gpu_idx = np.arange(gpn)
        nic_of_gpu = (gpu_idx * nics) // gpn
        pcie = []
        for k in range(nics):
            owners = gpu_idx[nic_of_gpu == k] if nics <= gpn else [k * gpn // nics]
            for a in owners:
                pcie.append((int(a), k))
        node_first_gpu = p.first_gpu + nodes * gpn
        g.add_edges_from(((("gpu", int(fg + a)), ("nic", p.first_node + int(n), k))
                          for n, fg in zip(nodes, node_first_gpu) for a, k in pcie),
                         kind="pcie", links=1, capacity_Bps=nic_bw)
        rail = (nodes % p.nodes_per_domain)[:, None] * nics + np.arange(nics)[None, :]
        dom = nodes // p.nodes_per_domain
        group = (nodes // s.su_nodes) * p.groups_per_su + (dom % p.domains_per_su) // p.domains_per_group
        leaf = p.first_leaf + group[:, None] * p.leaves_per_group + rail // p.rails_per_leaf
        g.add_edges_from(((("nic", p.first_node + int(n), int(k)), ("leaf", int(leaf[n, k])))
                          for n in nodes for k in range(nics)), kind="nic", links=1, capacity_Bps=nic_bw)
        # leaf -> spine (every spine of the leaf's pod)
        if p.tiers >= 2:
            leaves_per_su = p.groups_per_su * p.leaves_per_group
            spine_start = 0
            for pod, count in enumerate(p.pod_spines):
                lo = pod * p.sus_per_pod * leaves_per_su
                hi = min(p.leaves, (pod + 1) * p.sus_per_pod * leaves_per_su)
                links = p.leaf_up / count
                g.add_edges_from(((("leaf", p.first_leaf + i), ("spine", p.first_spine + spine_start + j))
                                  for i in range(lo, hi) for j in range(count)),
                                 kind="leaf-spine", links=links, capacity_Bps=links * link_bw)
                spine_start += count
        # spine -> core: spine position j of every pod to the cores of group j
        if p.tiers == 3:
            width = max(p.pod_spines)
            groups = min(width, p.cores)
            spine_start = 0
            for count in p.pod_spines:
                for j in range(count):
                    targets = [c for c in range(p.cores) if c % groups == j % groups]
                    links = p.spine_up / len(targets)
                    g.add_edges_from(((("spine", p.first_spine + spine_start + j), ("core", p.first_core + c))
                                      for c in targets), kind="spine-core", links=links,
                                     capacity_Bps=links * link_bw)
                spine_start += count
    if len(topo.pools) > 1:
        g.add_node(("interconnect", 0), kind="interconnect", pool=None)
        for p in topo.pools:
            top = {1: ("leaf", p.first_leaf, p.leaves), 2: ("spine", p.first_spine, p.spines),
                   3: ("core", p.first_core, p.cores)}[p.tiers]
            kind, first, count = top
            links = p.top_up_links / count
            g.add_edges_from((((kind, first + i), ("interconnect", 0)) for i in range(count)),
                             kind="interconnect", links=links, capacity_Bps=links * p.fabric.link_bw_Bps)
    return g


NETWORK_SWITCHES = ("leaf", "spine", "core", "interconnect")


def graph_hops(graph, gpu_a: int, gpu_b: int) -> int:
    """Fewest network switches on any path between two GPUs in the graph
    (NVLink and NICs free): the graph-side check of ``path``."""
    import networkx as nx

    kinds = graph.nodes

    def weight(_u, v, _d):
        return 1 if kinds[v]["kind"] in NETWORK_SWITCHES else 0

    return int(nx.shortest_path_length(graph, ("gpu", gpu_a), ("gpu", gpu_b), weight=weight))
