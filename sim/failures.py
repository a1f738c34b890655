"""What breaks, how often, and for how long.

Failures arrive as one Poisson process over the whole cluster whose rate is
the sum of every GPU's and node's failure rate (MTBF in hours), or, with
``census: llama3``, of the interruption causes Meta counted on a 16,384-GPU
H100 cluster over 54 days (Llama 3 paper, Table 5; shared validation file
failures.csv), scaled per GPU to the simulated cluster. Each failure hits
one node drawn uniformly (a GPU failure: a node drawn in proportion to its
GPUs, the same thing for identical nodes); the jobs on it are interrupted
and lose the work since their last checkpoint; a hardware cause takes the
node out of service for its repair time, a software cause only restarts
the jobs.

``checkpoint_interval`` / ``checkpoint_cost``: a checkpointing job writes a
checkpoint after every interval of work, each costing that much time;
``restart_delay``: time from an interruption to the job computing again
(scheduling, loading the checkpoint) once it has GPUs. Spare nodes
(``cluster.spare_nodes``) replace a failed node at once; the repaired node
becomes a spare.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

LLAMA3_DAYS = 54.0
LLAMA3_GPUS = 16384
"""The census: 419 unexpected interruptions in 54 days on 16,384 H100 GPUs."""

# cause -> (interruptions in the census, repair hours of the node; 0 = a
# software cause: the job restarts, the node stays in service).
# Repair times are assumptions (the paper gives none): a GPU or HBM swap
# takes a node out for a day including burn-in; host maintenance and
# network/NIC/board/power/memory faults half a day; SSD swap 4 h.
LLAMA3_CENSUS = {
    "faulty_gpu": (148, 24.0),
    "gpu_hbm3": (72, 24.0),
    "software_bug": (54, 0.0),
    "network_switch_or_cable": (35, 12.0),
    "host_maintenance": (32, 12.0),
    "gpu_sram": (19, 24.0),
    "gpu_system_processor": (17, 24.0),
    "nic": (7, 12.0),
    "nccl_watchdog_timeout": (7, 0.0),
    "silent_data_corruption": (6, 24.0),
    "gpu_thermal_interface_sensor": (6, 24.0),
    "ssd": (3, 4.0),
    "power_supply": (3, 12.0),
    "server_chassis": (2, 12.0),
    "io_expansion_board": (2, 12.0),
    "dependency": (2, 0.0),
    "cpu": (2, 12.0),
    "system_memory": (2, 12.0),
}


@dataclass(frozen=True)
class Cause:
    name: str
    rate_per_s: float       # whole cluster
    repair_s: float         # 0: the node stays in service


def causes(spec, total_gpus: int, total_nodes: int) -> list[Cause]:
    """The failure causes of a cluster with their cluster-wide rates."""
    if spec is None or not spec.enabled:
        return []
    out = []
    if spec.census == "llama3":
        per_gpu_s = 1.0 / (LLAMA3_DAYS * 86400.0 * LLAMA3_GPUS)
        for name, (count, repair_h) in LLAMA3_CENSUS.items():
            out.append(Cause(name, count * per_gpu_s * total_gpus, repair_h * 3600.0))
    if spec.gpu_mtbf_h > 0:
        out.append(Cause("gpu", total_gpus / (spec.gpu_mtbf_h * 3600.0), spec.repair_time))
    if spec.node_mtbf_h > 0:
        out.append(Cause("node", total_nodes / (spec.node_mtbf_h * 3600.0), spec.repair_time))
    return out


def work_done(elapsed: float, overhead: float, interval: float, cost: float) -> tuple[float, float, float]:
    """(work done, work saved in checkpoints, run time at the last
    checkpoint's end) after `elapsed` seconds of a run that began with
    `overhead` seconds of restart and then alternates `interval` of work with
    a checkpoint of `cost` (interval = inf: no checkpoints)."""
    t = elapsed - overhead
    if t <= 0:
        return 0.0, 0.0, 0.0
    if not math.isfinite(interval):
        return t, 0.0, 0.0
    k = math.floor(t / (interval + cost))
    r = t - k * (interval + cost)
    done = k * interval + min(r, interval)
    if k == 0:
        return done, 0.0, 0.0
    return done, k * interval, overhead + k * (interval + cost)


def wall_time(work: float, overhead: float, interval: float, cost: float) -> float:
    """Run time to do `work` seconds of work after `overhead`, writing a
    checkpoint after every full interval except at the very end."""
    if not math.isfinite(interval) or work <= 0:
        return overhead + max(work, 0.0)
    n = math.ceil(work / interval) - 1
    return overhead + work + max(n, 0) * cost
