"""Demand per scaling law: how much of the fleet each law asks for and gets,
what post-training costs as a multiple of pretraining, when the fleet
saturates, and how many GPUs of each kind would meet every deadline and SLO.

``laws_block(scenario, demand, catalogs)`` builds summary.json's ``laws``
block from a run's demand table (time_s, family, kind, gpu_hours_demanded,
gpu_hours_served) and the scenario itself:

- ``pretraining``, ``post_training``, ``test_time``: GPU-hours demanded and
  served (and per kind), and the FLOPs of the work (pretraining and
  post-training from the jobs' work, test time from the request stream).
- ``post_training_over_pretraining``: post-training compute over the
  pretraining compute of the bases it derives from (the seed's "up to
  30x"), in FLOPs and in GPU-hours, per base model too.
- ``saturation``: the first interval whose demand reaches the fleet's
  capacity, and the first with unserved demand.
- ``gpus_needed``: per GPU kind of the cluster, the GPUs that run the
  whole scenario on that kind alone with no queueing: every job starts at
  submission and finishes by its deadline (a job too slow for its deadline
  is widened in proportion), every fleet gets the replicas its SLOs need;
  the peak of that concurrent demand, in whole nodes.
"""
from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pandas as pd

from workloads.errors import InputError
from workloads import scaling_laws as sl

LAWS = ("pretraining", "post_training", "test_time")
"""The three laws, in the order reports show them."""
LAW_OF_FAMILY = {"pretraining": "pretraining", "post_training": "post_training", "inference": "test_time"}

SATURATION_FRACTION = 1.0
"""An interval is saturated when the GPU-hours demanded reach this fraction
of the GPU-hours the fleet has (running plus queued work fills it)."""
UNSERVED_FRACTION = 0.01
"""Demand counts as unserved when served falls short of demanded by more
than this fraction of it."""
INFERENCE_STEPS = 4000
"""Time steps at most used to integrate a fleet's requests and replicas over
the horizon (never coarser than an hour)."""


def law_of(family: str) -> Optional[str]:
    return LAW_OF_FAMILY.get(family)


# ----------------------------------------------------------- GPU-hours
def totals_by_law(demand: Optional[pd.DataFrame]) -> dict:
    """{law: {gpu_hours_demanded, gpu_hours_served, by_kind: {...}}}."""
    out = {law: {"gpu_hours_demanded": 0.0, "gpu_hours_served": 0.0, "by_kind": {}} for law in LAWS}
    if demand is None or demand.empty:
        return out
    for (family, kind), g in demand.groupby(["family", "kind"], sort=True):
        law = law_of(family)
        if law is None:
            continue
        dem, srv = float(g["gpu_hours_demanded"].sum()), float(g["gpu_hours_served"].sum())
        out[law]["gpu_hours_demanded"] += dem
        out[law]["gpu_hours_served"] += srv
        k = out[law]["by_kind"].setdefault(str(kind), {"gpu_hours_demanded": 0.0, "gpu_hours_served": 0.0})
        k["gpu_hours_demanded"] += dem
        k["gpu_hours_served"] += srv
    return out


def capacity_gpus(scenario, catalogs) -> int:
    hw = catalogs.hardware
    return sum((p.nodes - p.spare_nodes) * hw.system(p.system).gpus_per_node for p in scenario.cluster.pools)


def saturation(demand: Optional[pd.DataFrame], capacity: int, interval_s: float) -> dict:
    """When demand first fills the fleet, and when work first goes unserved."""
    out = {"capacity_gpus": capacity, "time_s": None, "first_unserved_s": None,
           "peak_demand_gpus": 0.0, "peak_at_s": None}
    if demand is None or demand.empty or capacity <= 0:
        return out
    per = demand.groupby("time_s")[["gpu_hours_demanded", "gpu_hours_served"]].sum().sort_index()
    times = per.index.to_numpy(dtype=float)
    widths = np.diff(np.append(times, times[-1] + interval_s))
    widths[widths <= 0] = interval_s
    hours = widths / 3600.0
    dem_gpus = per["gpu_hours_demanded"].to_numpy() / hours
    srv_gpus = per["gpu_hours_served"].to_numpy() / hours
    full = np.nonzero(dem_gpus >= SATURATION_FRACTION * capacity * (1 - 1e-9))[0]
    short = np.nonzero(dem_gpus - srv_gpus > UNSERVED_FRACTION * np.maximum(dem_gpus, 1e-12))[0]
    k = int(np.argmax(dem_gpus))
    out.update(time_s=float(times[full[0]]) if len(full) else None,
               first_unserved_s=float(times[short[0]]) if len(short) else None,
               peak_demand_gpus=float(dem_gpus[k]), peak_at_s=float(times[k]),
               saturated_fraction_of_time=float(hours[full].sum() / hours.sum()) if hours.sum() else 0.0)
    return out


