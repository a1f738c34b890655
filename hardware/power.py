"""Power, energy and cost of a cluster: what running (or idling) the GPUs
draws from the grid, and what GPU-hours cost rented or owned.

Power model, per node, while powered on:
    node_overhead_w + idle_w x idle GPUs + busy_w x busy GPUs,
    busy_w = idle_w + BUSY_POWER_FRACTION x (tdp_w - idle_w) by default,
and the facility draws PUE times the IT power. Energy integrates that over
time: ``energy_kwh`` for totals (busy GPU-seconds within a wall-clock
window), ``energy_series_kwh`` for a time series of busy GPUs.

Defaults (see /work/shared/reference/hardware.md, "Economics"):
- DEFAULT_PUE = 1.3: new large AI halls run 1.1-1.3; the industry average is
  ~1.56-1.58 (Uptime Institute surveys).
- DEFAULT_USD_PER_KWH = 0.08: US industrial electricity, ~7-9 cents/kWh
  (commercial 10-16).
- DEFAULT_AMORTIZATION_YEARS = 4: straight-line depreciation of GPU servers
  (operators use 4-6 years).
- BUSY_POWER_FRACTION = 0.9: a GPU running LLM training draws ~90% of its TDP
  above idle. An 8-GPU H100 node measured at ~76% of its 10.2 kW rating during
  compute-heavy training (Newkirk et al. 2025, arXiv:2506.14551; peak 8.4 kW,
  Latif et al., IEEE Access 2025), which the DGX H100 entry (2.7 kW overhead)
  reproduces with this fraction.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from hardware.catalog import GPU, System
from workloads.errors import InputError

DEFAULT_PUE = 1.3
"""Facility power / IT power of a new AI hall (new halls 1.1-1.3; industry average ~1.56)."""
DEFAULT_USD_PER_KWH = 0.08
"""US industrial electricity price, $/kWh (7-9 cents)."""
DEFAULT_AMORTIZATION_YEARS = 4.0
"""Years over which a system's purchase price is spread (straight line)."""
BUSY_POWER_FRACTION = 0.9
"""Share of (TDP - idle) a busy GPU adds over idle during LLM training
(calibrated to measured DGX H100 training power, ~7.8 kW per node)."""
SECONDS_PER_HOUR = 3600.0
HOURS_PER_YEAR = 8766.0
"""Average year including leap years (365.25 days)."""
J_PER_KWH = 3.6e6


