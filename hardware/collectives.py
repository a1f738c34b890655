"""Time of NCCL-style collectives on a placement, alpha-beta per level.

A placement is described by its *levels* (see ``Level``): the NVLink level
(how many of the group's GPUs share an NVLink domain) and the network level
(how many domains the group spans, and the per-domain share of the fabric).
``hardware.topology.levels_for_placement`` derives levels from a real
placement on the cluster; ``levels_for_group`` derives them from a system and
a group size for the analytical models.

Every algorithm is alpha-beta: a bandwidth term (bytes each GPU moves over
the level's bandwidth) plus a latency term (algorithm steps x the level's
per-step latency). ``nbytes`` is always the full buffer one GPU holds: the
all-reduce input, the all-gather output, the reduce-scatter input, the
all-to-all send buffer, the send/recv message.

Algorithms (``algorithm=``):
- ``ring``: one flat, pipelined ring per channel (NCCL's default for large
  messages). Every GPU sends 2(n-1)/n of the buffer for an all-reduce and
  (n-1)/n for all-gather / reduce-scatter, at the bandwidth of the slowest
  level; 2(n-1) (resp. n-1) latency steps.
- ``tree``: NCCL's pipelined double binary tree: each GPU sends ~2x the
  buffer (reduce up, broadcast down) but only 2 x sum(log2 size) latency
  steps, so it wins for small messages at scale. All-reduce only; other ops
  fall back to the ring.
- ``hierarchical``: phases one after another, innermost first:
  reduce-scatter inside each level, all-reduce at the outermost level,
  all-gather back (all-gather and reduce-scatter: one phase per level).
- ``auto``: the fastest of the above, as NCCL's tuner picks.
In-network reduction (``in_network=True``, all-reduce only): NVLink SHARP
(NVLS) reduces in the NVSwitch and InfiniBand SHARP in the switches, where the
level supports it (``Level.in_network``). Each GPU then sends and receives the
buffer once instead of 2(n-1)/n times. Across levels the phases are pipelined
chunk by chunk (NCCL's NVLS-tree and CollNet), so the slowest phase sets the
bandwidth. With ``auto`` it competes with the algorithms above.

All-to-all: the share of each GPU's buffer bound for members outside its
NVLink domain crosses its own NIC rail, the rest goes over NVLink at the
same time; the slower of the two sets the time. Send/recv: every GPU of the
group sends the buffer to one peer at the outermost level (the pipeline
neighbour), each over its own share of that level.

Efficiency factors (fractions of line rate NCCL reaches), each measured:
- NVLINK_EFFICIENCY = 0.82: H100 8-GPU NVLink all-reduce reaches ~370 GB/s
  bus bandwidth per direction of the 450 GB/s link (nccl-tests, DGX H100).
- NVLS_EFFICIENCY = 0.61: with NVLink SHARP the same all-reduce reaches
  ~450-480 GB/s bus bandwidth, i.e. an algorithm bandwidth of 0.61 x 450.
- network: the fabric's ``nic_efficiency`` (NDR ConnectX-7: 46-49 GB/s of
  50 GB/s per NIC; DGX A100 8 x HDR reaches ~192 of 200 GB/s), divided by
  the oversubscription of the tiers crossed.
- SHARP_EFFICIENCY = 0.80: InfiniBand SHARP all-reduce algorithm bandwidth
  relative to NIC line rate (NVIDIA Quantum-2 SHARPv3 reports ~1.7-2x the
  bus bandwidth of a ring at scale).
Latencies: NVLINK_STEP_S per algorithm step inside a domain (NCCL LL128
~2 us), NETWORK_STEP_S per step across the fabric plus the switch hops,
A2A_PEER_S per peer of an all-to-all.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

from workloads.errors import InputError

NVLINK_EFFICIENCY = 0.82
"""Ring bus bandwidth / NVLink line rate per direction (H100: ~370 of 450 GB/s, nccl-tests)."""
NVLS_EFFICIENCY = 0.61
"""NVLink SHARP all-reduce algorithm bandwidth / NVLink line rate (H100: busbw ~470-480 GB/s)."""
SHARP_EFFICIENCY = 0.80
"""InfiniBand SHARP all-reduce algorithm bandwidth / NIC line rate (Quantum-2 SHARPv3, ~1.7-2x ring busbw)."""
NVLINK_STEP_S = 2.0e-6
"""One algorithm step inside an NVLink domain (NCCL LL128 protocol, ~2 us)."""
NETWORK_STEP_S = 4.0e-6
"""One algorithm step across the scale-out fabric, NIC and software (switch hops added per hop)."""
A2A_PEER_S = 1.0e-6
"""Per-peer cost of an all-to-all (NCCL issues one send/recv per peer; small all-to-alls
grow ~linearly with the group, order 1 us per peer; an estimate)."""
DEFAULT_HOP_LATENCY_S = 1.3e-7
"""One InfiniBand switch traversal when the fabric gives none (Quantum-2: ~130 ns)."""

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
    """Bytes each GPU sends per byte of the buffer (the busbw/algbw ratio)."""
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
    """GPUs in a group described by `levels`."""
    return math.prod(lv.size for lv in levels)


def _depth(n: int) -> int:
    return math.ceil(math.log2(n)) if n > 1 else 0


# ---------------------------------------------------------------- algorithms
def _ring_time(op: str, nbytes: float, levels: list[Level]) -> float:
    n = group_size(levels)
    bw = min(lv.bw_Bps for lv in levels)
    steps = (2 if op == "all_reduce" else 1) * (n - 1)
    alpha = max(lv.latency_s for lv in levels)
    return _ring_factor(op, n) * nbytes / bw + steps * alpha


def _tree_time(op: str, nbytes: float, levels: list[Level]) -> float:
    if op != "all_reduce":
        # trees do not help all-gather / reduce-scatter: NCCL uses the ring
        return _ring_time(op, nbytes, levels)
    bw = min(lv.bw_Bps for lv in levels)
    # reduce up and broadcast down, pipelined: each GPU sends ~2x the buffer
    return 2.0 * nbytes / bw + 2 * sum(_depth(lv.size) * lv.latency_s for lv in levels)


def _level_time(op: str, nbytes: float, lv: Level, in_network: bool) -> float:
    """One collective confined to one level: best of ring, tree (all-reduce)
    and in-switch reduction (all-reduce, when allowed and supported)."""
    if lv.size <= 1:
        return 0.0
    steps = (2 if op == "all_reduce" else 1) * (lv.size - 1)
    best = _ring_factor(op, lv.size) * nbytes / lv.bw_Bps + steps * lv.latency_s
    if op == "all_reduce":
        best = min(best, 2.0 * nbytes / lv.bw_Bps + 2 * _depth(lv.size) * lv.latency_s)
        if in_network and lv.in_network:
            best = min(best, nbytes / lv.in_network_bw_Bps + 2 * lv.latency_s)
    return best


def _hierarchical_time(op: str, nbytes: float, levels: list[Level], in_network: bool) -> float:
    """Phases one after another. At an outer level a member is a whole
    lower-level part, whose bandwidth is the aggregate of its GPUs' rails:
    after the inner reduce-scatter each GPU carries 1/n_inner of the buffer
    over its own rail, which takes as long as the whole buffer over the
    aggregate, so every phase is written with the full `nbytes`."""
    if op == "all_reduce":
        *inner, outer = levels
        t = _level_time("all_reduce", nbytes, outer, in_network)
        for lv in inner:
            if in_network and lv.in_network:
                # NVLS: reduce-scatter and all-gather in the switch, each GPU
                # sends and receives the buffer once
                t += nbytes / lv.in_network_bw_Bps + 2 * lv.latency_s
            else:
                t += _level_time("reduce_scatter", nbytes, lv, False) + _level_time("all_gather", nbytes, lv, False)
        return t
    if op in ("all_gather", "reduce_scatter"):
        return sum(_level_time(op, nbytes, lv, False) for lv in levels)
    return _ring_time(op, nbytes, levels)


def _in_network_time(nbytes: float, levels: list[Level]) -> float | None:
    """All-reduce with in-switch reduction where a level supports it, the
    levels' phases pipelined chunk by chunk (NVLS-tree, CollNet): the slowest
    phase sets the bandwidth term, the latencies add. None when no level
    reduces in the network."""
    if not any(lv.in_network for lv in levels):
        return None
    *inner, outer = levels
    phases, alpha = [], 0.0
    for lv in inner:
        if lv.in_network:
            phases.append(nbytes / lv.in_network_bw_Bps)
            alpha += 2 * lv.latency_s
        else:
            phases.append(2.0 * _ring_factor("reduce_scatter", lv.size) * nbytes / lv.bw_Bps)
            alpha += 2 * (lv.size - 1) * lv.latency_s
    if outer.in_network:
        phases.append(nbytes / outer.in_network_bw_Bps)
        alpha += 2 * outer.latency_s
    else:
        ring = _ring_factor("all_reduce", outer.size) * nbytes / outer.bw_Bps + 2 * (outer.size - 1) * outer.latency_s
        tree = 2.0 * nbytes / outer.bw_Bps + 2 * _depth(outer.size) * outer.latency_s
        phases.append(min(ring, tree))
    return max(phases) + alpha


def _all_to_all_time(nbytes: float, levels: list[Level]) -> float:
    """Each GPU holds `nbytes` and sends a 1/n slice to every other member.
    Traffic to members outside the inner level crosses the outer level; the
    levels carry their shares at the same time."""
    n = group_size(levels)
    t, inside = 0.0, 1
    for lv in levels:
        inside_next = inside * lv.size
        # fraction of each GPU's data that leaves the previous level but stays in this one
        frac = (inside_next - inside) / n
        # at an outer level bw_Bps is shared by the GPUs of the inner level
        per_gpu_bw = lv.bw_Bps / inside
        t = max(t, frac * nbytes / per_gpu_bw)
        inside = inside_next
    return t + levels[-1].latency_s + (n - 1) * A2A_PEER_S


def _send_recv_time(nbytes: float, levels: list[Level]) -> float:
    """Every GPU sends `nbytes` to its peer at the outermost level, all at
    once, each over its share of that level."""
    outer = levels[-1]
    per_gpu_bw = outer.bw_Bps / group_size(levels[:-1])
    return nbytes / per_gpu_bw + outer.latency_s


def _check(op: str, algorithm: str, nbytes: float) -> None:
    if op not in OPS:
        raise InputError(f"unknown collective {op!r}", "op", "use one of " + ", ".join(OPS))
    if algorithm not in ALGORITHMS:
        raise InputError(f"unknown algorithm {algorithm!r}", "algorithm", "use one of " + ", ".join(ALGORITHMS))
    if not nbytes >= 0 or math.isinf(nbytes):
        raise InputError(f"message size {nbytes} is not a finite size >= 0", "nbytes", "give a size >= 0")


def collective_choice(op: str, nbytes: float, levels: Sequence[Level], algorithm: str = "auto",
                      in_network: bool = False) -> tuple[float, str]:
    """(seconds, algorithm used) for collective `op` on `nbytes` per GPU over
    `levels`. The algorithm is one of ring, tree, hierarchical, in_network,
    all_to_all, send_recv, or none (a group of one GPU or an empty buffer)."""
    _check(op, algorithm, nbytes)
    lv = _active(levels)
    if not lv or nbytes == 0:
        return 0.0, "none"
    for level in lv:
        if not level.bw_Bps > 0 or (level.in_network and not level.in_network_bw_Bps > 0):
            raise InputError(f"level {level.name!r} has no bandwidth", "levels", "give bw_Bps > 0")
    if op == "send_recv":
        return _send_recv_time(nbytes, lv), "send_recv"
    if op == "all_to_all":
        return _all_to_all_time(nbytes, lv), "all_to_all"
    if algorithm == "ring":
        return _ring_time(op, nbytes, lv), "ring"
    if algorithm == "tree":
        return _tree_time(op, nbytes, lv), "tree" if op == "all_reduce" else "ring"
    if algorithm == "hierarchical":
        return _hierarchical_time(op, nbytes, lv, in_network), "hierarchical"
    options = [(_ring_time(op, nbytes, lv), "ring")]
    if op == "all_reduce":
        options.append((_tree_time(op, nbytes, lv), "tree"))
    if len(lv) > 1:
        options.append((_hierarchical_time(op, nbytes, lv, in_network), "hierarchical"))
    if in_network and op == "all_reduce":
        t = _in_network_time(nbytes, lv)
        if t is not None:
            options.append((t, "in_network"))
    return min(options)


def collective_time(op: str, nbytes: float, levels: Sequence[Level], algorithm: str = "auto",
                    in_network: bool = False) -> float:
    """Seconds for collective `op` on a buffer of `nbytes` per GPU over `levels`.

    nbytes is the full buffer each GPU holds (all-reduce input, all-gather
    output, reduce-scatter input, all-to-all send buffer, send/recv message).
    """
    return collective_choice(op, nbytes, levels, algorithm, in_network)[0]


def bus_bandwidth(op: str, nbytes: float, seconds: float, n: int) -> float:
    """nccl-tests' bus bandwidth: algorithm bandwidth x the op's ring factor."""
    return nbytes / seconds * _ring_factor(op, n)


# -------------------------------------------------------------------- levels
def nvlink_level(gpu_nvlink_bw_Bps: float, size: int, nvls: bool = True) -> Level:
    """The NVLink level for `size` GPUs of one NVLink domain; `nvls`: the
    NVSwitch reduces in the switch (Hopper and later)."""
    return Level("nvlink", size, gpu_nvlink_bw_Bps * NVLINK_EFFICIENCY, NVLINK_STEP_S,
                 in_network=nvls, in_network_bw_Bps=gpu_nvlink_bw_Bps * NVLS_EFFICIENCY if nvls else 0.0)


def network_level(domains: int, gpus_per_domain_in_group: int, nic_bw_per_gpu_Bps: float,
                  nic_efficiency: float, oversubscription: float = 1.0, hops: int = 1,
                  hop_latency_s: float = DEFAULT_HOP_LATENCY_S, sharp: bool = False,
                  name: str = "network") -> Level:
    """The scale-out level: `domains` NVLink domains, each contributing
    `gpus_per_domain_in_group` GPUs whose NIC rails carry the traffic in
    parallel (rail-optimized), slowed by the oversubscription of the tiers
    crossed. `hops`: switch traversals between two members (1 inside a leaf
    group, 3 across the spine, 5 across the core)."""
    share = gpus_per_domain_in_group * nic_bw_per_gpu_Bps / max(1.0, oversubscription)
    return Level(name, domains, share * nic_efficiency, NETWORK_STEP_S + hops * hop_latency_s,
                 in_network=sharp, in_network_bw_Bps=share * SHARP_EFFICIENCY if sharp else 0.0)


def levels_for_group(system, fabric, gpu, group: int, stride: int = 1, oversubscription: float = 1.0,
                     hops: int | None = None) -> list[Level]:
    """Levels of a communication group of `group` GPUs laid out with
    `stride` (the product of the faster-varying parallel dims placed first,
    e.g. TP for a data-parallel group), packed densely into NVLink domains.

    A group with stride s on domains of D GPUs has min(group, max(1, D // s))
    members per domain; the rest spread over domains. `hops` defaults to 1
    (one leaf switch) while the domains spanned fit in one scalable unit and
    3 (through the spine) beyond; `hardware.topology.span` gives the real
    hops and oversubscription of a placement.
    """
    if group <= 1:
        return []
    domain = system.nvlink_domain_gpus
    per_domain = max(1, min(group, domain // max(1, stride)))
    domains = math.ceil(group / per_domain)
    levels = []
    if per_domain > 1:
        levels.append(nvlink_level(gpu.nvlink_bw_Bps, per_domain, getattr(gpu, "nvlink_sharp", True)))
    if domains > 1:
        nic_per_gpu = system.nics_per_node * system.nic_bw_Bps / system.gpus_per_node
        if hops is None:
            hops = 1 if domains * domain <= system.su_nodes * system.gpus_per_node else 3
        levels.append(network_level(domains, per_domain, nic_per_gpu, fabric.nic_efficiency,
                                    oversubscription, hops, fabric.hop_latency_s, fabric.in_network_reduction))
    return levels