# --------------------------------------------------------------- jobs
def _pool_info(scenario, catalogs, pool_spec):
    from sim.engine import PoolInfo

    hw = catalogs.hardware
    system = hw.system(pool_spec.system)
    return PoolInfo(name=pool_spec.name, system=system, gpu=hw.system_gpu(system),
                    fabric=hw.fabric(pool_spec.fabric.link or system.fabric),
                    nodes=pool_spec.nodes - pool_spec.spare_nodes, gpus_per_node=system.gpus_per_node)


def _tiers(info, gpus: int) -> int:
    """Switch tiers a tightly packed gang spans: none inside a node or NVLink
    domain, the leaf inside a scalable unit, the spine beyond."""
    nodes = math.ceil(gpus / info.gpus_per_node)
    if gpus <= info.system.nvlink_domain_gpus or nodes <= 1:
        return 0
    return 1 if nodes <= info.system.su_nodes else 2


def _placement(info, gpus: int, tier_ratios: dict):
    from sim.placement import Placement, oversubscription_for

    tiers = _tiers(info, gpus)
    return Placement(pool=info.name, system=info.system, gpu=info.gpu, fabric=info.fabric, gpus=gpus,
                     nodes=tuple(range(math.ceil(gpus / info.gpus_per_node))), tiers_spanned=tiers,
                     oversubscription=oversubscription_for(tier_ratios, tiers))


def scenario_jobs(scenario, catalogs, pool_spec=None, timer=None) -> list:
    """The pretraining and post-training Jobs of a scenario as the generators
    make them, every workload's jobs sized for `pool_spec` (default: its own
    pool, else the largest)."""
    from sim.engine import WorkloadContext
    from sim.generators import jobs_for_workload
    from sim.placement import WorkTimer

    timer = timer or WorkTimer(catalogs.models)
    pools = {p.name: p for p in scenario.cluster.pools}
    infos = {name: _pool_info(scenario, catalogs, p) for name, p in pools.items()}
    largest = max(pools.values(), key=lambda p: (p.nodes - p.spare_nodes) * catalogs.hardware.system(p.system).gpus_per_node)
    jobs = []
    for i, w in enumerate(scenario.workloads):
        if w.family not in ("pretraining", "post_training"):
            continue
        spec = pool_spec or (pools[w.pool] if w.pool else largest)
        info = _pool_info(scenario, catalogs, spec)
        ratios = spec.fabric.tier_ratios()

        def estimate(job, info=info, ratios=ratios):
            return timer.seconds(job, _placement(info, job.gpus, ratios))

        ctx = WorkloadContext(scenario=scenario, catalogs=catalogs, workload=w, index=i,
                              rng=np.random.default_rng([scenario.seed, i]), horizon_s=scenario.duration,
                              pools=infos, pool=info, estimate_s=estimate)
        jobs.extend(jobs_for_workload(w, ctx))
    return jobs


# -------------------------------------------------------------- FLOPs
def _fleets(scenario, catalogs, pool_spec=None) -> list:
    from sim.fleet import build_fleet

    pools = {p.name: p for p in scenario.cluster.pools}
    largest = max(pools.values(), key=lambda p: (p.nodes - p.spare_nodes) * catalogs.hardware.system(p.system).gpus_per_node)
    out = []
    for i, w in enumerate(scenario.workloads):
        if w.family != "inference" or w.mode != "fleet":
            continue
        spec = pool_spec or (pools[w.pool] if w.pool else largest)
        out.append(build_fleet(w, i, w.name or f"inference-{i}", scenario, catalogs, 0, spec, scenario.duration))
    return out


def _grid(start: float, end: float) -> np.ndarray:
    """Step starts covering [start, end): at most INFERENCE_STEPS, at most an hour apart."""
    if end <= start:
        return np.zeros(0)
    n = max(int(math.ceil((end - start) / 3600.0)), 1)
    n = min(n, INFERENCE_STEPS) if (end - start) / INFERENCE_STEPS >= 3600.0 else n
    return start + (end - start) * np.arange(n) / n


