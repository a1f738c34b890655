"""Time of NCCL-style collectives on a placement, alpha-beta per level.

A placement is described by its *levels* (see ``Level``): typically the
NVLink level (how many of the group's GPUs share an NVLink domain) and one
network level (how many domains the group spans, and the per-GPU share of
the fabric). ``hardware.topology`` derives levels from a real placement on
the cluster graph; ``levels_for_group`` derives them from a system and a
group size for the analytical models.

Algorithms:
- ``ring``: one flat, pipelined ring per channel (NCCL's default for large
  messages). Every byte crosses the slowest level once per step, so the
  bandwidth term is set by the slowest level; the latency term grows with
  2(n-1) steps.
- ``tree``: double binary tree; bandwidth like the ring, latency ~ 2 log2 n.
- ``hierarchical``: reduce-scatter inside the NVLink domain, all-reduce of
  1/n1 of the data across domains, all-gather inside (sum of the three).
- ``auto``: the fastest of the above (what NCCL's tuner approximates).
In-network reduction (``in_network=True``): NVLink SHARP inside the domain
and InfiniBand SHARP across it, where the level supports it; each GPU then
sends and receives the data once instead of 2(n-1)/n times.

Efficiency factors (fractions of line rate NCCL reaches), each measured:
- NVLINK_EFFICIENCY = 0.82: H100 8-GPU NVLink all-reduce reaches ~370 GB/s
  bus bandwidth per direction of the 450 GB/s link (nccl-tests, DGX H100).
- NVLS_EFFICIENCY = 0.61: with NVLink SHARP the same all-reduce reaches
  ~470-480 GB/s bus bandwidth, i.e. an algorithm bandwidth of 0.61 x 450.
- network: the fabric's ``nic_efficiency`` (NDR ConnectX-7: 46-49 GB/s of
  50 GB/s per NIC), divided by the oversubscription of the tiers crossed.
- SHARP_EFFICIENCY = 0.80: InfiniBand SHARP all-reduce algorithm bandwidth
  relative to NIC line rate (NVIDIA Quantum-2 SHARPv3 reports ~1.7-2x the
  bus bandwidth of a ring at scale).
Latencies: NVLINK_STEP_S per ring step inside a domain (NCCL LL128 protocol
~2 us), NETWORK_STEP_S per step across the fabric plus the switch hops.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

from workloads.errors import InputError

NVLINK_EFFICIENCY = 0.82
NVLS_EFFICIENCY = 0.61
SHARP_EFFICIENCY = 0.80
NVLINK_STEP_S = 2.0e-6
NETWORK_STEP_S = 4.0e-6

Op = Literal["all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv"]
OPS = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv")
ALGORITHMS = ("auto", "ring", "tree", "hierarchical")


@dataclass(frozen=True)
class Level:
    """One level of a group's placement.

    size: how many parts the group splits into at this level (GPUs per
      NVLink domain at the first level; domains spanned at the next).
    bw_Bps: effective per-direction bandwidth one *member of this level*
      has towards the others (per GPU at the NVLink level; per domain-share
      at the network level, i.e. the group's GPUs in one domain times each
      GPU's NIC bandwidth, after efficiency and oversubscription).
    latency_s: time of one algorithm step at this level.
    in_network: the level can reduce in the switch (NVLS, SHARP).
    in_network_bw_Bps: the algorithm bandwidth of an in-switch all-reduce.
    """
    name: str
    size: int
    bw_Bps: float
    latency_s: float
    in_network: bool = False
    in_network_bw_Bps: float = 0.0


def _ring_factor(op: str, n: int) -> float:
    """Bytes each GPU sends per byte of the message (the busbw/algbw ratio)."""
    if n <= 1:
        return 0.0
    if op == "all_reduce":
        return 2.0 * (n - 1) / n
    if op in ("all_gather", "reduce_scatter", "all_to_all"):
        return (n - 1) / n
    return 1.0


def _active(levels: Sequence[Level]) -> list[Level]:
    return [lv for lv in levels if lv.size > 1]


def group_size(levels: Sequence[Level]) -> int:
    return math.prod(lv.size for lv in levels)


def _ring_time(op: str, nbytes: float, levels: list[Level]) -> float:
    n = group_size(levels)
    bw = min(lv.bw_Bps for lv in levels)
    steps = (2 if op == "all_reduce" else 1) * (n - 1)
    alpha = max(lv.latency_s for lv in levels)
    return _ring_factor(op, n) * nbytes / bw + steps * alpha


def _tree_time(op: str, nbytes: float, levels: list[Level]) -> float:
    n = group_size(levels)
    bw = min(lv.bw_Bps for lv in levels)
    alpha = max(lv.latency_s for lv in levels)
    depth = math.ceil(math.log2(n))
    if op == "all_reduce":
        # reduce up and broadcast down, pipelined: each GPU sends ~2x the data
        return 2.0 * nbytes / bw + 2 * depth * alpha
    # trees do not help all-gather / reduce-scatter: fall back to the ring
    return _ring_time(op, nbytes, levels)


def _level_time(op: str, nbytes: float, lv: Level, in_network: bool) -> float:
    """One collective confined to one level (used by the hierarchical form)."""
    if lv.size <= 1:
        return 0.0
    if in_network and lv.in_network and op == "all_reduce":
        return nbytes / lv.in_network_bw_Bps + 2 * lv.latency_s
    ring = _ring_factor(op, lv.size) * nbytes / lv.bw_Bps + (2 if op == "all_reduce" else 1) * (lv.size - 1) * lv.latency_s
    if op == "all_reduce":
        tree = 2.0 * nbytes / lv.bw_Bps + 2 * math.ceil(math.log2(lv.size)) * lv.latency_s
        return min(ring, tree)
    return ring


def _hierarchical_time(op: str, nbytes: float, levels: list[Level], in_network: bool) -> float:
    if op == "all_reduce":
        inner, rest = levels[0], levels[1:]
        t = 0.0
        if inner.in_network and in_network:
            # NVLS reduces inside the switch: RS+AG inside the domain at switch rate
            t += nbytes / inner.in_network_bw_Bps + 2 * inner.latency_s
        else:
            t += _level_time("reduce_scatter", nbytes, inner, False) + _level_time("all_gather", nbytes, inner, False)
        # each GPU now all-reduces its 1/n1 shard over its own rail; the outer
        # level's bandwidth is the aggregate of the n1 rails, so the shard
        # moves at (bw / n1): the same time as the whole buffer at bw.
        for lv in rest:
            t += _level_time("all_reduce", nbytes, lv, in_network)
        return t
    if op in ("all_gather", "reduce_scatter"):
        # inner and outer phases in sequence; outer levels carry the
        # per-GPU shards over the aggregate of the rails (see all_reduce)
        return sum(_level_time(op, nbytes, lv, False) for lv in levels)
    return _ring_time(op, nbytes, levels)


def _all_to_all_time(nbytes: float, levels: list[Level]) -> float:
    """Each GPU holds `nbytes` and sends a 1/n slice to every other member.
    Traffic to members outside the inner level crosses the outer level."""
    n = group_size(levels)
    t, inside = 0.0, 1
    for lv in levels:
        inside_next = inside * lv.size
        # fraction of each GPU's data that leaves the previous level but stays in this one
        frac = (inside_next - inside) / n
        # at an outer level bw_Bps is shared by the GPUs of the inner level
        per_gpu_bw = lv.bw_Bps / inside if inside > 1 else lv.bw_Bps
        t = max(t, frac * nbytes / per_gpu_bw)
        inside = inside_next
    return t + (n - 1) * max(lv.latency_s for lv in levels) / max(1, len(levels))


def collective_time(op: str, nbytes: float, levels: Sequence[Level], algorithm: str = "auto",
                    in_network: bool = False) -> float:
    """Seconds for collective `op` on a message of `nbytes` per GPU over `levels`.

    nbytes is the full buffer each GPU holds (all-reduce input, all-gather
    output, reduce-scatter input, all-to-all send buffer, send/recv message).
    """
    if op not in OPS:
        raise InputError(f"unknown collective {op!r}", "op", "use one of " + ", ".join(OPS))
    if algorithm not in ALGORITHMS:
        raise InputError(f"unknown algorithm {algorithm!r}", "algorithm", "use one of " + ", ".join(ALGORITHMS))
    if nbytes < 0:
        raise InputError(f"message size {nbytes} is negative", "nbytes", "give a size >= 0")
    lv = _active(levels)
    if not lv or nbytes == 0:
        return 0.0
    if op == "send_recv":
        slowest = min(lv, key=lambda x: x.bw_Bps)
        return nbytes / slowest.bw_Bps + max(x.latency_s for x in lv)
    if op == "all_to_all":
        return _all_to_all_time(nbytes, lv)
    if in_network and op == "all_reduce" and len(lv) == 1 and lv[0].in_network:
        only = lv[0]
        return nbytes / only.in_network_bw_Bps + 2 * only.latency_s
    if algorithm == "ring":
        return _ring_time(op, nbytes, lv)
    if algorithm == "tree":
        return _tree_time(op, nbytes, lv)
    if algorithm == "hierarchical":
        return _hierarchical_time(op, nbytes, lv, in_network)
    options = [_ring_time(op, nbytes, lv), _tree_time(op, nbytes, lv)]
    if len(lv) > 1 or in_network:
        options.append(_hierarchical_time(op, nbytes, lv, in_network))
    return min(options)


def bus_bandwidth(op: str, nbytes: float, seconds: float, n: int) -> float:
    """nccl-tests' bus bandwidth: algorithm bandwidth x the op's ring factor."""
    return nbytes / seconds * _ring_factor(op, n)


def nvlink_level(gpu_nvlink_bw_Bps: float, size: int) -> Level:
    """The NVLink level for `size` GPUs of one NVLink domain."""
    return Level("nvlink", size, gpu_nvlink_bw_Bps * NVLINK_EFFICIENCY, NVLINK_STEP_S,
                 in_network=True, in_network_bw_Bps=gpu_nvlink_bw_Bps * NVLS_EFFICIENCY)


def network_level(domains: int, gpus_per_domain_in_group: int, nic_bw_per_gpu_Bps: float,
                  nic_efficiency: float, oversubscription: float = 1.0, hops: int = 2,
                  hop_latency_s: float = 1.3e-7, sharp: bool = False, name: str = "network") -> Level:
    """The scale-out level: `domains` NVLink domains, each contributing
    `gpus_per_domain_in_group` GPUs whose NIC rails carry the traffic in
    parallel (rail-optimized), slowed by the oversubscription of the tiers
    crossed."""
    bw = gpus_per_domain_in_group * nic_bw_per_gpu_Bps * nic_efficiency / max(1.0, oversubscription)
    sharp_bw = gpus_per_domain_in_group * nic_bw_per_gpu_Bps * SHARP_EFFICIENCY / max(1.0, oversubscription)
    return Level(name, domains, bw, NETWORK_STEP_S + hops * hop_latency_s, in_network=sharp, in_network_bw_Bps=sharp_bw)


def levels_for_group(system, fabric, gpu, group: int, stride: int = 1, oversubscription: float = 1.0,
                     hops: int | None = None) -> list[Level]:
    """Levels of a communication group of `group` GPUs laid out with
    `stride` (the product of the faster-varying parallel dims placed first,
    e.g. TP for a data-parallel group), packed densely into NVLink domains.

    A group with stride s on domains of D GPUs has min(group, max(1, D // s))
    members per domain; the rest spread over domains.
    """
    if group <= 1:
        return []
    domain = system.nvlink_domain_gpus
    per_domain = max(1, min(group, domain // max(1, stride)))
    domains = math.ceil(group / per_domain)
    levels = []
    if per_domain > 1:
        levels.append(nvlink_level(gpu.nvlink_bw_Bps, per_domain))
    if domains > 1:
        nic_per_gpu = system.nics_per_node * system.nic_bw_Bps / system.gpus_per_node
        if hops is None:
            hops = 2 if domains * domain <= system.su_nodes * system.gpus_per_node else 4
        levels.append(network_level(domains, per_domain, nic_per_gpu, fabric.nic_efficiency,
                                    oversubscription, hops, fabric.hop_latency_s, fabric.in_network_reduction))
    return levels