def _nonneg(value: float, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0:
        raise InputError(f"{what} must be a finite number >= 0, not {value!r}", what, "give a value >= 0")
    return float(value)


def _pue(pue: float) -> float:
    if isinstance(pue, bool) or not isinstance(pue, (int, float)) or not math.isfinite(pue) or pue < 1:
        raise InputError(f"PUE {pue!r} must be >= 1 (facility power / IT power)", "pue",
                         f"use e.g. {DEFAULT_PUE} for a new AI hall")
    return float(pue)


def _fraction(busy_fraction: float) -> float:
    if not 0 <= busy_fraction <= 1:
        raise InputError(f"busy power fraction {busy_fraction} must be between 0 and 1", "busy_fraction",
                         f"use e.g. {BUSY_POWER_FRACTION}")
    return float(busy_fraction)


def gpu_busy_w(gpu: GPU, busy_fraction: float = BUSY_POWER_FRACTION) -> float:
    """Average draw of one busy GPU, watts."""
    return gpu.idle_w + _fraction(busy_fraction) * (gpu.tdp_w - gpu.idle_w)


def node_power_w(system: System, gpu: GPU, busy_gpus: float, busy_fraction: float = BUSY_POWER_FRACTION) -> float:
    """IT power of one powered node with `busy_gpus` of its GPUs busy."""
    if not 0 <= busy_gpus <= system.gpus_per_node:
        raise InputError(f"{busy_gpus} busy GPUs on a {system.gpus_per_node}-GPU node", "busy_gpus",
                         f"give 0 to {system.gpus_per_node}")
    idle = system.gpus_per_node - busy_gpus
    return system.node_overhead_w + idle * gpu.idle_w + busy_gpus * gpu_busy_w(gpu, busy_fraction)


def cluster_power_w(system: System, gpu: GPU, nodes: int, busy_gpus: float, pue: float = DEFAULT_PUE,
                    busy_fraction: float = BUSY_POWER_FRACTION) -> float:
    """Facility power (IT x PUE) of `nodes` powered nodes with `busy_gpus` busy in all."""
    nodes = _nonneg(nodes, "nodes")
    if busy_gpus > nodes * system.gpus_per_node or busy_gpus < 0:
        raise InputError(f"{busy_gpus} busy GPUs but the nodes hold {nodes * system.gpus_per_node:g}",
                         "busy_gpus", "give at most the GPUs of the nodes")
    idle_w = nodes * (system.node_overhead_w + system.gpus_per_node * gpu.idle_w)
    return (idle_w + busy_gpus * (gpu_busy_w(gpu, busy_fraction) - gpu.idle_w)) * _pue(pue)


def energy_kwh(system: System, gpu: GPU, nodes: int, busy_gpu_seconds: float, wall_seconds: float,
               pue: float = DEFAULT_PUE, busy_fraction: float = BUSY_POWER_FRACTION) -> float:
    """Facility energy of `nodes` nodes powered for `wall_seconds`, during
    which the GPUs were busy for `busy_gpu_seconds` in all (idle otherwise)."""
    nodes = _nonneg(nodes, "nodes")
    wall = _nonneg(wall_seconds, "wall_seconds")
    busy = _nonneg(busy_gpu_seconds, "busy_gpu_seconds")
    if busy > nodes * system.gpus_per_node * wall * (1 + 1e-9):
        raise InputError(f"{busy:g} busy GPU-seconds exceed the {nodes * system.gpus_per_node * wall:g} "
                         "GPU-seconds the nodes hold in that time", "busy_gpu_seconds",
                         "check the busy time or the number of nodes")
    idle_j = nodes * (system.node_overhead_w + system.gpus_per_node * gpu.idle_w) * wall
    busy_j = busy * (gpu_busy_w(gpu, busy_fraction) - gpu.idle_w)
    return (idle_j + busy_j) * _pue(pue) / J_PER_KWH


def energy_series_kwh(system: System, gpu: GPU, nodes: int, times_s: Sequence[float],
                      busy_gpus: Sequence[float], pue: float = DEFAULT_PUE,
                      busy_fraction: float = BUSY_POWER_FRACTION) -> np.ndarray:
    """Facility energy per interval of a step-function series: `busy_gpus[i]`
    GPUs are busy from `times_s[i]` to `times_s[i+1]` (the last value ends
    the series, so len(times_s) = len(busy_gpus) + 1, or equal lengths with
    the last busy value ignored). Returns kWh per interval; sum it for the
    total."""
    t = np.asarray(times_s, dtype=float)
    b = np.asarray(busy_gpus, dtype=float)
    if t.ndim != 1 or b.ndim != 1 or t.size < 2 or b.size not in (t.size - 1, t.size):
        raise InputError("times and busy GPU counts do not line up", "times_s/busy_gpus",
                         "give n+1 times for n busy counts (or equal lengths)")
    b = b[: t.size - 1]
    dt = np.diff(t)
    if not np.all(np.isfinite(t)) or np.any(dt < 0):
        raise InputError("times must be finite and increasing", "times_s", "sort the samples by time")
    capacity = _nonneg(nodes, "nodes") * system.gpus_per_node
    if np.any(b < 0) or np.any(b > capacity) or not np.all(np.isfinite(b)):
        raise InputError(f"busy GPU counts must lie between 0 and {capacity:g}", "busy_gpus",
                         "check the series against the cluster size")
    idle_w = nodes * (system.node_overhead_w + system.gpus_per_node * gpu.idle_w)
    extra_w = gpu_busy_w(gpu, busy_fraction) - gpu.idle_w
    return (idle_w + b * extra_w) * dt * _pue(pue) / J_PER_KWH


# -------------------------------------------------------------------- cost
def electricity_cost_usd(kwh: float, usd_per_kwh: float = DEFAULT_USD_PER_KWH) -> float:
    """Price of `kwh` of energy."""
    return _nonneg(kwh, "kwh") * _nonneg(usd_per_kwh, "usd_per_kwh")


def rental_cost_usd(gpu_hours: float, usd_per_gpu_hour: float | None = None, gpu: GPU | None = None) -> float:
    """GPU-hours x $/GPU-hour (the GPU's catalog cloud price when none is given)."""
    if usd_per_gpu_hour is None:
        if gpu is None or gpu.cloud_usd_per_gpu_hour is None:
            name = gpu.name if gpu is not None else "this GPU"
            raise InputError(f"no rental price for {name}", "cost.gpu_hour_usd",
                             "give a $/GPU-hour price (or cloud_usd_per_gpu_hour in the catalog)")
        usd_per_gpu_hour = gpu.cloud_usd_per_gpu_hour
    return _nonneg(gpu_hours, "gpu_hours") * _nonneg(usd_per_gpu_hour, "usd_per_gpu_hour")


def capex_usd_per_gpu_hour(system: System, amortization_years: float = DEFAULT_AMORTIZATION_YEARS) -> float:
    """The system's purchase price spread over every GPU-hour of its
    amortization period (straight line, idle hours included)."""
    if system.price_usd is None:
        raise InputError(f"system {system.name!r} has no price", f"systems.{system.name}.price_usd",
                         "add price_usd in a catalog file, or give a rental price")
    if not amortization_years > 0:
        raise InputError(f"amortization period {amortization_years} must be > 0 years", "cost.amortization_years",
                         f"use e.g. {DEFAULT_AMORTIZATION_YEARS:g}")
    return system.price_usd / system.gpus_per_node / (amortization_years * HOURS_PER_YEAR)


def ownership_cost_usd(system: System, nodes: int, wall_seconds: float, energy_kwh_total: float,
                       amortization_years: float = DEFAULT_AMORTIZATION_YEARS,
                       usd_per_kwh: float = DEFAULT_USD_PER_KWH) -> dict[str, float]:
    """Cost of owning `nodes` nodes for `wall_seconds`: the amortized share
    of their price plus the electricity. Returns {capex_usd, energy_usd, total_usd}."""
    gpu_hours = _nonneg(nodes, "nodes") * system.gpus_per_node * _nonneg(wall_seconds, "wall_seconds") / SECONDS_PER_HOUR
    capex = gpu_hours * capex_usd_per_gpu_hour(system, amortization_years)
    energy = electricity_cost_usd(energy_kwh_total, usd_per_kwh)
    return {"capex_usd": capex, "energy_usd": energy, "total_usd": capex + energy}