def request_flops(model, input_tokens: float, output_tokens: float, samples: float, verifier_passes: int = 0) -> float:
    """FLOPs of one request: the prompt's prefill, `samples` answers decoded
    over the growing context, and verifier passes re-reading prompt + answer."""
    i, o = float(input_tokens), float(output_tokens)
    prefill = i * model.forward_flops_per_token(i / 2.0)
    decode = samples * o * model.forward_flops_per_token(i + o / 2.0)
    verify = verifier_passes * (i + o) * model.forward_flops_per_token((i + o) / 2.0)
    return prefill + decode + verify


def fleet_flops(fleet) -> dict:
    """Requests and FLOPs a fleet-mode stream asks for over its life, and
    the compute of one request over a single pass of its answer."""
    from sim.fleet import MONTH_S

    w = fleet.workload
    model = fleet.cfg.model
    t = _grid(fleet.start_s, fleet.end_s)
    if len(t) == 0:
        return {"requests": 0.0, "flops": 0.0, "compute_over_single_pass": None}
    dt = (fleet.end_s - fleet.start_s) / len(t)
    mid = t + dt / 2.0
    rate = np.array([fleet.rate(x) for x in mid])
    out_tokens = fleet.output_tokens * w.growth.tokens_per_month ** (mid / MONTH_S)
    flops = np.array([request_flops(model, fleet.input_tokens, o, fleet.samples, w.verifier_passes) for o in out_tokens])
    requests = rate * dt
    answer = w.output_tokens.answer if w.output_tokens.answer is not None else fleet.output_tokens
    single = request_flops(model, fleet.input_tokens, float(answer), 1)
    return {"requests": float(requests.sum()), "flops": float((requests * flops).sum()),
            "compute_over_single_pass": float(flops[0] / single) if single > 0 else None}


def post_training_multiple(jobs: list, catalogs) -> dict:
    """Post-training FLOPs over the pretraining FLOPs of the bases they derive
    from: a base pretrained in the scenario counts its run, a catalog base
    its published pretraining tokens (workloads.scaling_laws)."""
    pre_by_model = {}
    for j in jobs:
        if j.family == "pretraining":
            pre_by_model[j.model] = pre_by_model.get(j.model, 0.0) + float(j.meta.get("flops", 0.0))
    post_by_base = {}
    for j in jobs:
        if j.family == "post_training":
            base = j.meta.get("base", j.model)
            post_by_base[base] = post_by_base.get(base, 0.0) + float(j.meta.get("flops", 0.0))
    by_base, pre_total, post_total = {}, 0.0, 0.0
    for base, post in post_by_base.items():
        pre = pre_by_model.get(base)
        source = "scenario"
        if pre is None and base in catalogs.models:
            pre = sl.published_pretraining_flops(catalogs.models.get(base))
            source = "published"
        by_base[base] = {"post_training_flops": post, "pretraining_flops": pre, "pretraining_source": source if pre else None,
                         "multiple": post / pre if pre else None}
        if pre:
            pre_total += pre
            post_total += post
    return {"flops": post_total / pre_total if pre_total else None, "by_base": by_base}


# -------------------------------------------------------- GPUs needed
def gpus_needed(scenario, catalogs, jobs_by_kind: Optional[dict] = None) -> dict:
    """Per GPU kind of the cluster: the GPUs that run everything on that kind
    with no queueing and every deadline and SLO met (module docstring)."""
    from sim.placement import WorkTimer

    out = {}
    seen = set()
    horizon = scenario.duration
    for spec in scenario.cluster.pools:
        info = _pool_info(scenario, catalogs, spec)
        kind = info.gpu.name
        if kind in seen:
            continue
        seen.add(kind)
        timer = WorkTimer(catalogs.models)
        ratios = spec.fabric.tier_ratios()
        entry = {"system": info.system.name, "gpus": None, "nodes": None}
        try:
            jobs = scenario_jobs(scenario, catalogs, spec, timer)
            starts, ends, widths = [], [], []
            late = 0
            for job in jobs:
                if job.submit_s >= horizon:
                    continue
                t = timer.seconds(job, _placement(info, job.gpus, ratios))
                g = float(job.gpus)
                window = (job.deadline_s - job.submit_s) if job.deadline_s is not None else None
                if window is not None and window > 0 and t > window:
                    g, t, late = g * t / window, window, late + 1
                starts.append(job.submit_s)
                ends.append(min(job.submit_s + t, horizon))
                widths.append(g)
            fleets = _fleets(scenario, catalogs, spec)
        except InputError as exc:
            entry["error"] = exc.line()
            out[kind] = entry
            continue
        starts, ends, widths = np.array(starts), np.array(ends), np.array(widths)
        grid = _grid(0.0, horizon)
        inf_gpus = np.zeros(len(grid))
        for f in fleets:
            inf_gpus += np.array([f.replicas_at(t) * f.replica_gpus for t in grid])
        for i, w in enumerate(scenario.workloads):
            if w.family == "inference" and w.mode == "request":
                gpus = w.tp * w.pp * ((w.disaggregated.prefill_replicas + w.disaggregated.decode_replicas)
                                      if w.disaggregated else w.replicas)
                end = w.start + (w.duration or horizon)
                inf_gpus += np.where((grid >= w.start) & (grid < end), gpus, 0)
        # training concurrency at every job start and every grid point
        points = np.unique(np.concatenate([grid, starts])) if len(starts) else grid
        order_s, order_e = np.argsort(starts), np.argsort(ends)
        cs = np.concatenate([[0.0], np.cumsum(widths[order_s])]) if len(starts) else np.zeros(1)
        ce = np.concatenate([[0.0], np.cumsum(widths[order_e])]) if len(starts) else np.zeros(1)
        if len(starts):
            train = cs[np.searchsorted(starts[order_s], points, side="right")] - \
                ce[np.searchsorted(ends[order_e], points, side="right")]
        else:
            train = np.zeros(len(points))
        inf_at = inf_gpus[np.clip(np.searchsorted(grid, points, side="right") - 1, 0, len(grid) - 1)] if len(grid) else 0
        total = train + inf_at
        k = int(np.argmax(total)) if len(total) else 0
        peak = float(total[k]) if len(total) else 0.0
        largest = float(widths.max()) if len(widths) else 0.0
        need = max(peak, largest)
        nodes = int(math.ceil(need / info.gpus_per_node - 1e-9))
        gpu_h = float(np.sum(widths * (ends - starts)) / 3600.0)
        dt = horizon / len(grid) if len(grid) else 0.0
        inf_h = float(inf_gpus.sum() * dt / 3600.0)
        entry.update(gpus=nodes * info.gpus_per_node, nodes=nodes, peak_at_s=float(points[k]) if len(points) else None,
                     training_peak_gpus=float(train.max()) if len(train) else 0.0,
                     inference_peak_gpus=float(inf_gpus.max()) if len(inf_gpus) else 0.0,
                     average_gpus=(gpu_h + inf_h) * 3600.0 / horizon,
                     gpu_hours={"training": gpu_h, "test_time": inf_h},
                     jobs_widened_for_deadline=late)
        out[kind] = entry
    return out


# -------------------------------------------------------------- block
def laws_block(scenario, demand: Optional[pd.DataFrame] = None, catalogs=None, *, with_gpus_needed: bool = True) -> dict:
    """summary.json's `laws` block (see the module docstring)."""
    if catalogs is None:
        from sim.scenario import check_scenario
        catalogs = check_scenario(scenario)
    totals = totals_by_law(demand)
    jobs = scenario_jobs(scenario, catalogs)
    pre_flops = sum(float(j.meta.get("flops", 0.0)) for j in jobs if j.family == "pretraining")
    post_flops = sum(float(j.meta.get("flops", 0.0)) for j in jobs if j.family == "post_training")
    totals["pretraining"]["flops"] = pre_flops
    totals["pretraining"]["jobs"] = sum(j.family == "pretraining" for j in jobs)
    totals["post_training"]["flops"] = post_flops
    totals["post_training"]["jobs"] = sum(j.family == "post_training" for j in jobs)
    tt = {"flops": 0.0, "requests": 0.0, "compute_over_single_pass": None}
    for f in _fleets(scenario, catalogs):
        r = fleet_flops(f)
        tt["flops"] += r["flops"]
        tt["requests"] += r["requests"]
        if r["compute_over_single_pass"] is not None:
            tt["compute_over_single_pass"] = max(tt["compute_over_single_pass"] or 0.0, r["compute_over_single_pass"])
    totals["test_time"].update(tt)
    multiple = post_training_multiple(jobs, catalogs)
    pre_h = totals["pretraining"]["gpu_hours_demanded"]
    multiple["gpu_hours"] = totals["post_training"]["gpu_hours_demanded"] / pre_h if pre_h > 0 else None
    block = {law: totals[law] for law in LAWS}
    block["post_training_over_pretraining"] = multiple
    block["saturation"] = saturation(demand, capacity_gpus(scenario, catalogs), scenario.outputs.sample_interval)
    if with_gpus_needed:
        block["gpus_needed"] = gpus_needed(scenario, catalogs)
    return block
